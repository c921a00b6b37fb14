"""Sans-I/O RTMP connections: :class:`ServerConnection` (ingest) and :class:`ClientConnection`
(push, or play when pulling a stream), in the h11 style.

Usage, either side::

    for event in conn.receive_data(data):  # buffer bytes read from the socket, then pull events
        ...                                # react, possibly calling conn.accept_* methods
    sock.write(conn.data_to_send())        # handshake replies, acks, pongs, command answers

``receive_data`` buffers and returns a lazy iterator; ``next_event`` (what the iterator calls)
parses one event at a time and returns ``None`` when it needs more data. Parsing is lazy so
that state the caller changes while handling an event (e.g. ``accept_publish``, even after an
``await``) applies to the events after it. Acknowledgements and ping responses are queued on
their own. After a :class:`~simulcast.codecs.rtmp.errors.RemoteProtocolError` the connection is
dead and re-raises it.

A connection runs in three stages, one module each: the handshake
(:mod:`~simulcast.codecs.rtmp.handshake`), the chunk stream with its control messages
(:mod:`~simulcast.codecs.rtmp.chunk_stream`), and each side's command flow
(:mod:`~simulcast.codecs.rtmp.server`, :mod:`~simulcast.codecs.rtmp.client`), whose states move
by the tables of :mod:`~simulcast.codecs.rtmp.states`.
"""

from __future__ import annotations

from simulcast.codecs.rtmp.chunk_stream import CSID_AUDIO, CSID_VIDEO, ConnectionLimits
from simulcast.codecs.rtmp.client import ClientConnection
from simulcast.codecs.rtmp.server import ServerConnection

__all__ = ["CSID_AUDIO", "CSID_VIDEO", "ClientConnection", "ConnectionLimits", "ServerConnection"]
