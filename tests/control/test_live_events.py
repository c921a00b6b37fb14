"""The dashboards' fan-out of live changes: per account, bounded, never blocking the publisher."""

from __future__ import annotations

from simulcast.control.live_events import QUEUE_SIZE, LiveEvents


def test_events_reach_only_the_streams_account() -> None:
    live = LiveEvents()
    with live.subscribe(1) as mine, live.subscribe(2) as theirs:
        live.publish(10, "output", {"state": "live"})  # never seen live here: no owner known
        live.stream_started(account_id=1, stream_id=10, session_id="S1")
        live.publish(10, "output", {"destinationId": 3, "state": "retrying"})
        got = [mine.queue.get_nowait() for _ in range(mine.queue.qsize())]
        assert [(e.kind, e.data) for e in got] == [
            ("stream", {"streamId": 10, "status": "active", "sessionId": "S1"}),
            ("output", {"streamId": 10, "destinationId": 3, "state": "retrying"}),
        ]
        assert theirs.queue.empty()


def test_a_slow_subscriber_is_marked_overflowed_instead_of_blocking() -> None:
    live = LiveEvents()
    with live.subscribe(1) as slow:
        live.stream_started(account_id=1, stream_id=5, session_id="S")
        for _ in range(QUEUE_SIZE + 10):
            live.publish(5, "stream", {"status": "active"})
        assert slow.overflowed
        assert slow.queue.qsize() == QUEUE_SIZE


def test_leaving_unsubscribes() -> None:
    live = LiveEvents()
    with live.subscribe(1) as sub:
        pass
    live.stream_started(account_id=1, stream_id=5, session_id="S")
    assert sub.queue.empty()
