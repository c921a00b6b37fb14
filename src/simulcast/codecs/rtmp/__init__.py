"""Sans-I/O RTMP: handshake, chunk stream, messages and h11-style connections.

Start with :class:`~simulcast.codecs.rtmp.connection.ServerConnection` (ingest) or
:class:`~simulcast.codecs.rtmp.connection.ClientConnection` (push); events live in
:mod:`~simulcast.codecs.rtmp.events`, errors in :mod:`~simulcast.codecs.rtmp.errors`.
"""
