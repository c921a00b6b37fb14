"""What sources (ingest listeners, pulls) and the media engine ask of each other.

The media engine implements :class:`PublishHandler` and :class:`PullTarget`; ``simulcast.ingest``
implements :class:`Listener` and :class:`Pull`. They are typed here, in the layer below both, so
the engine is handed its sources by the node's assembly (``simulcast.node``) instead of importing
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from simulcast.engine import PublishRequest
from simulcast.media.switcher import Feed

APP = "live"
"""The RTMP application (and SRT default) of the streams API's publishes."""


class PublishHandler(Protocol):
    """What an ingest listener needs from the engine."""

    def accepts_app(self, app: str) -> bool:
        """Whether publishers may connect to RTMP application ``app`` (checked at ``connect``)."""
        ...

    async def begin_publish(self, request: PublishRequest, kick: Callable[[], None]) -> Feed:
        """Authorize and join a session; raise ``PublishRefused``. ``kick`` disconnects it."""
        ...

    async def end_publish(self, feed: Feed, reason: str, *, explicit: bool) -> None:
        """The publisher of ``feed`` is gone: it unpublished (``explicit``) or was lost."""
        ...

    async def srt_passphrase(self, request: PublishRequest) -> str | None:
        """The passphrase an SRT publisher of ``request`` must encrypt with (``None``: clear)."""
        ...


class Listener(Protocol):
    """An ingest listener (RTMP(S), SRT) as the engine starts and stops it."""

    port: int | None
    """The bound port, once started."""

    async def start(self) -> None:
        """Bind and accept publishers."""
        ...

    async def stop_listening(self) -> None:
        """Accept no new publishers; the connected ones stay."""
        ...

    async def close(self) -> None:
        """Disconnect every publisher."""
        ...


ListenerFactory = Callable[[PublishHandler], Listener]
"""Builds a listener that hands its publishers to the given engine."""


class PullTarget(Protocol):
    """What a pull publishes into (an instance input)."""

    def attach(self, kick: Callable[[], None]) -> Feed:
        """Join as the input's publisher; ``kick`` disconnects us."""
        ...

    def detach(self, feed: Feed, reason: str) -> None:
        """Leave (with a reason)."""
        ...


class Pull(Protocol):
    """A pull of a remote stream into an input: reconnects until stopped."""

    last_error: str | None
    """Why the last connection ended, if it did."""

    def start(self) -> None:
        """Start pulling in the background."""
        ...

    async def stop(self) -> None:
        """Stop pulling (the input loses this publisher)."""
        ...


PullFactory = Callable[[str, PullTarget], Pull]
"""A (not yet started) pull of a URL into an input."""
