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


ARCHIVE_FILE_OPTION = "fileName"
"""``OutputSpec.options`` key of an ``archive`` output: the recording's file name, chosen (and
recorded) by the control plane before the recorder starts."""


SHIFT_QUERY = "shift"
"""``?shift=1`` on a publish URL (``rtmp://HOST/live/KEY?shift=1``) takes a live stream (or an
instance input) over from its current publisher: stream shift, on this node or across nodes."""


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
    rejected: bool = False
    """The last attempt reached the destination and it refused (e.g. a wrong stream key)."""


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


class ControlPlane(Protocol):
    """What the media plane asks of the control plane."""

    async def authorize_publish(self, request: PublishRequest) -> PublishGrant:
        """Record a new session and return its outputs, or raise :class:`PublishRefused`."""
        ...

    async def on_engine_event(self, event: EngineEvent) -> None:
        """Record something that happened in the media plane (must not raise)."""
        ...

    async def srt_passphrase(self, stream_key: str) -> str | None:
        """The SRT passphrase set on the stream with ``stream_key`` (``None``: none set, or no
        such key). Asked before :meth:`authorize_publish`, so a caller with the wrong secret
        is refused without a session being recorded."""
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

    async def rekey(self, stream_id: int, stream_key: str) -> bool:
        """The stream's key was rotated: a publisher may rejoin its live session (protection,
        stream shift) only with ``stream_key`` from now on; ``False`` if not live here."""
        ...


# -- Instances (the v1 dialect): element graphs on the same engine ---------------------------

ElementType = Literal[
    "inputstream", "videoplayer", "switch", "failover", "htmloverlay", "splitter", "outputstream"
]


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """One element of a running instance, with its configuration settings and overrides merged.

    The control plane validates settings before they reach the engine (V1.md's table), so the
    engine reads them without checking types again.
    """

    id: str
    """``<type>-<n>``, e.g. ``inputstream-1``."""
    type: ElementType
    settings: Mapping[str, object]
    inputs: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """Everything the media plane needs to run one instance.

    ``input_keys`` maps each ``inputstream`` element id to its 32-hex stream key (publish at
    ``rtmp://HOST:1935/{elementId}/{key}``); ``destinations`` maps each v1 destination id an
    ``outputstream`` names to its full URL including the secret key.
    """

    instance_id: str
    account_id: int
    elements: Sequence[ElementSpec]
    input_keys: Mapping[str, str]
    destinations: Mapping[str, str]
    outputs_live: Mapping[str, bool] = field(default_factory=dict)
    """``outputstream`` element id -> LIVE; absent means OFFLINE (a new instance's default)."""


@dataclass(frozen=True, slots=True)
class ElementStatus:
    """One element's live figures, as ``state.elements[]`` of V1.md shows them.

    ``state`` is JSON-ready: an input's ``streamkey``, ``live``, ``codec``, ``width``,
    ``height``, ``fps``, ``bitrateKbps``; an output's ``live`` and ``destinations``
    (``[{"id", "state", "lastError", "bytesSent"}]``); a failover's ``active``; a switch's
    ``input``.
    """

    id: str
    type: ElementType
    state: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """A snapshot of one running instance as the media plane sees it."""

    instance_id: str
    account_id: int
    started_at_ms: int
    elements: Sequence[ElementStatus]
    inputs_live: bool
    """Whether any source (a publishing input, a player, a failover image) feeds an output."""
    outputs_live: bool
    """Whether any ``outputstream`` is LIVE."""


@dataclass(frozen=True, slots=True)
class InstanceEvent:
    """Something an instance's element did that the control plane turns into a webhook.

    ``event`` is one of V1.md's names: ``input.disconnected``, ``input.resumed``,
    ``input.low_bitrate``, ``failover.activated``, ``failover.recovered``,
    ``destination.failed``; ``data`` is the webhook's extra fields (e.g. ``bitrateKbps``).
    """

    instance_id: str
    event: str
    element_id: str
    at_ms: int
    data: Mapping[str, object] = field(default_factory=dict)


EngineEvent = SessionEnded | OutputStateChanged | PublisherLost | PublisherResumed | InstanceEvent
"""Everything the media plane reports to :meth:`ControlPlane.on_engine_event`."""


class InstanceEngine(Protocol):
    """What the control plane asks of the media plane about instances (V1.md)."""

    def instances(self) -> Mapping[str, InstanceInfo]:
        """Running instances on this node, by instance id."""
        ...

    def instance(self, instance_id: str) -> InstanceInfo | None:
        """One running instance, or ``None`` when it does not run here."""
        ...

    async def start_instance(self, spec: InstanceSpec) -> None:
        """Build the instance's element graph and start listening on its inputs' keys."""
        ...

    async def update_instance(self, spec: InstanceSpec) -> bool:
        """Apply new settings to a running instance within a second (a switch's ``input``,
        an output's destinations, a failover's image); ``False`` if it does not run here."""
        ...

    async def set_outputs(
        self, instance_id: str, live: bool, element_id: str | None = None
    ) -> bool:
        """Turn every ``outputstream`` (or one) LIVE or OFFLINE; ``False`` if not running."""
        ...

    async def stop_instance(self, instance_id: str, reason: str) -> bool:
        """Stop an instance: disconnect its publishers, stop its outputs; ``False`` if absent."""
        ...
