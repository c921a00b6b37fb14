"""Nostr relays for the tests, both speaking NIP-01 over real websockets.

:class:`LocalRelay` is nostr-sdk's in-process relay (it verifies every event), restartable on the
same port. :class:`CompromisedRelay` is a minimal relay that forwards events without checking
their signatures, as a malicious relay would: what reaches the server is then up to the server.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import nostr_sdk as n
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.support import free_port


class LocalRelay:
    """nostr-sdk's local relay on a fixed loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._relay: n.LocalRelay | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # The default rate limit (events per minute per connection) would throttle the tests'
        # bursts of wallet requests.
        limit = n.RateLimit(max_reqs=1000, notes_per_minute=100_000)
        self._relay = (
            n.LocalRelayBuilder().addr("127.0.0.1").port(self.port).rate_limit(limit).build()
        )
        await self._relay.run()

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.shutdown()
            self._relay = None


class CompromisedRelay:
    """A minimal NIP-01 relay (EVENT, REQ, CLOSE; OK and EOSE) that checks no signature and
    ignores ``#e`` in filters: a subscriber to one wallet response gets every event of that
    author and kind, forged or answering another request."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[dict[str, Any]] = []
        self._subs: dict[tuple[ServerConnection, str], list[n.Filter]] = {}
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def forged(self) -> list[dict[str, Any]]:
        """The events it relayed whose signature does not verify."""
        return [e for e in self.events if not n.Event.from_json(json.dumps(e)).verify()]

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] == "EVENT":
                    event = msg[1]
                    self.events.append(event)
                    await ws.send(json.dumps(["OK", event["id"], True, ""]))
                    for (peer, sub), filters in list(self._subs.items()):
                        if _matches(filters, event):
                            with contextlib.suppress(websockets.ConnectionClosed):
                                await peer.send(json.dumps(["EVENT", sub, event]))
                elif msg[0] == "REQ":
                    filters = [
                        n.Filter.from_json(json.dumps({k: v for k, v in f.items() if k != "#e"}))
                        for f in msg[2:]
                    ]
                    self._subs[(ws, msg[1])] = filters
                    for event in self.events:
                        if _matches(filters, event):
                            await ws.send(json.dumps(["EVENT", msg[1], event]))
                    await ws.send(json.dumps(["EOSE", msg[1]]))
                elif msg[0] == "CLOSE":
                    self._subs.pop((ws, msg[1]), None)
        except websockets.ConnectionClosed:
            pass
        finally:
            for key in [k for k in self._subs if k[0] is ws]:
                self._subs.pop(key, None)


def _matches(filters: list[n.Filter], event: dict[str, Any]) -> bool:
    parsed = n.Event.from_json(json.dumps(event))
    return any(f.match_event(parsed) for f in filters)
