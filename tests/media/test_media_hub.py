"""Hub: one live stream per stream id and per key."""

from __future__ import annotations

import pytest

from simulcast.media.hub import Hub, StreamBusy


def test_second_publisher_refused_until_closed() -> None:
    hub = Hub(gop_max_bytes=1_000_000, gop_max_seconds=4)
    stream = hub.open(7, "sess-a", "key-a")
    assert hub.get(7) is stream and hub.is_key_live("key-a")
    with pytest.raises(StreamBusy):
        hub.open(7, "sess-b", "key-b")
    with pytest.raises(StreamBusy):
        hub.open(8, "sess-c", "key-a")
    reader = stream.add_reader(max_bytes=1000, max_seconds=1)
    assert hub.close(7) is stream
    assert reader.closed and hub.get(7) is None and not hub.is_key_live("key-a")
    assert hub.close(7) is None
    assert hub.open(7, "sess-d", "key-a").session_id == "sess-d"
