"""End to end: processing elements (an output's format/encoding, an input's gain, a video
player) with real ffmpeg publishers and real RTMP destinations, decoded with PyAV."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from simulcast.engine import ElementSpec
from tests.support import eventually, free_port
from tests.support.instances import KEY1, element_state, spec
from tests.support.media import FFMPEG, Processes, probe, recorded
from tests.support.overlay import LiveDecoder, colour_pages, is_colour
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media


def out(element_id: str, dest: str, source: str, **settings: Any) -> ElementSpec:
    """An output reading ``source`` and sending to ``dest``."""
    return ElementSpec(element_id, "outputstream", {"destinations": [dest], **settings}, [source])


async def publish(
    procs: Processes, port: int, source: str, seconds: float, fps: int = 30
) -> asyncio.subprocess.Process:
    """ffmpeg publishing ``source`` (a lavfi video graph at ``fps``) + a tone to
    inputstream-1."""
    return await procs.start(
        FFMPEG, "-hide_banner", "-nostats", "-re",
        "-f", "lavfi", "-i", source,
        "-f", "lavfi", "-i", "sine=frequency=440",
        "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps),
        "-c:a", "aac", "-t", str(seconds),
        "-f", "flv", f"rtmp://127.0.0.1:{port}/inputstream-1/{KEY1}",
    )  # fmt: skip


def frames(path: Path) -> list[Any]:
    """Every decoded video frame of a recording, as RGB arrays."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


async def stop_and_wait(engine: Any, *recordings: Path) -> None:
    """Stop the instance and wait until nginx has written the tail of each recording."""
    assert await engine.stop_instance("inst-1", "test")
    for path in recordings:
        await recorded(path, lambda p: p.stat().st_size, lambda size: size > 0)


async def test_dual_hd_feeds_a_horizontal_and_a_vertical_output(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path]
) -> None:
    # A 2640x1280 Dual HD frame: the horizontal picture red, the vertical one blue.
    engine, _ = await make_engine()
    port, records = nginx_rtmp
    dests = {d: f"rtmp://127.0.0.1:{port}/live/{d}" for d in ("h", "v")}
    source = ElementSpec("inputstream-1", "inputstream", {"format": "dualhd-2640"})
    small = {"videoBitrateKbps": 800, "fps": 10}
    outputs = [
        out("outputstream-1", "h", "inputstream-1", format="horizontal", encoding=small),
        out("outputstream-2", "v", "inputstream-1", format="vertical", encoding=small),
    ]
    await engine.start_instance(spec([source, *outputs], dests))
    assert await engine.set_outputs("inst-1", True)
    graph = "color=c=blue:size=2640x1280:rate=10,drawbox=x=0:y=0:w=1920:h=1080:color=red:t=fill"
    publisher = await publish(procs, engine.ingest.port, graph, seconds=8, fps=10)

    def fps_out(element_id: str) -> float:
        return float(element_state(engine, element_id)["processing"]["fpsOut"])

    await eventually(lambda: fps_out("outputstream-1") > 0 and fps_out("outputstream-2") > 0, 20)
    assert await asyncio.wait_for(publisher.wait(), 40) == 0
    await stop_and_wait(engine, records / "h.flv", records / "v.flv")
    horizontal, vertical = frames(records / "h.flv"), frames(records / "v.flv")
    assert len(horizontal) >= 20 and len(vertical) >= 20
    assert {f.shape for f in horizontal} == {(1080, 1920, 3)}
    assert {f.shape for f in vertical} == {(1280, 720, 3)}
    assert is_colour(horizontal[-1][540, 960], (255, 0, 0))
    assert is_colour(horizontal[-1][1070, 1910], (255, 0, 0))  # nothing of the blue part
    assert is_colour(vertical[-1][640, 360], (0, 0, 255))
    assert is_colour(vertical[-1][1270, 5], (0, 0, 255))
    assert probe(records / "v.flv").monotonic


async def test_dual_hd_format_on_a_smaller_input_warns_and_still_crops(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path]
) -> None:
    engine, _ = await make_engine()
    port, records = nginx_rtmp
    source = ElementSpec("inputstream-1", "inputstream", {"format": "dualhd-2640"})
    encoding = {"videoBitrateKbps": 300}
    vertical = out("outputstream-1", "v", "inputstream-1", format="vertical", encoding=encoding)
    dests = {"v": f"rtmp://127.0.0.1:{port}/live/v"}
    await engine.start_instance(spec([source, vertical], dests))
    assert await engine.set_outputs("inst-1", True)
    publisher = await publish(
        procs, engine.ingest.port, "testsrc2=size=1280x720:rate=10", seconds=5, fps=10
    )
    await eventually(lambda: element_state(engine, "inputstream-1").get("warning"), within=10)
    assert element_state(engine, "inputstream-1")["warning"] == "mismatch"
    assert await asyncio.wait_for(publisher.wait(), 30) == 0
    await stop_and_wait(engine, records / "v.flv")
    assert {f.shape for f in frames(records / "v.flv")} == {(720, 720, 3)}  # what there was


ASTRONAUT = Path(__file__).parent / "data" / "astronaut.png"


def ramp_x(frame: Any) -> float:
    """Where (source pixels) a vertical frame's left edge sits, read from the background's
    horizontal luma ramp in the rows above the moving picture."""
    luma = float(np.mean(frame[8:200, 1:5]))  # a grey ramp: R = G = B = full-range luma
    return luma / 255 * 1280


async def test_auto_reframe_keeps_a_moving_face_in_the_vertical_frame(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path], tmp_path: Path
) -> None:
    # A real face (480x480 photo, face ~92 px) sliding left to right over a 1280x720 grey ramp:
    # the ramp tells, in every decoded frame, where the crop was.
    cv2 = pytest.importorskip("cv2")
    engine, _ = await make_engine()
    port, records = nginx_rtmp
    dests = {"v": f"rtmp://127.0.0.1:{port}/live/v"}
    source = ElementSpec("inputstream-1", "inputstream", {})
    vertical = out(
        "outputstream-1", "v", "inputstream-1", format="vertical", reframe="auto",
        encoding={"videoBitrateKbps": 1500},
    )  # fmt: skip
    await engine.start_instance(spec([source, vertical], dests))
    assert await engine.set_outputs("inst-1", True)
    ramp = tmp_path / "ramp.png"
    cv2.imwrite(str(ramp), np.tile(np.arange(1280) * 255 // 1279, (720, 1)).astype(np.uint8))
    seconds, fps = 16, 15
    publisher = await procs.start(
        FFMPEG, "-hide_banner", "-nostats", "-loglevel", "error", "-re",
        "-loop", "1", "-framerate", str(fps), "-i", str(ramp),
        "-loop", "1", "-framerate", str(fps), "-i", str(ASTRONAUT),
        "-f", "lavfi", "-i", "sine=frequency=440",
        # Still for 2 s on the left, then 70 px/s to the right.
        "-filter_complex",
        "[1:v]scale=480:480[p];[0:v][p]overlay=x='min(800,max(0,(t-2)*70))':y=240:shortest=1,"
        "format=yuv420p[v]",
        "-map", "[v]", "-map", "2:a",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-c:a", "aac",
        "-t", str(seconds), "-f", "flv", f"rtmp://127.0.0.1:{engine.ingest.port}/inputstream-1/{KEY1}",
    )  # fmt: skip

    def detections() -> int:
        return int(element_state(engine, "outputstream-1")["processing"]["faceDetections"])

    await eventually(lambda: detections() > 0, within=20)
    assert await asyncio.wait_for(publisher.wait(), 60) == 0
    state = element_state(engine, "outputstream-1")["processing"]
    assert state["reframeError"] is None and state["faceDetections"] >= 10, state
    await stop_and_wait(engine, records / "v.flv")

    pictures = frames(records / "v.flv")
    assert {f.shape for f in pictures} == {(720, 404, 3)}
    lefts = [ramp_x(f) for f in pictures]
    # It followed the face: from the left part of the picture to the right part.
    assert min(lefts[: fps * 3]) < 300 and max(lefts[-fps * 2 :]) > 650, (lefts[:5], lefts[-5:])
    # It never jumps: a frame's crop is within a few pixels of the previous one's (the ramp
    # reads to about +-10 px through the encoder; the fastest pan is ~30 px a frame at 15 fps).
    steps = [abs(b - a) for a, b in itertools.pairwise(lefts)]
    assert max(steps) < 60, max(steps)
    # The face is in the vertical frame (found by the same detector, on the whole picture)
    # once the tracker has found it (the crop starts centred, the face on the left).
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    sampled = pictures[3 * fps :: 3]
    found = [
        len(cascade.detectMultiScale(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 1.15, 5)) > 0
        for f in sampled
    ]
    assert sum(found) >= 0.95 * len(found), f"{sum(found)}/{len(found)} frames show the face"


def test_the_ramp_check_can_fail() -> None:
    # The crop-position reading tells a left crop from a right one.
    left, right = np.full((720, 404, 3), 20, np.uint8), np.full((720, 404, 3), 200, np.uint8)
    assert ramp_x(left) < 300 < 650 < ramp_x(right)


async def test_encoding_override_sets_size_rate_and_keyframes(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path]
) -> None:
    engine, _ = await make_engine()
    port, records = nginx_rtmp
    dests = {"e": f"rtmp://127.0.0.1:{port}/live/e"}
    # An input with a gain (its own encoder: audio only, video copied) feeding an encoder.
    source = ElementSpec("inputstream-1", "inputstream", {"audioGainPercent": 50})
    encoding = {
        "width": 320,
        "height": 180,
        "fps": 15,
        "videoBitrateKbps": 400,
        "audioBitrateKbps": 64,
    }
    await engine.start_instance(
        spec([source, out("outputstream-1", "e", "inputstream-1", encoding=encoding)], dests)
    )
    assert await engine.set_outputs("inst-1", True)
    publisher = await publish(
        procs, engine.ingest.port, "testsrc2=size=640x360:rate=30", seconds=12
    )
    await eventually(lambda: element_state(engine, "outputstream-1")["live"], within=10)
    # The input shows its codec while it has a publisher (read before the publish ends).
    await eventually(lambda: element_state(engine, "inputstream-1")["codec"] == "avc", within=10)
    assert "processing" in element_state(engine, "inputstream-1")
    assert await asyncio.wait_for(publisher.wait(), 40) == 0
    await stop_and_wait(engine, records / "e.flv")

    with av.open(str(records / "e.flv")) as container:
        video = container.streams.video[0]
        keyframes: list[float] = []
        video_bytes = 0
        sizes: set[tuple[int, int]] = set()
        times: list[float] = []
        for packet in container.demux(video):
            if packet.pts is None or packet.size == 0:
                continue
            video_bytes += packet.size
            time = float(packet.pts * video.time_base)
            times.append(time)
            if packet.is_keyframe:
                keyframes.append(time)
            sizes.update((f.width, f.height) for f in packet.decode())
    assert sizes == {(320, 180)}
    span = max(times) - min(times)
    assert span >= 6
    assert 12 <= len(times) / span <= 17  # fps 15
    kbps = video_bytes * 8 / span / 1000
    assert 200 <= kbps <= 560, kbps  # 400 kb/s, CBR-like
    gaps = [b - a for a, b in itertools.pairwise(keyframes)]
    assert gaps and all(1.8 <= g <= 2.2 for g in gaps), gaps
    audio = await asyncio.to_thread(_audio_bitrate, records / "e.flv")
    assert 40 <= audio <= 90, audio


def _audio_bitrate(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        total, times = 0, []
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                total += packet.size
                times.append(float(packet.pts * stream.time_base))
    return total * 8 / (max(times) - min(times)) / 1000


async def test_video_player_loops_continuously_then_its_file_is_deleted(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    # A 4 s upload played for ~10 s: the loop point is crossed twice (a 10 s file for 30 s
    # costs 4x the time and tests nothing more on a machine shared by seven workers).
    upload = await procs.clip(tmp_path / "upload.mp4", seconds=4)
    engine, _ = await make_engine()
    sink = RtmpSink()
    await sink.start()
    dests = {"d": f"rtmp://127.0.0.1:{sink.port}/app/k"}
    player = ElementSpec("videoplayer-1", "videoplayer", {"file": str(upload), "loop": True})
    await engine.start_instance(spec([player, out("outputstream-1", "d", "videoplayer-1")], dests))
    assert await engine.set_outputs("inst-1", True)
    await eventually(lambda: element_state(engine, "videoplayer-1")["live"], within=10)
    assert element_state(engine, "videoplayer-1")["copy"] is True

    def video_times() -> list[int]:
        return [ts for t, ts, body in sink.messages if t == 9 and body[1:2] == b"\x01"]

    await eventually(lambda: len(video_times()) >= 300, within=30)  # 10 s at 30 fps
    times = video_times()
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0 <= s <= 100 for s in steps), max(steps)  # continuous, monotonic
    assert times[-1] - times[0] >= 9500
    state = element_state(engine, "videoplayer-1")
    assert state["state"] == "playing" and state["lastError"] is None

    upload.unlink()
    await eventually(lambda: element_state(engine, "videoplayer-1")["state"] == "error", 5)
    assert "deleted" in element_state(engine, "videoplayer-1")["lastError"]
    assert engine.instance("inst-1") is not None  # the instance goes on
    await sink.close()


def test_pixel_check_can_fail() -> None:
    # The colour check used above tells red from blue.
    assert not is_colour(np.array([0, 0, 255]), (255, 0, 0))


async def test_html_overlay_draws_the_page_and_follows_a_patch(
    make_engine: Any, procs: Processes, tmp_path: Path
) -> None:
    pages = await colour_pages(procs, tmp_path / "site")
    engine, _ = await make_engine(overlays_allow_private=True)  # the pages are on loopback
    sink = RtmpSink()
    await sink.start()
    dests = {"d": f"rtmp://127.0.0.1:{sink.port}/app/k"}
    red_url = f"{pages}/red.html"

    def overlay(url: str) -> ElementSpec:
        return ElementSpec("htmloverlay-1", "htmloverlay", {"url": url}, ["inputstream-1"])

    def graph(url: str) -> Any:
        source = ElementSpec("inputstream-1", "inputstream", {})
        return spec([source, overlay(url), out("outputstream-1", "d", "htmloverlay-1")], dests)

    await engine.start_instance(graph(red_url))
    assert await engine.set_outputs("inst-1", True)
    publisher = await publish(
        procs, engine.ingest.port, "color=c=gray:size=320x240:rate=30", seconds=60
    )
    decoder = LiveDecoder(sink)

    def shows(rgb: tuple[int, int, int]) -> bool:
        picture = decoder.poll()
        return picture is not None and is_colour(picture[70, 90], rgb)

    await eventually(lambda: shows((255, 0, 0)), within=30)
    picture = decoder.picture
    assert picture.shape == (240, 320, 3)
    assert is_colour(picture[32, 42], (255, 0, 0)) and is_colour(picture[108, 138], (255, 0, 0))
    for y, x in ((20, 90), (70, 30), (120, 90), (70, 150), (200, 250)):  # just outside: video
        assert is_colour(picture[y, x], (128, 128, 128)), (y, x, picture[y, x])
    state = element_state(engine, "htmloverlay-1")
    assert state["pageError"] is None and (state["width"], state["height"]) == (320, 240)

    patched_at = asyncio.get_running_loop().time()
    assert await engine.update_instance(graph(f"{pages}/blue.html"))
    await eventually(lambda: shows((0, 0, 255)), within=5)
    took = asyncio.get_running_loop().time() - patched_at
    assert took < 1.0, f"blue {took:.2f} s after the update"

    # A page that cannot load: the video goes on without the overlay, the error shows.
    assert await engine.update_instance(graph(f"http://127.0.0.1:{free_port()}/gone.html"))
    await eventually(lambda: element_state(engine, "htmloverlay-1")["pageError"], within=15)
    await eventually(lambda: shows((128, 128, 128)), within=5)
    frames_before = len(sink.messages)
    await eventually(lambda: len(sink.messages) > frames_before + 30, within=5)
    publisher.kill()
    await sink.close()


async def test_html_overlay_refuses_a_private_host_and_the_video_flows(
    make_engine: Any, procs: Processes
) -> None:
    engine, _ = await make_engine()  # SIMULCAST_OVERLAYS_ALLOW_PRIVATE unset
    sink = RtmpSink()
    await sink.start()
    dests = {"d": f"rtmp://127.0.0.1:{sink.port}/app/k"}
    source = ElementSpec("inputstream-1", "inputstream", {})
    overlay = ElementSpec(
        "htmloverlay-1", "htmloverlay", {"url": "http://127.0.0.1:9/x"}, ["inputstream-1"]
    )
    await engine.start_instance(
        spec([source, overlay, out("outputstream-1", "d", "htmloverlay-1")], dests)
    )
    assert await engine.set_outputs("inst-1", True)
    publisher = await publish(
        procs, engine.ingest.port, "color=c=gray:size=320x240:rate=30", seconds=30
    )
    await eventually(lambda: element_state(engine, "htmloverlay-1")["pageError"], within=20)
    assert "private" in element_state(engine, "htmloverlay-1")["pageError"]
    decoder = LiveDecoder(sink)

    def gray() -> bool:
        picture = decoder.poll()
        return picture is not None and is_colour(picture[70, 90], (128, 128, 128))

    await eventually(gray, within=15)

    def real_time() -> bool:  # despite the failing page
        return float(element_state(engine, "htmloverlay-1")["processing"]["fpsOut"]) >= 25

    await eventually(real_time, within=20)
    publisher.kill()
    await sink.close()


async def test_encoded_output_is_continuous_across_failover(
    make_engine: Any, procs: Processes
) -> None:
    # input -> failover -> encoded output: the publisher drops (slate), comes back; what the
    # destination gets is one stream whose timestamps never go back nor jump.
    engine, _ = await make_engine()
    sink = RtmpSink()
    await sink.start()
    dests = {"d": f"rtmp://127.0.0.1:{sink.port}/app/k"}
    source = ElementSpec("inputstream-1", "inputstream", {})
    failover = ElementSpec("failover-1", "failover", {}, ["inputstream-1"])
    encoded = out(
        "outputstream-1", "d", "failover-1", encoding={"width": 256, "videoBitrateKbps": 300}
    )
    await engine.start_instance(spec([source, failover, encoded], dests))
    assert await engine.set_outputs("inst-1", True)
    pattern = "testsrc2=size=320x240:rate=30"
    first = await publish(procs, engine.ingest.port, pattern, seconds=30)

    def video() -> list[int]:
        return [ts for t, ts, body in sink.messages if t == 9 and body[1:2] == b"\x01"]

    await eventually(lambda: len(video()) > 60, within=20)
    first.kill()
    await eventually(lambda: element_state(engine, "failover-1")["active"], within=5)
    lost = len(video())
    await eventually(lambda: len(video()) > lost + 60, within=10)  # the slate, encoded
    await publish(procs, engine.ingest.port, pattern, seconds=30)
    await eventually(lambda: not element_state(engine, "failover-1")["active"], within=10)
    back = len(video())
    await eventually(lambda: len(video()) > back + 60, within=10)
    stamps = video()
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(steps) >= 0 and max(steps) <= 500, (min(steps), max(steps))
    assert sink.publishes == 1  # one connection throughout
    state = element_state(engine, "outputstream-1")["processing"]
    assert state["restarts"] == 0 and state["fpsOut"] > 0
    await sink.close()
