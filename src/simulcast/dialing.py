"""Opens that cannot wait forever: how the media plane dials a server (an RTMP(S) push or pull).

A push to a destination and a pull from a source connect the same way, so both go through
here: the TCP connect and, with ``tls``, the TLS handshake are bounded together, and TLS
verifies the certificate and host name like any client (SNI via ``server_hostname``).
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path


async def dial(
    host: str, port: int, *, tls: bool, seconds: float, ca_file: Path | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``host:port`` (over TLS when ``tls``) within ``seconds``.

    TLS trusts the system's certificate store, or only ``ca_file``'s when given.
    """
    async with asyncio.timeout(seconds):
        return await asyncio.open_connection(
            host,
            port,
            ssl=ssl.create_default_context(cafile=ca_file) if tls else None,
            server_hostname=host if tls else None,
        )
