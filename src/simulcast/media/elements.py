"""The elements of an instance's graph (V1.md) that move media without re-encoding.

Every element but an output owns (or, for a splitter, shares) one :class:`LiveStream`, its
output. Sources (``inputstream``) are fed by publishers through a :class:`Switcher`, exactly as a
streams API session is, so a returning publisher or a stream shift continues the input's own
timeline. Passthrough elements (``switch``, ``failover``) read their upstream streams through
:class:`Edge` objects: a reader whose sink hands every unit, synchronously, to a feed of the
element's own switcher, so the element re-emits its on-air input with rebased, monotonic
timestamps and cuts only at keyframes; no task per element, no copies. A failover is a
switcher plus :class:`Protection`: the slate the streams API plays when a protected publisher
drops. Sinks (``outputstream``) are one push :class:`Supervisor` per destination while LIVE.

Elements learn that an upstream source dropped or came back through :meth:`Element.changed`
(liveness propagates down the graph); media itself tells a passthrough element that its input is
back, since an edge reconnects on the first unit it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simulcast.codecs import flv
from simulcast.codecs.unit import Kind, MediaUnit
from simulcast.engine import ElementSpec, ElementType, OutputSpec, OutputStatus
from simulcast.media.output import OutputFactory, Supervisor
from simulcast.media.protection import Protection
from simulcast.media.reader import Reader, is_metadata
from simulcast.media.slate import SlateParams
from simulcast.media.slate_encoder import SlateEncoder
from simulcast.media.sources import Pull, PullFactory
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import Feed, Switcher, Takeover

if TYPE_CHECKING:
    from simulcast.media.overlay_browser import OverlayBrowser

log = logging.getLogger("simulcast.elements")

MAX_DESTINATIONS = 6
"""V1.md: an output sends to at most this many destinations."""

DESTINATION_FAILED_AFTER_S = 30.0
"""A LIVE destination that has not been live for this long is reported ``destination.failed``."""

LOW_BITRATE_EVERY_S = 60.0
"""``input.low_bitrate`` is sent at most this often per failover."""

DUAL_HD_FRAMES: Mapping[str, tuple[int, int]] = {
    "dualhd-2640": (2640, 1280),
    "dualhd-2000": (2000, 1280),
    "dualhd-1760": (1760, 854),
}
"""The frame size of each Dual HD input format (V1.md); another size is a ``mismatch``."""

_BITRATE_WINDOW_S = 5.0
_LOW_BITRATE_SETTLE_S = 5.0  # an input just back is not judged on its first seconds


class ElementError(ValueError):
    """An element the media plane cannot run (a processing type, an unknown input...)."""


@dataclass(frozen=True, slots=True)
class GraphContext:
    """What elements need from the engine that hosts them."""

    instance_id: str
    queue_bytes: int
    queue_seconds: float
    retry_min_seconds: float
    retry_max_seconds: float
    push_factory: OutputFactory
    slates: Callable[[str | None], SlateEncoder]
    """The slate encoder of an image path (``None``: the built-in slate or the operator's)."""
    emit: Callable[[str, str, Mapping[str, object]], None]
    """Report an instance event: ``(event name, element id, data)``."""
    ingest_urls: Callable[[str, str], Mapping[str, object]]
    """An input's publish URLs from its element id and key."""
    pull: PullFactory
    """A (not yet started) pull of a URL into an input."""
    ffmpeg: str = "ffmpeg"
    """The ffmpeg binary processing elements run (the bundled one)."""
    overlay_browser: Callable[[], OverlayBrowser] | None = None
    """The node's Chromium for ``htmloverlay`` (``None``: overlays cannot run here)."""
    overlays_allow_private: bool = False
    """Whether overlay pages may come from loopback/private addresses."""

    def new_stream(self, element_id: str) -> LiveStream:
        """An element's own output stream (stream id 0: instances are not in the hub)."""
        return LiveStream(
            0,
            f"{self.instance_id}/{element_id}",
            gop_max_bytes=self.queue_bytes,
            gop_max_seconds=self.queue_seconds,
        )

    def add_reader(self, stream: LiveStream) -> Reader:
        """A bounded reader of ``stream`` with the node's output queue bounds."""
        return stream.add_reader(max_bytes=self.queue_bytes, max_seconds=self.queue_seconds)


class RateMeter:
    """Bits per second of a growing byte counter, over the last few samples (one a second)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, total: int, now: float) -> None:
        """Record the counter's value ``total`` at ``now`` (monotonic seconds)."""
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _BITRATE_WINDOW_S:
            self._samples.popleft()

    def reset(self) -> None:
        """Forget the history (the source restarted)."""
        self._samples.clear()

    @property
    def span(self) -> float:
        """Seconds between the oldest and newest sample."""
        return self._samples[-1][0] - self._samples[0][0] if self._samples else 0.0

    @property
    def kbps(self) -> float:
        """The rate over the window, 0 until two samples a second apart exist."""
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) * 8 / (t1 - t0) / 1000 if t1 - t0 >= 1.0 else 0.0


class Element:
    """One node of the graph."""

    def __init__(self, spec: ElementSpec, ctx: GraphContext) -> None:
        self.id = spec.id
        self.type: ElementType = spec.type
        self.spec = spec
        self._ctx = ctx
        self.downstream: list[Element] = []
        """Elements that read this one (told when its liveness changes)."""
        self._live = False

    @property
    def stream(self) -> LiveStream:
        """The element's output stream (outputs have none)."""
        raise ElementError(f"{self.id} has no output stream")

    @property
    def live(self) -> bool:
        """Whether media from a live source is coming out of this element."""
        return self._live

    def _set_live(self, live: bool) -> None:
        if live == self._live:
            return
        self._live = live
        for element in self.downstream:
            element.changed(self)

    def changed(self, upstream: Element) -> None:
        """``upstream`` went live or stopped being live."""

    def check(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """Raise :class:`ElementError` if :meth:`update` would refuse ``spec``."""

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """Apply new settings at run time (what V1.md lets overrides change)."""
        self.spec = spec

    def tick(self, now: float) -> None:
        """Once a second: sample meters, check thresholds."""

    def state(self) -> dict[str, object]:
        """The element's live figures for ``state.elements[].state``."""
        return {}

    def kick_publishers(self) -> None:
        """Disconnect whoever publishes into this element (the instance is stopping)."""

    async def close(self) -> None:
        """Stop the element's tasks and outputs, and close its stream."""


class Edge:
    """An element's intake from one upstream element: a reader of the upstream stream whose
    sink hands each unit to a feed of the element's switcher (see the module docstring).

    While not ``wanted`` (a switch's other inputs, a failover's idle backup) units are dropped
    at once. When wanted, the first keyframe (after the upstream's config, replayed first)
    attaches a feed; the switcher puts it on air at once if it is the first source, else at
    that keyframe. :meth:`disconnect` (also the feed's kick) detaches it.
    """

    def __init__(self, upstream: Element, switcher: Switcher, ctx: GraphContext) -> None:
        self.upstream = upstream
        self._switcher = switcher
        self.feed: Feed | None = None
        self.wanted = False
        self.bytes = 0
        """Payload bytes seen from upstream (cumulative): the input's rate, for thresholds."""
        self.rate = RateMeter()
        self._reader = ctx.add_reader(upstream.stream)
        self._reader.set_sink(self)
        self._reader.resync()  # replays the upstream's config and GOP cache into the sink

    def offer(self, unit: MediaUnit) -> bool:
        """Take one upstream unit (always: the element never queues)."""
        self.bytes += unit.size
        if not self.wanted:
            return True
        if self.feed is None:
            if unit.sequence_header or is_metadata(unit) or not _starts_gop(unit, self.upstream):
                return True  # the config is replayed from the stream when the feed attaches
            self.feed = self._switcher.attach(self.disconnect)
            stream = self.upstream.stream
            if stream.metadata is not None:
                self.feed.publish(stream.metadata)
            for kind in (Kind.VIDEO, Kind.AUDIO):
                header = stream.sequence_headers.get(kind)
                if header is not None:
                    self.feed.publish(header)
        self.feed.publish(unit)
        return True

    def flush(self) -> None:
        """The upstream batch ended: the element's own readers send theirs."""
        if self.feed is not None:
            self._switcher.stream.flush()

    @property
    def on_air(self) -> bool:
        """Whether this edge's feed is the switcher's active source."""
        return self.feed is not None and self.feed is self._switcher.active

    def disconnect(self) -> None:
        """Detach from the switcher (the next wanted keyframe attaches again)."""
        if self.feed is not None:
            self._switcher.detach(self.feed)
            self.feed = None

    def close(self) -> None:
        """Stop reading upstream."""
        self.disconnect()
        self.upstream.stream.remove_reader(self._reader)


def _starts_gop(unit: MediaUnit, upstream: Element) -> bool:
    if unit.kind == Kind.VIDEO:
        return unit.keyframe
    return unit.kind == Kind.AUDIO and not upstream.stream.has_video


class InputElement(Element):
    """``inputstream``: a pushed (or pulled) RTMP source.

    One publisher is on air at a time; a second one is refused unless it asks for a stream
    shift (then it takes over at its first keyframe and the first is disconnected). A
    publisher that returns after a drop continues the input's timeline.
    """

    def __init__(self, spec: ElementSpec, ctx: GraphContext, key: str) -> None:
        super().__init__(spec, ctx)
        self.key = key
        self._stream = ctx.new_stream(spec.id)
        self.switcher = Switcher(
            self._stream, on_params=self._learned, on_takeover=self._taken_over
        )
        self.params: SlateParams | None = None
        self.rate = RateMeter()
        self._ever_live = False
        self._pull: Pull | None = None

    @property
    def stream(self) -> LiveStream:
        """The input's stream."""
        return self._stream

    @property
    def pull_url(self) -> str:
        """The ``pullUrl`` setting (empty: the input is pushed to)."""
        url = self.spec.settings.get("pullUrl")
        return url if isinstance(url, str) else ""

    def start_pull(self) -> None:
        """Start pulling when ``pullUrl`` is set."""
        if self.pull_url and self._pull is None:
            self._pull = self._ctx.pull(self.pull_url, self)
            self._pull.start()

    async def stop_pull(self) -> None:
        """Stop the pull, if any (the input is down until a new source)."""
        pull, self._pull = self._pull, None
        if pull is not None:
            await pull.stop()

    def attach(self, kick: Callable[[], None]) -> Feed:
        """A publisher joins (the caller checked it may): on air now, or at its keyframe."""
        feed = self.switcher.attach(kick)
        if feed is self.switcher.active:
            self._ever_live = True
            self._set_live(True)
        return feed

    def detach(self, feed: Feed, reason: str) -> None:
        """A publisher is gone; if it was on air, the input is down."""
        if self.switcher.detach(feed):
            self.rate.reset()
            self._ctx.emit("input.disconnected", self.id, {"reason": reason})
            self._set_live(False)

    def kick_publishers(self) -> None:
        """Disconnect the publisher on air and one waiting to take over."""
        for feed in (self.switcher.active, self.switcher.pending):
            if feed is not None:
                feed.kick()

    def _learned(self, params: SlateParams) -> None:
        self.params = params

    def _taken_over(self, takeover: Takeover) -> None:
        if takeover.previous is not None:
            takeover.previous.kick()  # stream shift: the new device replaced the old
            return
        if self._ever_live:
            self._ctx.emit("input.resumed", self.id, {})
        self._ever_live = True
        self._set_live(True)

    def tick(self, now: float) -> None:
        """Sample the received bytes."""
        if self.live:
            self.rate.sample(self._stream.bytes_in, now)

    def state(self) -> dict[str, object]:
        """Key, publish URLs and what the source sends (and a pull's last error)."""
        params = self.params if self.live else None
        pull = {"pullError": self._pull.last_error} if self._pull is not None else {}
        frame = DUAL_HD_FRAMES.get(str(self.spec.settings.get("format")))
        if frame and params and params.has_video and (params.width, params.height) != frame:
            pull["warning"] = "mismatch"  # outputs crop as well as they can
        return pull | {
            "streamkey": self.key,
            "ingest": dict(self._ctx.ingest_urls(self.id, self.key)),
            "live": self.live,
            "codec": self._codec() if self.live else None,
            "width": params.width if params and params.has_video else None,
            "height": params.height if params and params.has_video else None,
            "fps": params.fps if params and params.has_video else None,
            "bitrateKbps": round(self.rate.kbps) if self.live else 0,
        }

    def _codec(self) -> str | None:
        header = self._stream.sequence_headers.get(Kind.VIDEO)
        if header is None:
            return None
        with contextlib.suppress(flv.FlvError):
            return flv.parse_video(header.payload).codec
        return None

    async def close(self) -> None:
        """Stop the pull, close the input's stream (its readers end)."""
        await self.stop_pull()
        self.kick_publishers()
        self._stream.close()


class SplitterElement(Element):
    """``splitter``: its output *is* its input's stream (any stream already fans out to many
    readers without copies), so it costs nothing per unit."""

    def __init__(self, spec: ElementSpec, ctx: GraphContext, upstream: Element) -> None:
        super().__init__(spec, ctx)
        self._upstream = upstream
        self._live = upstream.live

    @property
    def stream(self) -> LiveStream:
        """The input's stream."""
        return self._upstream.stream

    def changed(self, upstream: Element) -> None:
        """Follow the input."""
        self._set_live(upstream.live)


class SwitchElement(Element):
    """``switch``: forwards the selected input; a new selection goes on air at its first
    keyframe, the previous one stays on air until then (no gap downstream)."""

    def __init__(self, spec: ElementSpec, ctx: GraphContext, upstreams: Sequence[Element]) -> None:
        super().__init__(spec, ctx)
        self._stream = ctx.new_stream(spec.id)
        self._switcher = Switcher(
            self._stream, on_params=lambda _: None, on_takeover=self._taken_over
        )
        self._edges = {u.id: Edge(u, self._switcher, ctx) for u in upstreams}
        self.selected = ""
        self._select(self._wanted_input(spec))

    @property
    def stream(self) -> LiveStream:
        """The switch's stream."""
        return self._stream

    def _wanted_input(self, spec: ElementSpec) -> str:
        chosen = spec.settings.get("input")
        if isinstance(chosen, str) and chosen in self._edges:
            return chosen
        if chosen:
            raise ElementError(f"{spec.id}: input {chosen!r} is not one of its inputs")
        return spec.inputs[0]

    def check(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """The selected input must be one of the switch's inputs."""
        self._wanted_input(spec)

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """Select another input (cut at its next keyframe)."""
        selected = self._wanted_input(spec)
        super().update(spec, destinations)
        self._select(selected)

    def _select(self, selected: str) -> None:
        if selected == self.selected:
            return
        log.info("%s: switching to %s", self.id, selected)
        self.selected = selected
        for element_id, edge in self._edges.items():
            if element_id == selected:
                edge.wanted = True
            elif not edge.on_air:
                edge.wanted = False
                edge.disconnect()
            # the edge on air stays until the selected input's keyframe takes over
        self._update_live()

    def _taken_over(self, takeover: Takeover) -> None:
        if takeover.previous is not None:
            takeover.previous.kick()
        for element_id, edge in self._edges.items():
            if element_id != self.selected:
                edge.wanted = False
        self._update_live()

    def changed(self, upstream: Element) -> None:
        """An input dropped or came back."""
        self._update_live()

    def _update_live(self) -> None:
        on_air = [e for e in self._edges.values() if e.on_air]
        selected = self._edges[self.selected]
        # Live while the on-air input is (it stays on air until the new one's keyframe), or
        # the selected one will take over on its own.
        self._set_live(
            any(e.upstream.live for e in on_air) or (not on_air and selected.upstream.live)
        )

    def state(self) -> dict[str, object]:
        """The selected input."""
        return {"input": self.selected}

    async def close(self) -> None:
        """Stop reading and close the stream."""
        for edge in self._edges.values():
            edge.close()
        self._stream.close()


class FailoverElement(Element):
    """``failover``: its input, or while that is down the slate (built-in or ``image``) or
    ``backupInput``; the input takes back over at its first keyframe after it returns."""

    def __init__(
        self,
        spec: ElementSpec,
        ctx: GraphContext,
        primary: Element,
        backup: Element | None,
    ) -> None:
        super().__init__(spec, ctx)
        self._stream = ctx.new_stream(spec.id)
        self._params: SlateParams | None = None
        self._switcher = Switcher(
            self._stream, on_params=self._learned, on_takeover=self._taken_over
        )
        self._protection = self._new_protection(spec)
        self._primary = Edge(primary, self._switcher, ctx)
        self._primary.wanted = True
        self._backup = Edge(backup, self._switcher, ctx) if backup is not None else None
        self.active = False
        """Whether the failover is replacing its input right now."""
        self._since = 0.0
        self._ending: asyncio.Task[float] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._low_reported_at = -math.inf
        self._live = primary.live

    @property
    def stream(self) -> LiveStream:
        """The failover's stream."""
        return self._stream

    def _learned(self, params: SlateParams) -> None:
        self._params = params
        self._protection.learned(params)

    def _new_protection(self, spec: ElementSpec) -> Protection:
        image = spec.settings.get("image")
        slates = self._ctx.slates(image if isinstance(image, str) else None)
        # No timeout: a failover holds its output for as long as the instance runs.
        protection = Protection(self._switcher, slates, math.inf, _no_timeout)
        if self._params is not None:
            protection.learned(self._params)
        return protection

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """A new image applies from the next activation."""
        old_image = self.spec.settings.get("image")
        super().update(spec, destinations)
        if spec.settings.get("image") != old_image and not self.active:
            self._protection = self._new_protection(spec)

    def changed(self, upstream: Element) -> None:
        """The primary input dropped: stand in for it (it is back when its media is). The
        backup (``mode: input``) is used while it is live, else the slate."""
        backup = self._backup
        if upstream is self._primary.upstream:
            if not upstream.live and not self.active and self._primary.on_air:
                self._activate()
            self._set_live(upstream.live or self.active)
        elif backup is not None and upstream is backup.upstream and self.active:
            if upstream.live:
                backup.wanted = True
            elif backup.on_air:
                backup.disconnect()
                self._start_slate()

    def _activate(self) -> None:
        self.active = True
        self._since = time.time()
        self._primary.disconnect()
        if self._backup is not None and self._backup.upstream.live:
            self._backup.wanted = True
        log.info("%s: input lost, failing over", self.id)
        self._ctx.emit(
            "failover.activated",
            self.id,
            {"input": self._primary.upstream.id, "mode": self._mode()},
        )
        self._start_slate()

    def _start_slate(self) -> None:
        ending = self._ending

        async def begin() -> None:
            if ending is not None:
                await ending  # the slate of the last takeover is still being torn down
            if self.active and self._switcher.active is None:
                self._protection.begin()

        self._starting = asyncio.create_task(begin(), name=f"failover-{self.id}")

    def _mode(self) -> str:
        return "input" if self._backup is not None else "image"

    def _taken_over(self, takeover: Takeover) -> None:
        if takeover.previous is not None:
            takeover.previous.kick()
        # Any source on air ends the slate.
        self._ending = asyncio.create_task(self._end_slate(), name=f"failover-end-{self.id}")
        if self.active and takeover.feed is self._primary.feed:
            self.active = False
            if self._backup is not None:
                self._backup.wanted = False
                self._backup.disconnect()
            gap_ms = int((time.time() - self._since) * 1000)
            log.info("%s: input back after %d ms", self.id, gap_ms)
            self._primary.rate.reset()
            self._set_live(True)
            self._ctx.emit(
                "failover.recovered", self.id, {"input": self._primary.upstream.id, "gapMs": gap_ms}
            )

    async def _end_slate(self) -> float:
        starting = self._starting
        if starting is not None:
            await starting
        return await self._protection.end()

    def tick(self, now: float) -> None:
        """Measure the input; report a low bitrate at most once a minute."""
        edge = self._primary
        if not edge.on_air:
            edge.rate.reset()
            return
        edge.rate.sample(edge.bytes, now)
        threshold = self.spec.settings.get("lowBitrateKbps")
        if not isinstance(threshold, int | float) or threshold <= 0:
            return
        kbps = edge.rate.kbps
        settled = edge.rate.span >= _LOW_BITRATE_SETTLE_S
        if settled and kbps < threshold and now - self._low_reported_at >= LOW_BITRATE_EVERY_S:
            self._low_reported_at = now
            self._ctx.emit(
                "input.low_bitrate",
                self.id,
                {
                    "input": edge.upstream.id,
                    "bitrateKbps": round(kbps),
                    "thresholdKbps": threshold,
                },
            )

    def state(self) -> dict[str, object]:
        """Whether it stands in for its input."""
        return {"active": self.active, "mode": self._mode()}

    async def close(self) -> None:
        """Stop the slate, stop reading, close the stream."""
        self.active = False
        for task in (self._starting, self._ending):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
        await self._protection.end()
        self._primary.close()
        if self._backup is not None:
            self._backup.close()
        self._stream.close()


async def _no_timeout() -> None:
    return None


@dataclass(eq=False)
class _Destination:
    id: str
    url: str
    supervisor: Supervisor | None = None
    state: str = "stopped"
    last_error: str | None = None
    bytes_sent: int = 0
    down_since: float | None = None
    """Monotonic time it was LIVE-wanted and not live since (``None``: live or stopped)."""
    reported: bool = False


class OutputElement(Element):
    """``outputstream`` with ``format: source``: one push per destination while LIVE.

    LIVE/OFFLINE starts and stops the pushes (the graph upstream keeps running); a new
    destination list starts and stops only the difference.
    """

    def __init__(
        self,
        spec: ElementSpec,
        ctx: GraphContext,
        upstream: Element,
        destinations: Mapping[str, str],
    ) -> None:
        super().__init__(spec, ctx)
        self._upstream = upstream
        self.outputs_live = False
        self._destinations: dict[str, _Destination] = {}
        self._serial = 0
        self._stopping: set[asyncio.Task[None]] = set()
        self._apply(spec, destinations)

    def check(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """At most 6 destinations, each with a URL."""
        ids = _destination_ids(spec)
        if len(ids) > MAX_DESTINATIONS:
            raise ElementError(f"{spec.id}: more than {MAX_DESTINATIONS} destinations")
        missing = [d for d in ids if d not in destinations]
        if missing:
            raise ElementError(f"{spec.id}: destination {missing[0]!r} has no URL")

    def _apply(self, spec: ElementSpec, urls: Mapping[str, str]) -> None:
        self.check(spec, urls)
        ids = _destination_ids(spec)
        for dest_id in list(self._destinations):
            kept = self._destinations[dest_id]
            if dest_id not in ids or urls[dest_id] != kept.url:
                del self._destinations[dest_id]
                self._stop_push(kept)
        for dest_id in ids:
            if dest_id not in self._destinations:
                dest = self._destinations[dest_id] = _Destination(dest_id, urls[dest_id])
                if self.outputs_live:
                    self._start_push(dest)
        self.spec = spec

    def update(self, spec: ElementSpec, destinations: Mapping[str, str]) -> None:
        """Retarget: stop removed destinations, start added ones, restart changed URLs."""
        self._apply(spec, destinations)

    def set_live(self, live: bool) -> None:
        """LIVE starts a push per destination; OFFLINE stops them."""
        if live == self.outputs_live:
            return
        self.outputs_live = live
        for dest in self._destinations.values():
            if live:
                self._start_push(dest)
            else:
                self._stop_push(dest)

    def _start_push(self, dest: _Destination) -> None:
        stream = self._upstream.stream
        self._serial += 1
        spec = OutputSpec(self._serial, "rtmp", dest.url)
        dest.down_since = time.monotonic()
        dest.reported = False
        dest.supervisor = Supervisor(
            spec,
            self._ctx.push_factory,
            open_reader=lambda: self._ctx.add_reader(stream),
            close_reader=stream.remove_reader,
            retry_min_seconds=self._ctx.retry_min_seconds,
            retry_max_seconds=self._ctx.retry_max_seconds,
            on_change=lambda status: self._changed(dest, status),
        )
        dest.supervisor.start()

    def _stop_push(self, dest: _Destination) -> None:
        supervisor, dest.supervisor = dest.supervisor, None
        dest.down_since = None
        if supervisor is not None:
            task = asyncio.create_task(supervisor.stop(), name=f"stop-{self.id}-{dest.id}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _changed(self, dest: _Destination, status: OutputStatus) -> None:
        if self._destinations.get(dest.id) is not dest or dest.supervisor is None:
            return  # a push being stopped reports its last states
        dest.state = status.state
        dest.last_error = status.last_error
        if status.state == "live":
            dest.down_since = None
            dest.reported = False
        elif dest.down_since is None:
            dest.down_since = time.monotonic()
        if status.state == "failed":
            self._report_failed(dest)

    def tick(self, now: float) -> None:
        """Report destinations that have not gone live for long."""
        for dest in self._destinations.values():
            if dest.down_since is not None and now - dest.down_since >= DESTINATION_FAILED_AFTER_S:
                self._report_failed(dest)

    def _report_failed(self, dest: _Destination) -> None:
        if dest.reported:
            return
        dest.reported = True
        self._ctx.emit(
            "destination.failed",
            self.id,
            {"destinationId": dest.id, "state": dest.state, "lastError": dest.last_error},
        )

    def state(self) -> dict[str, object]:
        """LIVE or not, and each destination's push."""
        rows = []
        for dest in self._destinations.values():
            status = dest.supervisor.status() if dest.supervisor is not None else None
            rows.append(
                {
                    "id": dest.id,
                    "state": status.state if status is not None else "stopped",
                    "lastError": status.last_error if status is not None else dest.last_error,
                    "bytesSent": status.bytes_sent if status is not None else dest.bytes_sent,
                }
            )
            if status is not None:
                dest.bytes_sent = status.bytes_sent
        return {"live": self.outputs_live, "destinations": rows}

    async def close(self, grace: float = 0.0) -> None:
        """Stop every push (``grace``: time to send what they hold)."""
        supervisors = [d.supervisor for d in self._destinations.values() if d.supervisor]
        for dest in self._destinations.values():
            dest.supervisor = None
        await asyncio.gather(*(s.stop(grace) for s in supervisors))
        await asyncio.gather(*self._stopping, return_exceptions=True)


def _destination_ids(spec: ElementSpec) -> list[str]:
    value = spec.settings.get("destinations", [])
    if not isinstance(value, list | tuple):
        raise ElementError(f"{spec.id}: destinations must be a list of ids")
    return [str(v) for v in value]
