"""The seam between the media plane and the control plane.

The media plane (ingest, hub, outputs) implements :class:`Engine`; the control plane (accounts,
money, history) implements :class:`ControlPlane`. Neither side imports the other's modules: they
meet only through these protocols and the frozen value types below, which is also what lets media
nodes run apart from API nodes later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

OutputKind = Literal["rtmp", "hls", "archive"]
OutputState = Literal["connecting", "live", "retrying", "failed", "stopped"]


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One output the control plane wants a live session to have.

    ``url`` is the full destination URL including its secret stream key (rtmp/rtmps), for
    ``kind == "rtmp"``; ``options`` carries kind-specific settings (HLS window, mode, ...).
    """

    destination_id: int
    kind: OutputKind
    url: str = ""
    options: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A publisher asks to go live: the RTMP app, stream name (the stream key) and its query."""

    app: str
    stream_key: str
    query: Mapping[str, str]
    remote_addr: str


@dataclass(frozen=True, slots=True)
class PublishGrant:
    """The control plane's yes: the session it recorded and the outputs the session starts with.

    ``protection_seconds`` > 0 turns on disconnect protection: when the publisher drops without
    unpublishing, the session stays live (outputs get a slate) for that long, waiting for it.
    """

    session_id: str
    stream_id: int
    account_id: int
    outputs: Sequence[OutputSpec]
    protection_seconds: float = 0.0


class PublishRefused(Exception):
    """The control plane's no. ``code`` is the RTMP onStatus code sent to the publisher."""

    def __init__(self, description: str, code: str = "NetStream.Publish.BadName") -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True, slots=True)
class OutputStatus:
    """The visible state and counters of one output of a live session.

    ``ready``, ``window_seconds`` and ``available_from_ms`` describe playback outputs (HLS: the
    playlist holds at least two segments; the DVR window actually on disk and where it starts).
    """

    destination_id: int
    kind: OutputKind
    state: OutputState
    attempt: int = 0
    next_try_at_ms: int | None = None
    last_error: str | None = None
    bytes_sent: int = 0
    bitrate_kbps: float = 0.0
    dropped_frames: int = 0
    reconnects: int = 0
    ready: bool = False
    window_seconds: float = 0.0
    available_from_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A snapshot of one live session as the media plane sees it."""

    session_id: str
    stream_id: int
    account_id: int
    started_at_ms: int
    bytes_in: int
    outputs: Mapping[int, OutputStatus]
    protecting: bool = False
    """The publisher is gone and outputs get the slate while the session waits for it."""
    protection_ends_at_ms: int | None = None
    """While protecting: when the session ends (``publisher_timeout``) unless it resumes."""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """A live session is over: publisher gone, stopped by command, or server shutting down."""

    session_id: str
    stream_id: int
    reason: str
    ended_at_ms: int
    bytes_in: int


@dataclass(frozen=True, slots=True)
class OutputStateChanged:
    """An output moved between states (e.g. ``live`` -> ``retrying``)."""

    session_id: str
    stream_id: int
    status: OutputStatus


@dataclass(frozen=True, slots=True)
class PublisherLost:
    """A protected session's publisher dropped without unpublishing; outputs get the slate."""

    session_id: str
    stream_id: int
    reason: str
    at_ms: int
    grace_seconds: float


@dataclass(frozen=True, slots=True)
class PublisherResumed:
    """A publisher took the session over: back from protection, or a stream shift."""

    session_id: str
    stream_id: int
    at_ms: int
    shift: bool
    """``True`` when it replaced a publisher that was still connected (``?shift=1``)."""
    gap_ms: int
    """How long the slate played (0 for a shift)."""


EngineEvent = SessionEnded | OutputStateChanged | PublisherLost | PublisherResumed


class ControlPlane(Protocol):
    """What the media plane asks of the control plane."""

    async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
        """Record a new session and return its outputs, or raise :class:`PublishRefused`."""
        ...

    async def on_engine_event(self, event: EngineEvent) -> None:
        """Record something that happened in the media plane (must not raise)."""
        ...


class Engine(Protocol):
    """What the control plane asks of the media plane."""

    def sessions(self) -> Mapping[int, SessionInfo]:
        """Live sessions on this node, by stream id."""
        ...

    def session(self, stream_id: int) -> SessionInfo | None:
        """The live session of a stream, or ``None`` when the stream is offline here."""
        ...

    async def stop(self, stream_id: int, reason: str) -> bool:
        """End a stream's live session (publisher and every output); ``False`` if not live."""
        ...

    async def add_output(self, stream_id: int, spec: OutputSpec) -> bool:
        """Start an output on a live session; ``False`` if the stream is not live here."""
        ...

    async def remove_output(self, stream_id: int, destination_id: int) -> bool:
        """Stop and drop an output of a live session; ``False`` if there was none."""
        ...
