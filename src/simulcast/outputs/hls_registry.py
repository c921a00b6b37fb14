"""The in-process index of HLS channels: built by the engine's ``hls`` outputs, read by HTTP.

The registry owns one :class:`~simulcast.outputs.hls.HlsChannel` per self-hosted destination.
A channel opens when a session's HLS output starts, stops being served when the session ends,
and is deleted (files included) once its DVR window has passed without a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from simulcast.engine import Engine, OutputSpec, OutputStatus, SessionInfo
from simulcast.outputs.base import Output
from simulcast.outputs.hls import ChannelConfig, HlsChannel, HlsOutput
from simulcast.settings import Settings

log = logging.getLogger("simulcast.outputs.hls")

DVR_MAX_SECONDS = 3600
DVR_DEFAULT_SECONDS = 1800


class HlsRegistry:
    """Channels by destination id, and the ``hls`` output factory that feeds them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._root = settings.hls_path
        self._channels: dict[int, HlsChannel] = {}
        self._expiry: dict[int, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Empty the HLS directory: a DVR window does not survive a restart."""
        await asyncio.to_thread(_empty_dir, self._root)

    async def close(self) -> None:
        """Delete every channel and its files."""
        for task in self._expiry.values():
            task.cancel()
        self._expiry.clear()
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

    def overlay(self, status: OutputStatus) -> OutputStatus:
        """``status`` with the playback fields (ready, DVR window) of its channel filled in."""
        channel = self._channels.get(status.destination_id)
        if status.kind != "hls" or channel is None or not channel.live:
            return status
        return dataclasses.replace(
            status,
            ready=channel.ready,
            window_seconds=channel.window_seconds,
            available_from_ms=channel.available_from_ms,
        )

    def _config(self, spec: OutputSpec) -> ChannelConfig:
        window = spec.options.get("dvrWindowSeconds", DVR_DEFAULT_SECONDS)
        if not isinstance(window, int | float):
            window = DVR_DEFAULT_SECONDS
        return ChannelConfig(
            target_duration=self._settings.hls_segment_seconds,
            window_seconds=max(0, min(DVR_MAX_SECONDS, int(window))),
            live_segments=self._settings.hls_live_segments,
            memory_segments=self._settings.hls_memory_segments,
            min_free_bytes=self._settings.hls_min_free_disk_bytes,
        )

    def _open(self, spec: OutputSpec) -> HlsChannel:
        destination_id = spec.destination_id
        expiry = self._expiry.pop(destination_id, None)
        if expiry is not None:
            expiry.cancel()
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
        delay = float(channel.config.window_seconds)
        self._expiry[channel.destination_id] = asyncio.create_task(
            self._expire(channel, delay), name=f"hls-expire-{channel.destination_id}"
        )

    async def _expire(self, channel: HlsChannel, delay: float) -> None:
        await asyncio.sleep(delay)
        if channel.live or self._channels.get(channel.destination_id) is not channel:
            return
        del self._channels[channel.destination_id]
        self._expiry.pop(channel.destination_id, None)
        await channel.close()
        log.info("hls destination %s: DVR window expired, files deleted", channel.destination_id)


class PlaybackEngine:
    """An :class:`~simulcast.engine.Engine` whose HLS output statuses carry playback fields.

    The output supervisor knows connection state and bytes; whether a playlist is ready and how
    much DVR it holds is known here, so the composition root wraps the engine with this.
    """

    def __init__(self, inner: Engine, registry: HlsRegistry) -> None:
        self._inner = inner
        self._registry = registry

    def sessions(self) -> Mapping[int, SessionInfo]:
        """Live sessions on this node, by stream id."""
        return {sid: self._overlay(info) for sid, info in self._inner.sessions().items()}

    def session(self, stream_id: int) -> SessionInfo | None:
        """The live session of a stream, or ``None``."""
        info = self._inner.session(stream_id)
        return self._overlay(info) if info is not None else None

    async def stop(self, stream_id: int, reason: str) -> bool:
        """End a stream's live session."""
        return await self._inner.stop(stream_id, reason)

    async def add_output(self, stream_id: int, spec: OutputSpec) -> bool:
        """Start an output on a live session."""
        return await self._inner.add_output(stream_id, spec)

    async def remove_output(self, stream_id: int, destination_id: int) -> bool:
        """Stop and drop an output of a live session."""
        return await self._inner.remove_output(stream_id, destination_id)

    def _overlay(self, info: SessionInfo) -> SessionInfo:
        outputs = {d: self._registry.overlay(s) for d, s in info.outputs.items()}
        return dataclasses.replace(info, outputs=outputs)


def _empty_dir(root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(root)
