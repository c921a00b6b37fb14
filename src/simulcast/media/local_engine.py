"""The in-process media engine: the hub, its sessions and instances, one supervisor per output.

It implements :class:`~simulcast.engine.Engine` for the control plane and the narrow
:class:`~simulcast.media.sources.PublishHandler` the ingest listeners need. Which listeners,
pulls and output kinds it runs is decided by the node's assembly (``simulcast.node``), which
hands them in as factories: media imports no ingest or output module. Events for the control
plane go through one queue and one dispatcher task, so they arrive in the order they happened
and a slow control plane never stalls the media path.

A protected session (``PublishGrant.protection_seconds`` > 0) survives losing its publisher
without an unpublish: outputs stay connected and get the slate until the same key publishes
again (or a publisher with ``?shift=1`` takes over a live one), else it ends with
``publisher_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import imageio_ffmpeg

from simulcast import metrics
from simulcast.engine import (
    SHIFT_QUERY,
    ControlPlane,
    EngineEvent,
    InstanceEvent,
    InstanceInfo,
    InstanceSpec,
    OutputSpec,
    OutputStateChanged,
    OutputStatus,
    PublisherLost,
    PublisherResumed,
    PublishGrant,
    PublishRefused,
    PublishRequest,
    SessionEnded,
    SessionInfo,
)
from simulcast.media.elements import GraphContext
from simulcast.media.hub import Hub, StreamBusy
from simulcast.media.instances import INPUT_APP, Instances
from simulcast.media.output import Output, OutputFactory, OutputFailed, OutputLink, Supervisor
from simulcast.media.overlay_browser import OverlayBrowser
from simulcast.media.protection import Protection
from simulcast.media.reader import Reader
from simulcast.media.slate_encoder import SlateEncoder
from simulcast.media.sources import APP, ListenerFactory, PullFactory
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import Feed, Switcher, Takeover
from simulcast.settings import Settings

log = logging.getLogger("simulcast.engine")

# How long outputs may keep sending what they hold after the publisher ended (so destinations
# get the tail of the stream), and after an explicit stop (bounded: "within a second").
_END_GRACE_S = 2.0
_STOP_GRACE_S = 0.5
_EVENT_FLUSH_S = 3.0


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class _Session:
    grant: PublishGrant
    stream: LiveStream
    switcher: Switcher
    protection: Protection
    started_at_ms: int
    outputs: dict[int, Supervisor] = field(default_factory=dict)

    def kick_publishers(self) -> None:
        for feed in (self.switcher.active, self.switcher.pending):
            if feed is not None:
                feed.kick()


class _Unsupported(Output):
    """Stands in for an output kind no factory is registered for, so it shows as ``failed``."""

    def __init__(self, spec: OutputSpec) -> None:
        self._kind = spec.kind

    async def run(self, reader: Reader, link: OutputLink) -> None:
        raise OutputFailed(f"no output registered for kind {self._kind!r}")


class LocalEngine:
    """Media engine running in this process: the streams API's sessions (:class:`Engine`) and
    the v1 dialect's instances (:class:`~simulcast.engine.InstanceEngine`, see
    :mod:`simulcast.media.instances`) on one ingest, one slate cache, one event queue."""

    def __init__(
        self,
        settings: Settings,
        control: ControlPlane,
        *,
        rtmp: ListenerFactory,
        srt: ListenerFactory,
        pull: PullFactory,
        outputs: Mapping[str, OutputFactory],
    ) -> None:
        self._settings = settings
        self._control = control
        self.hub = Hub(
            gop_max_bytes=settings.output_queue_bytes,
            gop_max_seconds=settings.output_queue_seconds,
        )
        metrics.watch_buffers(self.hub)
        self.output_factories: dict[str, OutputFactory] = dict(outputs)
        """Output builders by kind (``rtmp``, ``hls``, ``archive``); a missing kind fails."""
        self.ingest = rtmp(self)
        """RTMP(S) publishers; its port is the one instance inputs' publish URLs name."""
        self.srt = srt(self)
        """SRT publishers: same publish path as RTMP, MPEG-TS demuxed into the same units."""
        self._pull = pull
        self.slates = SlateEncoder(imageio_ffmpeg.get_ffmpeg_exe(), settings.slate_image)
        self.overlay_browser = OverlayBrowser()
        """The node's one Chromium for ``htmloverlay`` pages (started on first use)."""
        """Slates by stream parameters, encoded in the background and kept for reuse."""
        self._image_slates: dict[Path, SlateEncoder] = {}
        self._sessions: dict[int, _Session] = {}
        self._instances = Instances(self._graph_context)
        self._events: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ending: dict[str, asyncio.Future[None]] = {}  # stream key -> end of its session

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the event dispatcher and the RTMP(S) and SRT listeners."""
        self._dispatcher = asyncio.create_task(self._dispatch(), name="engine-events")
        await self.ingest.start()
        await self.srt.start()

    async def close(self) -> None:
        """Stop listening, end every session (``server_shutdown``), deliver pending events."""
        await self.ingest.stop_listening()
        await self.srt.stop_listening()
        sessions = list(self._sessions.values())
        await asyncio.gather(
            *(self._end(s, "server_shutdown", _STOP_GRACE_S) for s in sessions),
            self._instances.close(),
        )
        await self.ingest.close()
        await self.srt.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(self.slates.close(), *(s.close() for s in self._image_slates.values()))
        await self.overlay_browser.close()
        if self._dispatcher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), _EVENT_FLUSH_S)
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    # -- Engine --------------------------------------------------------------------------------

    def sessions(self) -> Mapping[int, SessionInfo]:
        """Live sessions on this node, by stream id."""
        return {sid: self._info(s) for sid, s in self._sessions.items()}

    def session(self, stream_id: int) -> SessionInfo | None:
        """The live session of a stream, or ``None``."""
        session = self._sessions.get(stream_id)
        return self._info(session) if session is not None else None

    async def stop(self, stream_id: int, reason: str) -> bool:
        """End a stream's session: disconnect the publisher and stop every output."""
        session = self._sessions.get(stream_id)
        if session is None:
            return False
        await self._end(session, reason, _STOP_GRACE_S)
        return True

    async def add_output(self, stream_id: int, spec: OutputSpec) -> bool:
        """Start (or restart with the new spec) an output on a live session."""
        session = self._sessions.get(stream_id)
        if session is None:
            return False
        old = session.outputs.pop(spec.destination_id, None)
        if old is not None:
            await old.stop()
        self._start_output(session, spec)
        return True

    async def remove_output(self, stream_id: int, destination_id: int) -> bool:
        """Stop and drop an output of a live session."""
        session = self._sessions.get(stream_id)
        supervisor = session.outputs.pop(destination_id, None) if session is not None else None
        if supervisor is None:
            return False
        await supervisor.stop()
        return True

    async def rekey(self, stream_id: int, stream_key: str) -> bool:
        """Publishers rejoin the live session of ``stream_id`` only with the rotated key."""
        return self.hub.rekey(stream_id, stream_key)

    # -- InstanceEngine ------------------------------------------------------------------------

    def instances(self) -> Mapping[str, InstanceInfo]:
        """Running instances on this node, by instance id."""
        return self._instances.instances()

    def instance(self, instance_id: str) -> InstanceInfo | None:
        """One running instance, or ``None``."""
        return self._instances.instance(instance_id)

    async def start_instance(self, spec: InstanceSpec) -> None:
        """Build the instance's graph and route its input keys; raise ``ValueError`` (naming
        the element) for what cannot run here, e.g. a processing element."""
        await self._instances.start_instance(spec)

    async def update_instance(self, spec: InstanceSpec) -> bool:
        """Apply new settings to a running instance; ``False`` if it does not run here."""
        return await self._instances.update_instance(spec)

    async def set_outputs(
        self, instance_id: str, live: bool, element_id: str | None = None
    ) -> bool:
        """Outputs LIVE or OFFLINE; ``False`` if not running (or no such output)."""
        return await self._instances.set_outputs(instance_id, live, element_id)

    async def stop_instance(self, instance_id: str, reason: str) -> bool:
        """Stop an instance's publishers and outputs; ``False`` if absent."""
        return await self._instances.stop_instance(instance_id, reason)

    # -- PublishHandler (called by the ingest listeners) ---------------------------------------

    def accepts_app(self, app: str) -> bool:
        """``live`` (the streams API) or an instance input's element id."""
        return app == APP or INPUT_APP.fullmatch(app) is not None

    async def begin_publish(self, request: PublishRequest, kick: Callable[[], None]) -> Feed:
        """Authorize a publish and open its session; raise :class:`PublishRefused` if not.

        On a key that is live here, the publisher joins that session instead: always while it
        is protecting (the publisher is back), else only with ``?shift=1`` (stream shift). It
        goes on air at its first keyframe; the control plane is not asked again.

        An instance input (app ``inputstream-N``) is matched against running instances here.
        """
        if request.app != APP:
            return self._instances.begin_publish(request, kick)
        app = self._instances.input_app(request.stream_key)
        if app is not None:  # an SRT publisher of an instance input (its key, no app)
            return self._instances.begin_publish(dataclasses.replace(request, app=app), kick)
        ending = self._ending.get(request.stream_key)
        if ending is not None:
            # The key's publisher just left and its session is ending (outputs flushing): a
            # quick re-publish waits for that end, and for the control plane to hear of it,
            # rather than being refused as "already live".
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_END_GRACE_S + _EVENT_FLUSH_S):
                    await asyncio.shield(ending)
                    await self._events.join()
        live = self.hub.stream_for_key(request.stream_key)
        if live is not None:
            session = self._sessions.get(live.stream_id)
            shift = request.query.get(SHIFT_QUERY) == "1"
            if session is not None and (session.protection.active or shift):
                log.info("stream %s: publisher joining (shift=%s)", live.stream_id, shift)
                return session.switcher.attach(kick)
            # Refuse before asking the control plane, so no phantom session gets recorded.
            raise PublishRefused("Stream key is already live", "NetStream.Publish.BadName")
        grant = await self._control.authorize_publish(request)
        try:
            stream = self.hub.open(grant.stream_id, grant.session_id, request.stream_key)
        except StreamBusy:
            # Lost a race with another publisher of the same stream: close the granted session.
            self._emit(SessionEnded(grant.session_id, grant.stream_id, "duplicate", _now_ms(), 0))
            raise PublishRefused("Stream is already live", "NetStream.Publish.BadName") from None
        session = self._open_session(grant, stream)
        for spec in grant.outputs:
            self._start_output(session, spec)
        log.info("session %s live (stream %s)", grant.session_id, grant.stream_id)
        return session.switcher.attach(kick)

    async def srt_passphrase(self, request: PublishRequest) -> str | None:
        """The stream's SRT passphrase, from the control plane (instance inputs have none)."""
        if request.app != APP or self._instances.input_app(request.stream_key) is not None:
            return None
        return await self._control.srt_passphrase(request.stream_key)

    async def end_publish(self, feed: Feed, reason: str, *, explicit: bool) -> None:
        """A publisher is gone: ``explicit`` when it unpublished, else it was lost.

        A session that loses its on-air publisher ends (reason ``reason``), unless it is
        protected and the loss was not explicit: then it keeps its outputs on the slate.
        """
        if self._instances.end_publish(feed, reason):
            return
        session = self._sessions.get(feed.stream.stream_id)
        if session is None or session.stream is not feed.stream:
            return
        if not session.switcher.detach(feed):
            return  # a publisher that was replaced, or never got on air
        if explicit or not session.protection.enabled:
            await self._end(session, reason, _END_GRACE_S)
            return
        session.protection.begin()
        metrics.PROTECTION.labels("disconnect").inc()
        log.info("session %s: publisher lost (%s), protecting", session.grant.session_id, reason)
        self._emit(
            PublisherLost(
                session.grant.session_id,
                session.grant.stream_id,
                reason,
                _now_ms(),
                session.protection.grace_seconds,
            )
        )

    # -- internals -----------------------------------------------------------------------------

    def _open_session(self, grant: PublishGrant, stream: LiveStream) -> _Session:
        def timeout() -> Awaitable[None]:
            metrics.PROTECTION.labels("timeout").inc()
            return self._end(session, "publisher_timeout", _STOP_GRACE_S)

        switcher = Switcher(
            stream,
            on_params=lambda params: session.protection.learned(params),
            on_takeover=lambda takeover: self._taken_over(session, takeover),
        )
        protection = Protection(switcher, self.slates, grant.protection_seconds, timeout)
        session = _Session(grant, stream, switcher, protection, _now_ms())
        self._sessions[grant.stream_id] = session
        metrics.LIVE_SESSIONS.inc()
        return session

    def _taken_over(self, session: _Session, takeover: Takeover) -> None:
        """A publisher went on air in a running session (called synchronously by the switcher)."""
        shift = takeover.previous is not None
        if takeover.previous is not None:
            takeover.previous.kick()
        slate_on = session.protection.active
        self._tasks.add(task := asyncio.create_task(self._resumed(session, shift, slate_on)))
        task.add_done_callback(self._tasks.discard)

    async def _resumed(self, session: _Session, shift: bool, slate_on: bool) -> None:
        gap = await session.protection.end() if slate_on else 0.0
        metrics.PROTECTION.labels("shift" if shift else "resume").inc()
        log.info(
            "session %s: publisher %s", session.grant.session_id, "shifted" if shift else "back"
        )
        grant = session.grant
        self._emit(
            PublisherResumed(grant.session_id, grant.stream_id, _now_ms(), shift, int(gap * 1000))
        )

    def _graph_context(self, instance_id: str) -> GraphContext:
        def emit(event: str, element_id: str, data: Mapping[str, object]) -> None:
            self._emit(InstanceEvent(instance_id, event, element_id, _now_ms(), dict(data)))

        s = self._settings
        return GraphContext(
            instance_id=instance_id,
            queue_bytes=s.output_queue_bytes,
            queue_seconds=s.output_queue_seconds,
            retry_min_seconds=s.push_retry_min_seconds,
            retry_max_seconds=s.push_retry_max_seconds,
            push_factory=self._output,
            slates=self._slates_for,
            emit=emit,
            ingest_urls=self._ingest_urls,
            pull=self._pull,
            ffmpeg=imageio_ffmpeg.get_ffmpeg_exe(),
            overlay_browser=lambda: self.overlay_browser,
            overlays_allow_private=s.overlays_allow_private,
        )

    def _slates_for(self, image: str | None) -> SlateEncoder:
        """The slate cache of a failover image (``None``: the node's slate)."""
        if image is None:
            return self.slates
        path = Path(image)
        encoder = self._image_slates.get(path)
        if encoder is None:
            encoder = self._image_slates[path] = SlateEncoder(imageio_ffmpeg.get_ffmpeg_exe(), path)
        return encoder

    def _ingest_urls(self, element_id: str, key: str) -> dict[str, object]:
        # The host clients reach: the public URL's, else the RTMP listener's own address.
        host = urlsplit(self._settings.public_url).hostname or self._settings.rtmp_host
        if host in ("0.0.0.0", "::"):
            host = "localhost"
        port = self.ingest.port or self._settings.rtmp_port
        srt_port = self.srt.port or self._settings.srt_port
        return {
            "rtmp": f"rtmp://{host}:{port}/{element_id}/{key}",
            "srt": f"srt://{host}:{srt_port}?streamid=publish:{key}",
        }

    def _output(self, spec: OutputSpec) -> Output:
        return self.output_factories.get(spec.kind, _Unsupported)(spec)

    def _start_output(self, session: _Session, spec: OutputSpec) -> None:
        stream = session.stream
        grant = session.grant

        def on_change(status: OutputStatus) -> None:
            self._emit(OutputStateChanged(grant.session_id, grant.stream_id, status))

        supervisor = Supervisor(
            spec,
            self._output,
            open_reader=lambda: stream.add_reader(
                max_bytes=self._settings.output_queue_bytes,
                max_seconds=self._settings.output_queue_seconds,
            ),
            close_reader=stream.remove_reader,
            retry_min_seconds=self._settings.push_retry_min_seconds,
            retry_max_seconds=self._settings.push_retry_max_seconds,
            on_change=on_change,
        )
        session.outputs[spec.destination_id] = supervisor
        supervisor.start()

    async def _end(self, session: _Session, reason: str, grace: float) -> None:
        stream_id = session.grant.stream_id
        if self._sessions.get(stream_id) is not session:
            return  # already ending
        del self._sessions[stream_id]
        key = self.hub.key_of(stream_id) or ""
        ending = self._ending[key] = asyncio.get_running_loop().create_future()
        try:
            metrics.LIVE_SESSIONS.dec()
            session.kick_publishers()
            await session.protection.end()
            # Closing the stream closes the readers: outputs send what they hold, then finish.
            self.hub.close(stream_id)
            await asyncio.gather(*(s.stop(grace) for s in session.outputs.values()))
            log.info("session %s ended: %s", session.grant.session_id, reason)
            self._emit(
                SessionEnded(
                    session.grant.session_id, stream_id, reason, _now_ms(), session.stream.bytes_in
                )
            )
        finally:
            del self._ending[key]
            ending.set_result(None)

    def _info(self, session: _Session) -> SessionInfo:
        grant = session.grant
        return SessionInfo(
            session_id=grant.session_id,
            stream_id=grant.stream_id,
            account_id=grant.account_id,
            started_at_ms=session.started_at_ms,
            bytes_in=session.stream.bytes_in,
            outputs={d: s.status() for d, s in session.outputs.items()},
            protecting=session.protection.active,
            protection_ends_at_ms=session.protection.ends_at_ms,
        )

    def _emit(self, event: EngineEvent) -> None:
        self._events.put_nowait(event)

    async def _dispatch(self) -> None:
        while True:
            event = await self._events.get()
            try:
                await self._control.on_engine_event(event)
            except Exception:
                log.exception("control plane failed to record %s", type(event).__name__)
            finally:
                self._events.task_done()
