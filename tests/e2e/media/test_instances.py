"""End to end: instances (V1.md element graphs) on the engine, with real ffmpeg publishers and
real RTMP destinations (nginx-rtmp recording, and the in-test sink)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import av
import pytest

from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp.connection import ClientConnection
from simulcast.engine import ElementSpec, InstanceEvent, InstanceSpec
from simulcast.media import elements
from tests.support import eventually, free_port
from tests.support.instances import (
    INPUT1,
    INPUT2,
    KEY1,
    KEY2,
    destinations,
    element_state,
    events,
    output,
    spec,
)
from tests.support.media import Processes, probe, recorded
from tests.support.rtmp_sink import RtmpSink

pytestmark = pytest.mark.media


async def recording_and_sink(
    nginx_rtmp: tuple[int, Path], rtmp_sink: Any, name: str
) -> tuple[dict[str, str], Path, RtmpSink]:
    """Two destinations, nginx recording ``<name>.flv`` and an in-test sink: the destinations
    by id, nginx's records directory and the sink."""
    nginx_port, records = nginx_rtmp
    sink = await rtmp_sink()
    dests = {
        "n": f"rtmp://127.0.0.1:{nginx_port}/live/{name}",
        "s": f"rtmp://127.0.0.1:{sink.port}/a/k",
    }
    return dests, records, sink


async def test_passthrough_offline_then_live(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path], rtmp_sink: Any
) -> None:
    engine, _ = await make_engine()
    dests, records, sink = await recording_and_sink(nginx_rtmp, rtmp_sink, "out1")
    await engine.start_instance(spec([INPUT1, output(list(dests), "inputstream-1")], dests))
    state = element_state(engine, "inputstream-1")
    assert state["streamkey"] == KEY1 and state["live"] is False
    assert state["ingest"]["rtmp"].endswith(f"/inputstream-1/{KEY1}")
    publisher = await procs.publish(engine.ingest.port, KEY1, seconds=8, app="inputstream-1")
    await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=8)

    # OFFLINE: received and visible in the state, nothing sent anywhere.
    await eventually(lambda: element_state(engine, "inputstream-1")["width"] == 320, within=5)
    state = element_state(engine, "inputstream-1")
    assert (state["codec"], state["height"], round(state["fps"])) == ("avc", 240, 30)
    await asyncio.sleep(1.0)
    assert sink.publishes == 0 and not list(records.iterdir())
    assert set(destinations(engine).values()) == {"stopped"}
    info = engine.instance("inst-1")
    assert info is not None and info.inputs_live and not info.outputs_live

    assert await engine.set_outputs("inst-1", True)
    await eventually(lambda: set(destinations(engine).values()) == {"live"}, within=5)
    await eventually(lambda: element_state(engine, "inputstream-1")["bitrateKbps"] > 0, within=5)
    assert await asyncio.wait_for(publisher.wait(), 20) == 0
    await eventually(lambda: not element_state(engine, "inputstream-1")["live"], within=5)
    assert await engine.stop_instance("inst-1", "test")
    assert engine.instance("inst-1") is None
    media = await recorded(records / "out1.flv", probe, lambda m: m.video_frames >= 30)
    assert media.first_video_keyframe and media.monotonic and media.video_codec == "h264"
    assert media.audio_packets > 0
    assert sink.publishes == 1 and any(m[0] == 9 for m in sink.messages)


async def test_publish_routing_refusals_and_stop(
    make_engine: Any, procs: Processes, rtmp_sink: Any
) -> None:
    engine, control = await make_engine()
    sink = await rtmp_sink()
    dests = {"d1": f"rtmp://127.0.0.1:{sink.port}/app/k"}
    await engine.start_instance(spec([INPUT1, output(["d1"], "inputstream-1")], dests))
    port = engine.ingest.port
    # A key of no running instance, and the right key on another input's app: refused.
    unknown = await procs.publish(port, KEY2, seconds=2, app="inputstream-1")
    wrong_app = await procs.publish(port, KEY1, seconds=2, app="inputstream-2")
    assert await asyncio.wait_for(unknown.wait(), 10) != 0
    assert await asyncio.wait_for(wrong_app.wait(), 10) != 0

    first = await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=8)
    second = await procs.publish(port, KEY1, seconds=2, app="inputstream-1")
    assert await asyncio.wait_for(second.wait(), 10) != 0
    assert first.returncode is None

    assert await engine.stop_instance("inst-1", "test")
    assert await asyncio.wait_for(first.wait(), 5) is not None  # disconnected by the stop
    assert engine.instance("inst-1") is None
    assert not await engine.stop_instance("inst-1", "test")
    assert not await engine.set_outputs("inst-1", True)
    after = await procs.publish(port, KEY1, seconds=2, app="inputstream-1")
    assert await asyncio.wait_for(after.wait(), 10) != 0  # a stopped instance's key
    assert sink.publishes == 0
    # A restart: the same id and keys run again at once.
    await engine.start_instance(spec([INPUT1, output(["d1"], "inputstream-1")], dests))
    await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=8)
    assert not events(control, "destination.failed")


async def test_unsupported_elements_are_refused(make_engine: Any) -> None:
    engine, _ = await make_engine()
    overlay = ElementSpec("htmloverlay-1", "htmloverlay", {"url": "ftp://x"}, ["inputstream-1"])
    with pytest.raises(ValueError, match="htmloverlay-1"):
        await engine.start_instance(spec([INPUT1, overlay, output([], "htmloverlay-1")], {}))
    diagonal = ElementSpec(
        "outputstream-1", "outputstream", {"format": "diagonal"}, ["inputstream-1"]
    )
    with pytest.raises(ValueError, match="outputstream-1"):
        await engine.start_instance(spec([INPUT1, diagonal], {}))
    ftp = ElementSpec("inputstream-1", "inputstream", {"pullUrl": "ftp://h:9000/x"})
    with pytest.raises(ValueError, match="inputstream-1"):
        await engine.start_instance(spec([ftp, output([], "inputstream-1")], {}))
    assert engine.instances() == {}
    # An instance id, or an input key, that is already running cannot start again.
    running = spec([INPUT1, output([], "inputstream-1")], {})
    await engine.start_instance(running)
    with pytest.raises(ValueError, match="already running"):
        await engine.start_instance(running)
    with pytest.raises(ValueError, match="key already used"):
        await engine.start_instance(spec([INPUT1], {}, instance_id="inst-2"))
    assert list(engine.instances()) == ["inst-1"]


def decoded_widths(path: Path) -> list[int]:
    """The width of every decoded video frame of a recording, in order."""
    with av.open(str(path)) as container:
        return [frame.width for frame in container.decode(video=0)]


def video_timestamps(sink: RtmpSink) -> list[int]:
    """Timestamps of the video messages a sink received (sequence headers included)."""
    return [ts for type_id, ts, _ in sink.messages if type_id == 9]


async def test_switch_between_two_publishers_is_one_continuous_stream(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path], rtmp_sink: Any
) -> None:
    engine, _ = await make_engine()
    dests, records, sink = await recording_and_sink(nginx_rtmp, rtmp_sink, "sw")
    switch = ElementSpec("switch-1", "switch", {}, ["inputstream-1", "inputstream-2"])
    elements = [INPUT1, INPUT2, switch, output(list(dests), "switch-1")]
    running = spec(elements, dests)
    await engine.start_instance(
        InstanceSpec(**{**_fields(running), "outputs_live": {"outputstream-1": True}})
    )
    port = engine.ingest.port
    await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await procs.publish(port, KEY2, seconds=30, app="inputstream-2", size="640x360")
    await eventually(lambda: set(destinations(engine).values()) == {"live"}, within=8)
    await sink.more_video(60)

    def select(element_id: str) -> InstanceSpec:
        chosen = ElementSpec("switch-1", "switch", {"input": element_id}, switch.inputs)
        return InstanceSpec(
            **{**_fields(running), "elements": [INPUT1, INPUT2, chosen, elements[3]]}
        )

    assert await engine.update_instance(select("inputstream-2"))
    assert element_state(engine, "switch-1") == {"input": "inputstream-2"}
    await sink.more_video(75)
    assert await engine.update_instance(select("inputstream-1"))
    await sink.more_video(75)
    assert await engine.stop_instance("inst-1", "test")

    stamps = [ts for ts in video_timestamps(sink)]
    assert stamps == sorted(stamps) and sink.publishes == 1  # one connection, never restarted
    widths = await recorded(records / "sw.flv", decoded_widths, lambda w: len(w) >= 30 * 6)
    media = probe(records / "sw.flv")
    assert media.monotonic and media.first_video_keyframe
    # A, then B (from its keyframe), then A again: every frame decoded, no gap of more than
    # a GOP (1 s at 30 fps) around either cut.
    runs = [w for i, w in enumerate(widths) if i == 0 or widths[i - 1] != w]
    assert runs == [320, 640, 320], runs


def _fields(instance: InstanceSpec) -> dict[str, Any]:
    return {f: getattr(instance, f) for f in InstanceSpec.__dataclass_fields__}


async def test_failover_plays_the_slate_then_recovers(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path], rtmp_sink: Any
) -> None:
    engine, control = await make_engine()
    dests, records, sink = await recording_and_sink(nginx_rtmp, rtmp_sink, "fo")
    failover = ElementSpec("failover-1", "failover", {"lowBitrateKbps": 100_000}, ["inputstream-1"])
    running = spec([INPUT1, failover, output(list(dests), "failover-1")], dests)
    await engine.start_instance(running)
    assert await engine.set_outputs("inst-1", True, "outputstream-1")
    port = engine.ingest.port
    first = await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: set(destinations(engine).values()) == {"live"}, within=8)
    # Far below the threshold: reported once (at most once a minute), after it settled.
    await eventually(lambda: events(control, "input.low_bitrate"), within=12)
    first.kill()
    await eventually(lambda: element_state(engine, "failover-1")["active"], within=5)
    lost_at = len(sink.messages)
    await eventually(lambda: len(sink.messages) > lost_at + 60, within=8)  # the slate flows
    assert set(destinations(engine).values()) == {"live"}
    await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: not element_state(engine, "failover-1")["active"], within=10)
    await sink.more_video(60)
    assert await engine.stop_instance("inst-1", "test")

    names = [e.event for e in control.events if isinstance(e, InstanceEvent)]
    assert names.count("input.low_bitrate") == 1
    assert [n for n in names if n != "input.low_bitrate"] == [
        "input.disconnected", "failover.activated", "input.resumed", "failover.recovered"
    ]  # fmt: skip
    recovered = events(control, "failover.recovered")[0]
    assert recovered.element_id == "failover-1" and recovered.data["gapMs"] > 0
    stamps = video_timestamps(sink)
    assert stamps == sorted(stamps) and sink.publishes == 1
    # The slate is 320x240 like the source ("encoded to match"): every frame decodes.
    widths = await recorded(records / "fo.flv", decoded_widths, lambda w: len(w) >= 60)
    assert set(widths) == {320}
    media = probe(records / "fo.flv")
    assert media.monotonic and media.first_video_keyframe


async def test_retarget_destinations_and_a_refusing_one(
    make_engine: Any, procs: Processes, monkeypatch: pytest.MonkeyPatch, rtmp_sink: Any
) -> None:
    # How long a destination may stay down before it is reported (30 s in production).
    monkeypatch.setattr(elements, "DESTINATION_FAILED_AFTER_S", 2.0)
    engine, control = await make_engine()
    sinks = [await rtmp_sink(), await rtmp_sink()]
    refused = free_port()  # nothing listens: connections are refused, the push retries
    dests = {
        "d1": f"rtmp://127.0.0.1:{sinks[0].port}/a/k",
        "bad": f"rtmp://127.0.0.1:{refused}/a/k",
        "broken": "rtmp://127.0.0.1:1/no-key",
        "d3": f"rtmp://127.0.0.1:{sinks[1].port}/a/k",
    }
    running = spec([INPUT1, output(["d1", "bad", "broken"], "inputstream-1")], dests)
    await engine.start_instance(running)
    await engine.set_outputs("inst-1", True)
    await procs.publish(engine.ingest.port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: destinations(engine)["d1"] == "live", within=8)
    await eventually(lambda: destinations(engine)["bad"] == "retrying", within=5)
    assert destinations(engine)["broken"] == "failed"
    await eventually(lambda: len(events(control, "destination.failed")) == 2, within=8)
    failed = [e.data["destinationId"] for e in events(control, "destination.failed")]
    assert failed == ["broken", "bad"]  # failed at once, then down for too long

    moved = InstanceSpec(
        **{**_fields(running), "elements": [INPUT1, output(["d1", "d3"], "inputstream-1")]}
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await engine.update_instance(moved)
    await eventually(lambda: sinks[1].publishes == 1 and destinations(engine)["d3"] == "live", 3)
    assert loop.time() - started < 1.0
    assert set(destinations(engine)) == {"d1", "d3"}
    # More than 6 destinations (or one without a URL): refused whole, nothing changes.
    for ids in (["d1", "d3", "bad", "broken", "d1", "d3", "bad"], ["d1", "nope"]):
        refused = [INPUT1, output(ids, "inputstream-1")]
        with pytest.raises(ValueError, match="outputstream-1"):
            await engine.update_instance(InstanceSpec(**{**_fields(running), "elements": refused}))
    assert set(destinations(engine)) == {"d1", "d3"}
    count = len(sinks[0].messages)
    await eventually(lambda: len(sinks[0].messages) > count + 30, within=5)
    assert sinks[0].publishes == 1  # the destination that stayed was never reconnected
    assert await engine.stop_instance("inst-1", "test")


async def test_pull_input_plays_a_remote_stream(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path]
) -> None:
    engine, control = await make_engine()
    nginx_port, records = nginx_rtmp
    pulled = ElementSpec(
        "inputstream-1", "inputstream", {"pullUrl": f"rtmp://127.0.0.1:{nginx_port}/live/src"}
    )
    dests = {"n": f"rtmp://127.0.0.1:{nginx_port}/live/pulled"}
    await engine.start_instance(spec([pulled, output(["n"], "inputstream-1")], dests))
    await engine.set_outputs("inst-1", True)
    # Nothing to play yet: nginx accepts the play and waits; the input is not live.
    await asyncio.sleep(0.5)
    assert not element_state(engine, "inputstream-1")["live"]
    # A push to a pulling input is refused.
    pushed = await procs.publish(engine.ingest.port, KEY1, seconds=2, app="inputstream-1")
    assert await asyncio.wait_for(pushed.wait(), 10) != 0

    source = await procs.publish(nginx_port, "src", seconds=6)
    await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=10)
    await eventually(lambda: destinations(engine)["n"] == "live", within=5)
    await eventually(lambda: element_state(engine, "inputstream-1")["width"] == 320, within=5)
    assert await asyncio.wait_for(source.wait(), 20) == 0
    await eventually(lambda: not element_state(engine, "inputstream-1")["live"], within=10)
    # The source comes back on the same play: the input resumes, the timeline continues.
    again = await procs.publish(nginx_port, "src", seconds=3)
    await eventually(lambda: element_state(engine, "inputstream-1")["live"], within=10)
    assert await asyncio.wait_for(again.wait(), 20) == 0
    await eventually(lambda: len(events(control, "input.disconnected")) == 2, within=10)
    assert [e.event for e in control.events if isinstance(e, InstanceEvent)] == [
        "input.disconnected", "input.resumed", "input.disconnected"
    ]  # fmt: skip
    assert await engine.stop_instance("inst-1", "test")
    media = await recorded(records / "pulled.flv", probe, lambda m: m.video_frames >= 120)
    assert media.first_video_keyframe and media.monotonic


async def test_failover_to_a_backup_input(
    make_engine: Any, procs: Processes, nginx_rtmp: tuple[int, Path]
) -> None:
    engine, control = await make_engine()
    nginx_port, records = nginx_rtmp
    failover = ElementSpec(
        "failover-1",
        "failover",
        {"mode": "input", "backupInput": "inputstream-2"},
        ["inputstream-1"],
    )
    dests = {"n": f"rtmp://127.0.0.1:{nginx_port}/live/bk"}
    await engine.start_instance(
        spec([INPUT1, INPUT2, failover, output(["n"], "failover-1")], dests)
    )
    await engine.set_outputs("inst-1", True)
    port = engine.ingest.port
    main = await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await procs.publish(port, KEY2, seconds=30, app="inputstream-2", size="640x360")
    await eventually(lambda: destinations(engine)["n"] == "live", within=8)
    await eventually(lambda: element_state(engine, "inputstream-2")["live"], within=8)
    await asyncio.sleep(1.5)
    main.kill()
    await eventually(lambda: element_state(engine, "failover-1")["active"], within=5)
    assert element_state(engine, "failover-1")["mode"] == "input"
    await asyncio.sleep(2.5)
    await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: not element_state(engine, "failover-1")["active"], within=10)
    await asyncio.sleep(1.5)
    assert await engine.stop_instance("inst-1", "test")
    assert [e.event for e in control.events if e.element_id == "failover-1"] == [
        "failover.activated", "failover.recovered"
    ]  # fmt: skip
    widths = await recorded(records / "bk.flv", decoded_widths, lambda w: len(w) >= 90)
    media = probe(records / "bk.flv")
    assert media.monotonic and media.first_video_keyframe
    runs = [w for i, w in enumerate(widths) if i == 0 or widths[i - 1] != w]
    assert runs == [320, 640, 320], runs


async def test_splitter_outputs_one_by_one_and_a_stream_shift(
    make_engine: Any, procs: Processes, rtmp_sink: Any
) -> None:
    engine, _ = await make_engine()
    sinks = [await rtmp_sink(), await rtmp_sink()]
    splitter = ElementSpec("splitter-1", "splitter", {}, ["inputstream-1"])
    out2 = ElementSpec("outputstream-2", "outputstream", {"destinations": ["d2"]}, ["splitter-1"])
    dests = {f"d{i + 1}": f"rtmp://127.0.0.1:{s.port}/a/k" for i, s in enumerate(sinks)}
    await engine.start_instance(spec([INPUT1, splitter, output(["d1"], "splitter-1"), out2], dests))
    assert not await engine.set_outputs("inst-1", True, "outputstream-9")
    assert await engine.set_outputs("inst-1", True, "outputstream-2")
    port = engine.ingest.port
    first = await procs.publish(port, KEY1, seconds=30, app="inputstream-1")
    await eventually(lambda: len(sinks[1].messages) > 60, within=10)
    assert sinks[0].publishes == 0  # outputstream-1 is still OFFLINE
    info = engine.instance("inst-1")
    assert info is not None and info.outputs_live
    outputs = {e.id: e.state["live"] for e in info.elements if e.type == "outputstream"}
    assert outputs == {"outputstream-1": False, "outputstream-2": True}

    # Stream shift: a second device takes the input over at its keyframe; the first is let go.
    await procs.publish(port, f"{KEY1}?shift=1", seconds=30, app="inputstream-1", size="640x360")
    assert await asyncio.wait_for(first.wait(), 10) is not None
    count = len(sinks[1].messages)
    await eventually(lambda: len(sinks[1].messages) > count + 60, within=10)
    assert element_state(engine, "inputstream-1")["live"]
    assert await engine.stop_instance("inst-1", "test")
    stamps = video_timestamps(sinks[1])
    assert stamps == sorted(stamps) and sinks[1].publishes == 1


async def publish_answer(port: int, app: str, key: str) -> type[ev.Event]:
    """Connect to ``app`` (as OBS sends it) and publish ``key``: PublishStarted or a refusal."""
    conn = ClientConnection(app, f"rtmp://127.0.0.1:{port}/{app}", key)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn.initiate()
    try:
        while True:
            writer.write(conn.data_to_send())
            data = await asyncio.wait_for(reader.read(65536), 5)
            if not data:
                return ev.ConnectFailed
            for event in conn.receive_data(data):
                if isinstance(event, ev.PublishStarted | ev.PublishFailed | ev.ConnectFailed):
                    return type(event)
    finally:
        writer.close()


async def test_obs_split_server_and_key(make_engine: Any) -> None:
    engine, _ = await make_engine()
    await engine.start_instance(spec([INPUT1, output([], "inputstream-1")], {}))
    port = engine.ingest.port
    # OBS: server rtmp://HOST:1935/inputstream-1/ (trailing slash kept in the app), key apart.
    assert await publish_answer(port, "inputstream-1/", KEY1) is ev.PublishStarted
    await eventually(lambda: not element_state(engine, "inputstream-1")["live"], within=5)
    assert await publish_answer(port, "inputstream-1", KEY2) is ev.PublishFailed
    assert await publish_answer(port, "switch-1", KEY1) is ev.ConnectFailed
