"""The relay at its per-stream cap: one ffmpeg publish to ``simulcast serve`` fans out to 100
RTMP destinations (in-test sinks); every one receives a decodable stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from simulcast.codecs import flv
from simulcast.codecs.unit import Kind
from tests.support import ServerProcess, poll_until, server_fixture
from tests.support.media import Processes, probe
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media

CAP = 100  # the default of ``max_destinations_per_stream``
SINKS = 4  # destinations spread over a few listeners, as over a few platforms
DECODED = 5  # destinations whose whole recording is decoded (the rest are checked by tags)


# Free platforms and no API rate limit: this test is about fan-out, not the wallet or the
# per-key budget (it polls the stream while a hundred pushes start).
server = server_fixture(
    cost_per_platform="0", bandwidth_overage_sats_per_gb="0", rate_limit_per_minute="100000"
)


def _has_start(messages: list[tuple[int, int, bytes]]) -> bool:
    """Both sequence headers, then a video keyframe: what a decoder needs to start."""
    avc = aac = key = False
    for type_id, _, payload in messages:
        if type_id == Kind.AUDIO and flv.parse_audio(payload).is_sequence_header:
            aac = True
        elif type_id == Kind.VIDEO:
            tag = flv.parse_video(payload)
            if tag.is_sequence_header:
                avc = True
            elif avc and tag.is_keyframe:
                key = True
    return avc and aac and key


def _write_flv(path: Path, messages: list[tuple[int, int, bytes]]) -> None:
    base = messages[0][1]
    body = b"".join(flv.write_tag(t, ts - base, p) for t, ts, p in messages if t != Kind.DATA)
    path.write_bytes(flv.write_header() + body)


async def test_one_publish_reaches_100_destinations(
    server: ServerProcess, procs: Processes, tmp_path: Path
) -> None:
    sinks = [RtmpSink() for _ in range(SINKS)]
    for sink in sinks:
        await sink.start()
    sk = await asyncio.to_thread(server.create_account)
    api = httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {sk}"})
    names = [f"d{i}" for i in range(CAP)]

    def dest(i: int) -> dict[str, object]:
        url = f"rtmp://127.0.0.1:{sinks[i % SINKS].port}/app/{names[i]}"
        return {"type": "rtmp", "config": {"url": url}}

    try:
        # One past the cap is refused, naming the field; the cap itself is accepted.
        over = await api.post("/api/streams", json={"destinations": [dest(0)] * (CAP + 1)})
        assert over.status_code == 400, over.text
        assert "destinations" in over.json()["error"]
        created = await api.post(
            "/api/streams", json={"label": "cap", "destinations": [dest(i) for i in range(CAP)]}
        )
        assert created.status_code == 200, created.text
        stream = created.json()
        assert stream["destinationsCount"] == CAP
        extra = await api.post(f"/api/streams/{stream['id']}/destinations", json=dest(0))
        assert extra.status_code == 400 and "destinations" in extra.json()["error"]

        publisher = await procs.publish(server.rtmp_port, stream["streamKey"], seconds=12)
        # The API shows a destination's counters only while the session is live, so they are
        # sampled during the publish (a slow machine may end it soon after the last push starts).
        counting: set[str] = set()

        async def sample_counters() -> None:
            while True:
                body = (await api.get(f"/api/streams/{stream['id']}")).json()
                counting.update(d["id"] for d in body["destinations"] if d["bytesSent"] > 0)
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample_counters())

        def received() -> dict[str, list[tuple[int, int, bytes]]]:
            return {name: got for sink in sinks for name, got in sink.by_name.items()}

        started: set[str] = set()

        async def everyone_started() -> bool:
            started.update(
                n for n, got in received().items() if n not in started and _has_start(got)
            )
            return started == set(names)

        await poll_until(everyone_started, 30, "every destination got headers and a keyframe")
        ids = {d["id"] for d in stream["destinations"]}

        async def every_counter_moved() -> bool:
            return counting == ids

        try:
            await poll_until(every_counter_moved, 15, "the API counts bytes for every destination")
        finally:
            sampler.cancel()
        await asyncio.wait_for(publisher.wait(), 30)
        # Decode a sample fully: spread over the sinks and the order the pushes started in.
        for name in names[:: CAP // DECODED][:DECODED]:
            path = tmp_path / f"{name}.flv"
            _write_flv(path, received()[name])
            media = probe(path)
            assert media.first_video_keyframe, name
            assert media.monotonic, name
            assert media.video_frames >= 60, (name, media)  # at least 2 of the 8 s
            assert media.audio_packets > 50, (name, media)
    finally:
        await api.aclose()
        for sink in sinks:
            await sink.close()
