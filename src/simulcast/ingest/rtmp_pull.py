"""RTMP/RTMPS pull: play a remote stream and publish it into an instance input, like a pusher.

The thin asyncio shell around ``ClientConnection(play=True)``. Each connection is one publisher
of the input (a :class:`Feed`): when it drops, the input is down (a failover downstream takes
over) and the pull reconnects with the same backoff as pushes; the input's switcher continues
the timeline when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib

from simulcast.codecs import amf0, flv
from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp import messages
from simulcast.codecs.rtmp.connection import ClientConnection
from simulcast.codecs.rtmp.errors import RemoteProtocolError
from simulcast.codecs.rtmp.url import InvalidRtmpUrl, parse_rtmp_url
from simulcast.codecs.unit import Kind
from simulcast.dialing import dial
from simulcast.ingest.pull import PullTiming, ReconnectingPull
from simulcast.ingest.rtmp_server import media_unit
from simulcast.media.sources import PullTarget
from simulcast.media.switcher import Feed

_READ_SIZE = 64 * 1024
# nginx-rtmp and others tell players they may sample the stream: not media, not relayed.
_SAMPLE_ACCESS = amf0.encode("|RtmpSampleAccess")
UNPUBLISH_NOTIFY = "NetStream.Play.UnpublishNotify"
STREAM_EOF_STATUS = "NetStream.Play.Stop"


class PullRejected(Exception):
    """The source refused ``connect`` or ``play``, or ended it."""


class RtmpPull(ReconnectingPull):
    """Plays ``url`` into ``target`` until stopped, reconnecting when the source drops."""

    label = "pull"
    fatal = (InvalidRtmpUrl,)
    retried = (OSError, TimeoutError, PullRejected, RemoteProtocolError, flv.FlvError)

    def __init__(self, url: str, target: PullTarget, timing: PullTiming) -> None:
        super().__init__(url, target, timing)
        self._writer: asyncio.StreamWriter | None = None
        self._feed: Feed | None = None

    def _masked(self) -> str:
        return masked(self.url)

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, flv.FlvError):
            return f"malformed media: {exc}"
        return super()._describe(exc)

    def _kick(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def _connect(self) -> bool:
        """One connection; ``True`` if it got as far as playing."""
        target = parse_rtmp_url(self.url)
        conn = ClientConnection(target.app, target.tc_url, target.stream_key, play=True)
        reader, writer = await dial(
            target.host, target.port, tls=target.tls, seconds=self._connect_timeout
        )
        self._writer = writer
        self._feed = None
        playing = False
        try:
            conn.initiate()
            writer.write(conn.data_to_send())
            while True:
                # Connecting is bounded; a source that stops sending while on air is treated
                # as gone; a play waiting for its source to start may wait indefinitely.
                timeout = self._stall if self._feed is not None else None
                if not playing:
                    timeout = self._connect_timeout
                async with asyncio.timeout(timeout):
                    data = await reader.read(_READ_SIZE)
                if not data:
                    return playing
                for event in conn.receive_data(data):
                    if isinstance(event, ev.ConnectFailed | ev.PublishFailed):
                        raise PullRejected(f"{event.code}: {event.description}".strip(": "))
                    if isinstance(event, ev.PlayStarted):
                        playing = True
                    elif isinstance(event, ev.MediaMessage) and playing:
                        self._media(event)
                    elif _source_ended(event):
                        self._leave("source_unpublished")
                if self._feed is not None:
                    self._feed.received(len(data))
                    self._feed.flush()
                writer.write(conn.data_to_send())
        finally:
            self._writer = None
            self._leave("pull_disconnected")
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _media(self, event: ev.MediaMessage) -> None:
        unit = media_unit(event)
        if unit is None or (unit.kind == Kind.DATA and unit.payload.startswith(_SAMPLE_ACCESS)):
            return
        if self._feed is None:
            # The source is on air once media flows (servers start a play before that).
            self._feed = self._target.attach(self._kick)
        self._feed.publish(unit)

    def _leave(self, reason: str) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            self._target.detach(feed, reason)


def _source_ended(event: ev.Event) -> bool:
    """The server says the stream's publisher left (the play itself stays open)."""
    if isinstance(event, ev.StatusEvent):
        return event.code in (UNPUBLISH_NOTIFY, STREAM_EOF_STATUS)
    return isinstance(event, ev.UserControl) and event.event_type == messages.STREAM_EOF


def masked(url: str) -> str:
    """``url`` without its stream key, for logs (keys are secrets)."""
    head, _, _ = url.rpartition("/")
    return head + "/***"
