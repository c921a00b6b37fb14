"""Closes that cannot wait forever.

``transport.close()`` (and ``StreamWriter.close()``) first drains the write buffer, and a peer
that never reads never lets it drain: the connection, its buffers and whatever it holds would
stay until the peer leaves. Every close in the media plane goes through here: the last replies
get a short grace to leave, then the transport is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import sys
import termios

# SO_LINGER on, zero seconds: close() resets the connection and frees the kernel's copy of the
# unsent bytes too (a plain close would leave an orphan socket retrying to a frozen peer).
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
_POLL_S = 0.1


def close_with_grace(transport: asyncio.BaseTransport, grace: float) -> None:
    """Close ``transport`` once the peer has taken every byte, or reset it ``grace`` seconds on.

    Waits for the kernel's send queue too: a plain close after asyncio's buffer drained would
    leave the kernel holding (and retrying) the unsent tail for a peer that never reads.
    """
    # Nothing more is read from a closing peer. (uvloop's transports implement pause_reading
    # without subclassing asyncio.ReadTransport.)
    pause_reading = getattr(transport, "pause_reading", None)
    if pause_reading is not None and not transport.is_closing():
        with contextlib.suppress(RuntimeError):
            pause_reading()
    deadline = asyncio.get_running_loop().time() + grace
    _close_when_sent(transport, deadline)


def _close_when_sent(transport: asyncio.BaseTransport, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    if transport.is_closing():
        return  # closed meanwhile (the peer reset it, or an abort)
    unsent = transport.get_write_buffer_size() + _kernel_unsent(transport)  # type: ignore[attr-defined]
    if not unsent:
        transport.close()
    elif loop.time() >= deadline:
        abort(transport)
    else:
        loop.call_later(_POLL_S, _close_when_sent, transport, deadline)


def _kernel_unsent(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0  # not a TCP socket on Linux: asyncio's own buffer is all we can see
    return int.from_bytes(raw, sys.byteorder)


def abort(transport: asyncio.BaseTransport) -> None:
    """Drop the connection now: unsent bytes are discarded and the peer gets a reset."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    # A transport that finished closing ignores abort (asyncio and uvloop alike).
    with contextlib.suppress(RuntimeError):
        transport.abort()  # type: ignore[attr-defined]


async def close_writer(writer: asyncio.StreamWriter, grace: float) -> None:
    """Close a stream connection and wait until it is gone: at most ``grace`` seconds."""
    writer.close()
    try:
        async with asyncio.timeout(grace):
            await writer.wait_closed()
    except Exception:  # the grace ran out, or the connection failed anyway (reset, TLS error)
        abort(writer.transport)
