"""The in-process index of HLS channels: built by the engine's ``hls`` outputs, read by HTTP.

The registry owns one :class:`~simulcast.outputs.hls.HlsChannel` per self-hosted destination.
A channel opens when a session's HLS output starts, stops being served when the session ends,
and is deleted (files included) once its DVR window has passed without a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

from simulcast.engine import OutputSpec
from simulcast.media.output import Output
from simulcast.outputs.hls import ChannelConfig, HlsChannel, HlsOutput
from simulcast.periodic import Periodic
from simulcast.settings import Settings

log = logging.getLogger("simulcast.outputs.hls")

_JANITOR_IDLE_S = 60.0  # with no window running out; a session's end wakes the janitor


class HlsRegistry:
    """Channels by destination id, and the ``hls`` output factory that feeds them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._root = settings.hls_path
        self._channels: dict[int, HlsChannel] = {}
        self._expires_at: dict[int, float] = {}
        """Per destination whose session ended: when (loop time) its channel is deleted."""
        self.job = Periodic("hls-dvr-janitor", self._expire_due, _JANITOR_IDLE_S)

    async def start(self) -> None:
        """Empty the HLS directory (a DVR window does not survive a restart); start the
        janitor that deletes a channel once its window has passed without a new session."""
        await asyncio.to_thread(_empty_dir, self._root)
        self.job.start()

    async def close(self) -> None:
        """Delete every channel and its files."""
        await self.job.stop()
        self._expires_at.clear()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    def factory(self, spec: OutputSpec) -> Output:
        """The engine's output factory for ``kind == "hls"``."""
        return HlsOutput(lambda: self._open(spec), self._release)

    def live_channel(self, destination_id: int) -> HlsChannel | None:
        """The channel of a destination whose session is live (what viewers may play)."""
        channel = self._channels.get(destination_id)
        return channel if channel is not None and channel.live else None

    def _config(self, spec: OutputSpec) -> ChannelConfig:
        dvr_max = self._settings.hls_dvr_max_seconds
        window = spec.options.get("dvrWindowSeconds", dvr_max)
        if not isinstance(window, int | float):
            window = dvr_max
        testing = spec.options.get("mode", "testing") == "testing"
        # Low latency only in production: an LL player reloads the playlist once per part, which
        # testing mode's shared playlist budget would exhaust within seconds.
        low_latency = spec.options.get("lowLatency", True) is not False and not testing
        return ChannelConfig(
            # Testing mode's viewers share a playlist budget; longer segments mean fewer reloads.
            target_duration=(
                self._settings.hls_testing_segment_seconds
                if testing
                else self._settings.hls_segment_seconds
            ),
            window_seconds=max(0, min(dvr_max, int(window))),
            live_segments=self._settings.hls_live_segments,
            memory_segments=self._settings.hls_memory_segments,
            min_free_bytes=self._settings.hls_min_free_disk_bytes,
            part_target=self._settings.hls_part_target_seconds if low_latency else None,
        )

    def _open(self, spec: OutputSpec) -> HlsChannel:
        destination_id = spec.destination_id
        self._expires_at.pop(destination_id, None)
        config = self._config(spec)
        channel = self._channels.get(destination_id)
        if channel is None:
            channel = HlsChannel(destination_id, self._root, config)
            self._channels[destination_id] = channel
        else:
            channel.config = config  # the window may have been changed between sessions
        channel.begin_period()
        return channel

    def _release(self, channel: HlsChannel) -> None:
        channel.end_period()
        if self._channels.get(channel.destination_id) is not channel:
            return
        # Within the window a reconnecting publisher continues this playlist; after it, delete.
        now = asyncio.get_running_loop().time()
        self._expires_at[channel.destination_id] = now + channel.config.window_seconds
        self.job.wake()

    async def _expire_due(self) -> float:
        """Delete the channels whose window has passed; seconds until the next one is due."""
        loop = asyncio.get_running_loop()
        for destination_id, at in list(self._expires_at.items()):
            if at > loop.time():
                continue
            del self._expires_at[destination_id]
            channel = self._channels.get(destination_id)
            if channel is None or channel.live:
                continue
            del self._channels[destination_id]
            await channel.close()
            log.info("hls destination %s: DVR window expired, files deleted", destination_id)
        due = [at - loop.time() for at in self._expires_at.values()]
        return min([_JANITOR_IDLE_S, *due])


def _empty_dir(root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(root)
