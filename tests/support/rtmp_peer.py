"""An in-memory peer for RTMP codec tests."""

from __future__ import annotations

from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp.connection import ServerConnection


def serve(
    conn: ServerConnection, data: bytes, refuse_publish: tuple[str, str] | None = None
) -> list[ev.Event]:
    """Feed ``data`` and answer like a permissive ingest, or like one that refuses every publish
    with ``refuse_publish`` (status code, description); return the events."""
    events = []
    for event in conn.receive_data(data):
        events.append(event)
        match event:
            case ev.ConnectRequest():
                conn.accept_connect()
            case ev.CreateStream(transaction_id=tid):
                conn.accept_create_stream(tid)
            case ev.PublishCommand(msid=msid) if refuse_publish is not None:
                conn.reject_publish(msid, *refuse_publish)
            case ev.PublishCommand(msid=msid, stream_name=name):
                conn.accept_publish(msid, name)
    return events
