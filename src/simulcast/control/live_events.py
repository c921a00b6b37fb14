"""Live state changes for open dashboards: the engine's events, fanned out per account.

The control plane publishes what the media plane reports (a session started or ended, an output
changed state, the publisher dropped or came back) and every open event stream of that account
gets it. A subscriber's queue is bounded: one that falls behind is marked ``overflowed`` and told
to reload instead of ever slowing the control plane down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

QUEUE_SIZE = 256


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One change: ``kind`` names it (``stream``, ``output``), ``data`` is JSON-ready."""

    kind: str
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    """One open event stream of one account."""

    account_id: int
    queue: asyncio.Queue[LiveEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


class LiveEvents:
    """In-process fan-out of live changes to the event streams of each account."""

    def __init__(self) -> None:
        self._subscribers: dict[int, set[Subscription]] = {}
        # The account of each stream seen going live on this node: output and end events name
        # only the stream, and a session's start always comes first.
        self._owners: dict[int, int] = {}

    @contextmanager
    def subscribe(self, account_id: int) -> Iterator[Subscription]:
        """Receive the account's events for the duration of the ``with`` block."""
        sub = Subscription(account_id)
        self._subscribers.setdefault(account_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subscribers.get(account_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[account_id]

    def stream_started(self, *, account_id: int, stream_id: int, session_id: str) -> None:
        """A publish was authorized: the stream is live."""
        self._owners[stream_id] = account_id
        data = {"streamId": stream_id, "status": "active", "sessionId": session_id}
        self._publish(stream_id, LiveEvent("stream", data))

    def publish(self, stream_id: int, kind: str, data: dict[str, Any]) -> None:
        """Send a change of a stream (seen live on this node) to its account's streams."""
        self._publish(stream_id, LiveEvent(kind, {"streamId": stream_id, **data}))

    def _publish(self, stream_id: int, event: LiveEvent) -> None:
        account_id = self._owners.get(stream_id)
        if account_id is None:
            return
        for sub in self._subscribers.get(account_id, ()):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True
