"""The in-process media engine: RTMP ingest, the hub, and one supervisor per output.

It implements :class:`~simulcast.engine.Engine` for the control plane and the narrow
``PublishHandler`` the ingest server needs. Events for the control plane go through one queue and
one dispatcher task, so they arrive in the order they happened and a slow control plane never
stalls the media path.

A protected session (``PublishGrant.protection_seconds`` > 0) survives losing its publisher
without an unpublish: outputs stay connected and get the slate until the same key publishes
again (or a publisher with ``?shift=1`` takes over a live one), else it ends with
``publisher_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import imageio_ffmpeg

from simulcast import metrics
from simulcast.engine import (
    ControlPlane,
    EngineEvent,
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
from simulcast.ingest.rtmp_server import RtmpIngestServer
from simulcast.media.hub import Hub, StreamBusy
from simulcast.media.protection import Protection
from simulcast.media.slate_encoder import SlateEncoder
from simulcast.media.stream import LiveStream
from simulcast.media.switcher import Feed, Switcher, Takeover
from simulcast.outputs.base import Output, OutputFactory, OutputFailed, Supervisor
from simulcast.outputs.rtmp_push import RtmpPush
from simulcast.settings import Settings

log = logging.getLogger("simulcast.engine")

# How long outputs may keep sending what they hold after the publisher ended (so destinations
# get the tail of the stream), and after an explicit stop (bounded: "within a second").
_END_GRACE_S = 2.0
_STOP_GRACE_S = 0.5
_EVENT_FLUSH_S = 3.0
SHIFT_QUERY = "shift"
"""``rtmp://HOST/live/KEY?shift=1`` takes a live stream over from its current publisher."""


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


class _Unsupported:
    """Stands in for an output kind no factory is registered for, so it shows as ``failed``."""

    def __init__(self, spec: OutputSpec) -> None:
        self._kind = spec.kind

    async def run(self, reader: object, link: object) -> None:
        raise OutputFailed(f"no output registered for kind {self._kind!r}")


class LocalEngine:
    """Media engine running in this process."""

    def __init__(self, settings: Settings, control: ControlPlane) -> None:
        self._settings = settings
        self._control = control
        self.hub = Hub(
            gop_max_bytes=settings.output_queue_bytes,
            gop_max_seconds=settings.output_queue_seconds,
        )
        self.output_factories: dict[str, OutputFactory] = {"rtmp": self._rtmp_push}
        """Output builders by kind; other kinds (``hls``, ``archive``) are registered here."""
        self.ingest = RtmpIngestServer(settings, self)
        self.slates = SlateEncoder(imageio_ffmpeg.get_ffmpeg_exe(), settings.slate_image)
        """Slates by stream parameters, encoded in the background and kept for reuse."""
        self._sessions: dict[int, _Session] = {}
        self._events: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the event dispatcher and the RTMP(S) listeners."""
        self._dispatcher = asyncio.create_task(self._dispatch(), name="engine-events")
        await self.ingest.start()

    async def close(self) -> None:
        """Stop listening, end every session (``server_shutdown``), deliver pending events."""
        await self.ingest.stop_listening()
        await asyncio.gather(
            *(self._end(s, "server_shutdown", _STOP_GRACE_S) for s in list(self._sessions.values()))
        )
        await self.ingest.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.slates.close()
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

    # -- PublishHandler (called by the ingest server) ------------------------------------------

    async def begin_publish(self, request: PublishRequest, kick: Callable[[], None]) -> Feed:
        """Authorize a publish and open its session; raise :class:`PublishRefused` if not.

        On a key that is live here, the publisher joins that session instead: always while it
        is protecting (the publisher is back), else only with ``?shift=1`` (stream shift). It
        goes on air at its first keyframe; the control plane is not asked again.
        """
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

    async def end_publish(self, feed: Feed, reason: str, *, explicit: bool) -> None:
        """A publisher is gone: ``explicit`` when it unpublished, else it was lost.

        A session that loses its on-air publisher ends (reason ``reason``), unless it is
        protected and the loss was not explicit: then it keeps its outputs on the slate.
        """
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

    def _rtmp_push(self, spec: OutputSpec) -> Output:
        # The handshake timeout bounds how long a push may take to connect and get published.
        return RtmpPush(
            spec.url,
            chunk_size=self._settings.rtmp_chunk_size,
            connect_timeout=self._settings.rtmp_handshake_timeout,
        )

    def _start_output(self, session: _Session, spec: OutputSpec) -> None:
        factory = self.output_factories.get(spec.kind, _Unsupported)
        stream = session.stream
        grant = session.grant

        def on_change(status: OutputStatus) -> None:
            self._emit(OutputStateChanged(grant.session_id, grant.stream_id, status))

        supervisor = Supervisor(
            spec,
            factory,
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
