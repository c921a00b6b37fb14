"""Running instances (V1.md): one element graph each, built from an :class:`InstanceSpec`.

:class:`Instances` is the engine's half of :class:`~simulcast.engine.InstanceEngine` (the
:class:`~simulcast.media.local_engine.LocalEngine` delegates to it) and the router of publishes
to ``rtmp://HOST/{inputElementId}/{key}``: keys are matched here, against running instances,
with no round trip to the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence

from simulcast.engine import (
    SHIFT_QUERY,
    ElementSpec,
    ElementStatus,
    InstanceInfo,
    InstanceSpec,
    PublishRefused,
    PublishRequest,
)
from simulcast.media.elements import (
    Element,
    ElementError,
    FailoverElement,
    GraphContext,
    InputElement,
    OutputElement,
    SplitterElement,
    SwitchElement,
)
from simulcast.media.overlay import HtmlOverlayElement
from simulcast.media.processing import (
    DUAL_HD,
    ProcessingElement,
    VideoPlayerElement,
    needs_processing,
)
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import Feed

log = logging.getLogger("simulcast.instances")

INPUT_APP = re.compile(r"inputstream-\d+")
"""The RTMP application of an instance input is its element id."""

_TICK_S = 1.0
_STOP_GRACE_S = 0.5
_FORMATS = (None, "source", "horizontal", "vertical")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Instance:
    """One running element graph."""

    def __init__(self, spec: InstanceSpec, ctx: GraphContext) -> None:
        self.spec = spec
        self.started_at_ms = _now_ms()
        self.elements: dict[str, Element] = {}
        self.inputs: dict[str, InputElement] = {}
        self.outputs: dict[str, OutputElement] = {}
        self.processing: dict[str, ProcessingElement] = {}
        """Encoders behind elements that ask for one (an output's format/encoding, a gain)."""
        self._ticker: asyncio.Task[None] | None = None
        # A graph that cannot be built is simply dropped: its readers are on its own streams.
        for element_spec in _ordered(spec.elements):
            self._add(element_spec, ctx)

    def _add(self, spec: ElementSpec, ctx: GraphContext) -> None:
        refuse_processing(spec)
        upstream = [self.elements[i] for i in spec.inputs]
        element: Element
        if spec.type == "inputstream":
            key = self.spec.input_keys.get(spec.id)
            if not key:
                raise ElementError(f"{spec.id}: no input key")
            element = self.inputs[spec.id] = InputElement(spec, ctx, key)
            if needs_processing(spec, self.source_format(spec.id)):
                # Readers of the input read its processed stream; publishers feed the input.
                processed = ProcessingElement(spec, ctx, element, self.source_format(spec.id))
                element.downstream.append(processed)
                self.processing[spec.id] = processed
                element = processed
        elif spec.type == "videoplayer":
            element = VideoPlayerElement(spec, ctx)
        elif spec.type == "htmloverlay":
            if ctx.overlay_browser is None:
                raise ElementError(f"{spec.id}: this node cannot render overlays")
            element = HtmlOverlayElement(spec, ctx, _need(spec, upstream)[0], ctx.overlay_browser)
        elif spec.type == "switch":
            element = SwitchElement(spec, ctx, _need(spec, upstream, at_least=1))
        elif spec.type == "splitter":
            element = SplitterElement(spec, ctx, _need(spec, upstream)[0])
        elif spec.type == "failover":
            backup_id = spec.settings.get("backupInput")
            mode = spec.settings.get("mode", "image")
            backup = self.elements.get(str(backup_id)) if mode == "input" else None
            if mode == "input" and backup is None:
                raise ElementError(f"{spec.id}: backupInput {backup_id!r} is not an element")
            element = FailoverElement(spec, ctx, _need(spec, upstream)[0], backup)
            if backup is not None:
                backup.downstream.append(element)
        elif spec.type == "outputstream":
            source = _need(spec, upstream)[0]
            if needs_processing(spec, self.source_format(spec.inputs[0])):
                processed = ProcessingElement(spec, ctx, source, self.source_format(spec.inputs[0]))
                source.downstream.append(processed)
                self.processing[spec.id] = processed
                source, upstream = processed, [processed]
            element = OutputElement(spec, ctx, source, self.spec.destinations)
            self.outputs[spec.id] = element
        else:
            raise ElementError(f"{spec.id}: unknown element type {spec.type!r}")
        for source in upstream:
            source.downstream.append(element)
        self.elements[spec.id] = element

    def start(self) -> None:
        """Start pulls, apply the initial LIVE/OFFLINE, start the once-a-second ticker."""
        for source in self.inputs.values():
            source.start_pull()
        for output_id, output in self.outputs.items():
            output.set_live(self.spec.outputs_live.get(output_id, False))
        self._ticker = asyncio.create_task(self._tick(), name=f"instance-{self.spec.instance_id}")

    async def update(self, spec: InstanceSpec) -> None:
        """Apply new settings to the running graph (its shape cannot change)."""
        current = {e.id: (e.type, tuple(e.inputs)) for e in self.spec.elements}
        wanted = {e.id: (e.type, tuple(e.inputs)) for e in spec.elements}
        if current != wanted:
            raise ElementError("an update cannot add, remove or rewire elements")
        # Checked whole before anything changes: an update applies entirely or not at all.
        for element_spec in spec.elements:
            refuse_processing(element_spec)
            source_format = self.source_format(element_spec.id)
            if needs_processing(element_spec, source_format) != (
                element_spec.id in self.processing
            ):
                raise ElementError(
                    f"{element_spec.id}: turning processing on or off needs a restart"
                )
            if element_spec.id in self.processing:
                self.processing[element_spec.id].check(element_spec, spec.destinations)
            self.elements[element_spec.id].check(element_spec, spec.destinations)
        self.spec = spec
        for element_spec in spec.elements:
            processed = self.processing.get(element_spec.id)
            if processed is not None:
                processed.update(element_spec, spec.destinations)
            element = self.inputs.get(element_spec.id) or self.elements[element_spec.id]
            if not isinstance(element, InputElement):
                if element is not processed:
                    element.update(element_spec, spec.destinations)
                continue
            old_pull = element.pull_url
            element.update(element_spec, spec.destinations)
            if element.pull_url != old_pull:
                await element.stop_pull()
                element.start_pull()

    def set_outputs(self, live: bool, element_id: str | None) -> bool:
        """LIVE/OFFLINE for every output or one; ``False`` for an unknown output id."""
        if element_id is not None and element_id not in self.outputs:
            return False
        for output_id, output in self.outputs.items():
            if element_id is None or output_id == element_id:
                output.set_live(live)
        return True

    def info(self) -> InstanceInfo:
        """A snapshot for the control plane."""
        spec = self.spec
        return InstanceInfo(
            instance_id=spec.instance_id,
            account_id=spec.account_id,
            started_at_ms=self.started_at_ms,
            elements=[ElementStatus(e.id, e.type, self._state(e)) for e in self.elements.values()],
            inputs_live=any(o.live for o in self._output_sources()),
            outputs_live=any(o.outputs_live for o in self.outputs.values()),
        )

    def _state(self, element: Element) -> dict[str, object]:
        """An element's state; one with an encoder behind it shows its figures too."""
        processed = self.processing.get(element.id)
        if processed is None:
            return element.state()
        owner = self.inputs.get(element.id) or self.outputs.get(element.id) or element
        return owner.state() | {"processing": processed.figures()}

    def source_format(self, element_id: str) -> str:
        """The picture layout reaching ``element_id``: its (first) source input's ``format``."""
        spec = next(e for e in self.spec.elements if e.id == element_id)
        while spec.type != "inputstream":
            if not spec.inputs:
                return "horizontal"  # a video player
            spec = next(e for e in self.spec.elements if e.id == spec.inputs[0])
        return str(spec.settings.get("format") or "horizontal")

    def _all(self) -> list[Element]:
        """Every element once, the hidden encoders and inputs behind them included."""
        found = {id(e): e for e in (*self.inputs.values(), *self.elements.values())}
        found.update({id(e): e for e in self.processing.values()})
        found.update({id(e): e for e in self.outputs.values()})
        return list(found.values())

    def _output_sources(self) -> list[Element]:
        return [self.elements[o.spec.inputs[0]] for o in self.outputs.values()]

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            now = time.monotonic()
            for element in self._all():
                element.tick(now)

    async def close(self) -> None:
        """Disconnect publishers, stop the pushes, close the streams."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for source in self.inputs.values():
            await source.stop_pull()
            source.kick_publishers()
        await asyncio.gather(*(o.close(_STOP_GRACE_S) for o in self.outputs.values()))
        for element in reversed(self._all()):
            if not isinstance(element, OutputElement):
                await element.close()


def refuse_processing(spec: ElementSpec) -> None:
    """Raise :class:`ElementError` for what this node cannot run: an overlay ``url`` that is
    not http(s), an unknown output ``format`` or ``reframe``, a ``pullUrl`` that is not
    RTMP(S)."""
    if spec.type == "htmloverlay":
        page = str(spec.settings.get("url") or "")
        if page and not page.lower().startswith(("http://", "https://")):
            raise ElementError(f"{spec.id}: url must be http:// or https://")
    if spec.type == "outputstream":
        if spec.settings.get("format") not in _FORMATS:
            raise ElementError(f"{spec.id}: format must be source, horizontal or vertical")
        if spec.settings.get("reframe") not in (None, "center", "auto"):
            raise ElementError(f"{spec.id}: reframe must be center or auto")
    if spec.type == "inputstream" and spec.settings.get("format", "horizontal") not in (
        "horizontal",
        "vertical",
        *DUAL_HD,
    ):
        raise ElementError(f"{spec.id}: unknown format {spec.settings.get('format')!r}")
    url = spec.settings.get("pullUrl") if spec.type == "inputstream" else None
    if url and not str(url).lower().startswith(("rtmp://", "rtmps://", "srt://")):
        raise ElementError(f"{spec.id}: pullUrl must be rtmp://, rtmps:// or srt://")


def _need(spec: ElementSpec, upstream: list[Element], at_least: int = 0) -> list[Element]:
    if at_least == 0 and len(upstream) != 1:
        raise ElementError(f"{spec.id}: needs exactly one input")
    if len(upstream) < at_least:
        raise ElementError(f"{spec.id}: needs at least {at_least} input")
    return upstream


def _ordered(elements: Sequence[ElementSpec]) -> list[ElementSpec]:
    """Elements with everything they read (inputs, a failover's backup) before them."""
    specs = {e.id: e for e in elements}
    order: list[ElementSpec] = []
    state: dict[str, int] = {}  # 1: visiting, 2: done

    def visit(element_id: str) -> None:
        if state.get(element_id) == 2:
            return
        if state.get(element_id) == 1:
            raise ElementError(f"{element_id}: its inputs form a cycle")
        spec = specs.get(element_id)
        if spec is None:
            raise ElementError(f"input {element_id!r} is not an element")
        state[element_id] = 1
        deps = list(spec.inputs)
        backup = spec.settings.get("backupInput") if spec.type == "failover" else None
        if isinstance(backup, str) and spec.settings.get("mode") == "input":
            deps.append(backup)
        for dep in deps:
            visit(dep)
        state[element_id] = 2
        order.append(spec)

    for element_id in specs:
        visit(element_id)
    return order


class Instances:
    """The running instances of this node and the publish routes to their inputs."""

    def __init__(self, context: Callable[[str], GraphContext]) -> None:
        self._context = context
        self._running: dict[str, Instance] = {}
        self._routes: dict[tuple[str, str], InputElement] = {}
        self._by_stream: dict[LiveStream, InputElement] = {}

    # -- InstanceEngine ------------------------------------------------------------------------

    def instances(self) -> Mapping[str, InstanceInfo]:
        """Running instances, by id."""
        return {i: inst.info() for i, inst in self._running.items()}

    def instance(self, instance_id: str) -> InstanceInfo | None:
        """One running instance."""
        inst = self._running.get(instance_id)
        return inst.info() if inst is not None else None

    async def start_instance(self, spec: InstanceSpec) -> None:
        """Build and start the graph; raise :class:`ElementError` (a ``ValueError``) if the
        spec cannot run here, ``ValueError`` if it already runs or a key is taken."""
        if spec.instance_id in self._running:
            raise ValueError(f"instance {spec.instance_id} is already running")
        for element_id, key in spec.input_keys.items():
            if (element_id, key) in self._routes:
                raise ValueError(f"{element_id}: key already used by a running instance")
        inst = Instance(spec, self._context(spec.instance_id))
        self._running[spec.instance_id] = inst
        for element in inst.inputs.values():
            self._routes[(element.id, element.key)] = element
            self._by_stream[element.stream] = element
        inst.start()
        log.info("instance %s running (%d elements)", spec.instance_id, len(inst.elements))

    async def update_instance(self, spec: InstanceSpec) -> bool:
        """Apply new settings (switch input, destinations, failover image, pull URL).

        The graph's shape, ``input_keys`` and ``outputs_live`` are not changed by an update
        (LIVE/OFFLINE is :meth:`set_outputs`).
        """
        inst = self._running.get(spec.instance_id)
        if inst is None:
            return False
        await inst.update(spec)
        return True

    async def set_outputs(self, instance_id: str, live: bool, element_id: str | None) -> bool:
        """Outputs LIVE or OFFLINE (every one, or ``element_id``)."""
        inst = self._running.get(instance_id)
        return inst is not None and inst.set_outputs(live, element_id)

    async def stop_instance(self, instance_id: str, reason: str) -> bool:
        """Tear the graph down."""
        inst = self._running.pop(instance_id, None)
        if inst is None:
            return False
        for element in inst.inputs.values():
            self._routes.pop((element.id, element.key), None)
            self._by_stream.pop(element.stream, None)
        await inst.close()
        log.info("instance %s stopped: %s", instance_id, reason)
        return True

    async def close(self) -> None:
        """Stop every instance (server shutdown)."""
        running = list(self._running)
        await asyncio.gather(*(self.stop_instance(i, "server_shutdown") for i in running))

    # -- publish routing -----------------------------------------------------------------------

    def input_app(self, key: str) -> str | None:
        """The element id (the RTMP app) of the running input whose key is ``key``: SRT
        publishers name only the key (``publish:{streamkey}``)."""
        return next((app for app, k in self._routes if k == key), None)

    def begin_publish(self, request: PublishRequest, kick: Callable[[], None]) -> Feed:
        """Attach a publisher to the input its app and key name, or refuse."""
        element = self._routes.get((request.app, request.stream_key))
        if element is None:
            raise PublishRefused("No running instance has this input key")
        if element.pull_url:
            raise PublishRefused("This input pulls its source (pullUrl): it takes no publish")
        if element.switcher.active is not None and request.query.get(SHIFT_QUERY) != "1":
            raise PublishRefused("Input already has a publisher (add ?shift=1 to take over)")
        return element.attach(kick)

    def end_publish(self, feed: Feed, reason: str) -> bool:
        """A publisher left; ``False`` if ``feed`` is not an instance input's."""
        element = self._by_stream.get(feed.stream)
        if element is None:
            return False
        element.detach(feed, reason)
        return True
