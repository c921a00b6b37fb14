"""SRT ingest under bad input and faults: garbage, forged cookies, floods, unknown keys,
malformed TS, vanishing publishers (protection) and stream shift between RTMP and SRT."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from simulcast.codecs.srt.handshake import RejectReason
from simulcast.codecs.srt.packet import REJECT_BASE, ControlType, HandshakeType
from simulcast.engine import OutputSpec, PublisherLost, PublisherResumed
from tests.support import eventually
from tests.support.lossy_relay import LossyRelay
from tests.support.media import Processes, end_reasons
from tests.support.srt import publish_srt
from tests.support.srt_caller import SrtCaller, data_packet, handshake

pytestmark = pytest.mark.media


async def no_answer(caller: SrtCaller, within: float = 0.3) -> bool:
    """Whether the server stays silent towards ``caller`` for ``within`` seconds."""
    try:
        await asyncio.wait_for(caller.answers.get(), within)
    except TimeoutError:
        return True
    return False


async def test_stream_ids_and_rejections(make_engine: object) -> None:
    assert callable(make_engine)
    engine, control = await make_engine()
    control.allow("key1", 1)
    port = engine.srt.port
    caller = await SrtCaller.open()
    try:
        for socket_id, (stream_id, reason) in enumerate(
            (
                ("publish:nope", RejectReason.FORBIDDEN),
                ("#!::r=nope,m=publish", RejectReason.FORBIDDEN),
                ("#!::r=key1,m=request", RejectReason.BAD_REQUEST),  # playing is not offered
                ("key1", RejectReason.BAD_REQUEST),
            ),
            start=1,
        ):
            answer = await caller.handshake(port, stream_id, socket_id=socket_id)
            assert answer.type == REJECT_BASE + reason, stream_id
        accepted = await caller.handshake(port, "#!::u=me,r=key1,m=publish", socket_id=99)
        assert accepted.type == HandshakeType.CONCLUSION
        await eventually(lambda: engine.session(1) is not None)
        # A retransmitted conclusion gets the same answer, not a second session.
        again = await caller.handshake(port, "#!::u=me,r=key1,m=publish", socket_id=99)
        assert again.socket_id == accepted.socket_id
        # A second publisher of a live key is refused with its own code.
        other = await SrtCaller.open()
        busy = await other.handshake(port, "publish:key1")
        assert busy.type == REJECT_BASE + RejectReason.CONFLICT
        other.close()
    finally:
        caller.close()


async def test_garbage_forged_cookies_and_floods_are_ignored(make_engine: object) -> None:
    assert callable(make_engine)
    engine, control = await make_engine()
    control.allow("key1", 1)
    port = engine.srt.port
    noise = await SrtCaller.open("127.0.0.3")
    flood = await SrtCaller.open("127.0.0.2")
    good = await SrtCaller.open()
    try:
        for i in range(300):
            noise.send(os.urandom(i % 90), port)
            noise.send(b"\x80\x00\x00\x00" + os.urandom(60), port)  # "handshakes" of noise
        noise.send(handshake(HandshakeType.CONCLUSION, 5, 0x1234567, "publish:key1"), port)
        assert await no_answer(noise)  # a cookie we never issued: no answer, no state
        assert engine.session(1) is None

        for i in range(1000):
            flood.send(handshake(HandshakeType.INDUCTION, i + 1), port)
        accepted = await good.handshake(port, "publish:key1")  # others are unaffected
        assert accepted.type == HandshakeType.CONCLUSION
        await asyncio.sleep(0.2)
        assert flood.answers.qsize() < 100
        assert engine.srt.rate_limited >= 900
    finally:
        for caller in (noise, flood, good):
            caller.close()


async def test_malformed_ts_closes_the_connection_once(
    make_engine: object, caplog: pytest.LogCaptureFixture
) -> None:
    assert callable(make_engine)
    engine, control = await make_engine()
    control.allow("key1", 1, protection_seconds=30.0)
    caller = await SrtCaller.open()
    try:
        accepted = await caller.handshake(engine.srt.port, "publish:key1")
        with caplog.at_level(logging.WARNING, "simulcast.ingest.srt"):
            for seq in range(1000, 1020):
                packet = data_packet(seq, (seq - 1000) * 1000, accepted.socket_id, b"\x00" * 1316)
                caller.send(packet, engine.srt.port)
            await eventually(lambda: any(isinstance(e, PublisherLost) for e in control.events))
            lost = next(e for e in control.events if isinstance(e, PublisherLost))
            assert lost.reason == "protocol_error"  # a loss: protection rides it out
            while True:  # the publisher is told
                answer = await asyncio.wait_for(caller.answers.get(), 5)
                if answer.type == ControlType.SHUTDOWN:
                    break
        assert sum("malformed input" in r.getMessage() for r in caplog.records) == 1
    finally:
        caller.close()


async def test_vanished_srt_publisher_is_protected_then_resumes(
    make_engine: object, procs: Processes, tmp_path: Path
) -> None:
    assert callable(make_engine)
    engine, control = await make_engine(rtmp_publish_stall_seconds=1.0)
    port_a, _ = await procs.receiver(tmp_path / "a.flv")
    control.allow("key1", 1, [OutputSpec(1, "rtmp", f"rtmp://127.0.0.1:{port_a}/app/k")], 30.0)
    relay = LossyRelay(("127.0.0.1", engine.srt.port), 0.0, 0.0)
    await relay.start()
    try:
        first = await publish_srt(procs, relay.port, "publish:key1", 30, tmp_path / "1.log")
        await eventually(lambda: engine.session(1) is not None, within=10)
        await asyncio.sleep(1.0)
        relay.cut()  # the network is gone: no SHUTDOWN, no more packets
        await eventually(
            lambda: any(isinstance(e, PublisherLost) for e in control.events), within=5
        )
        lost = next(e for e in control.events if isinstance(e, PublisherLost))
        assert lost.reason == "publisher_stalled"
        assert engine.session(1) is not None  # protected: outputs on the slate
        first.kill()
        await publish_srt(procs, engine.srt.port, "publish:key1", 3, tmp_path / "2.log")
        await eventually(
            lambda: any(isinstance(e, PublisherResumed) for e in control.events), within=10
        )
        resumed = next(e for e in control.events if isinstance(e, PublisherResumed))
        assert not resumed.shift
    finally:
        relay.close()


async def test_stream_shift_from_rtmp_to_srt(
    make_engine: object, procs: Processes, tmp_path: Path
) -> None:
    assert callable(make_engine)
    engine, control = await make_engine()
    control.allow("key1", 1)
    rtmp = await procs.publish(engine.ingest.port, "key1", seconds=20)
    await eventually(lambda: engine.session(1) is not None, within=10)
    srt = await publish_srt(procs, engine.srt.port, "publish:key1?shift=1", 3, tmp_path / "srt.log")
    await eventually(
        lambda: any(isinstance(e, PublisherResumed) for e in control.events), within=10
    )
    resumed = next(e for e in control.events if isinstance(e, PublisherResumed))
    assert resumed.shift
    await asyncio.wait_for(rtmp.wait(), 10)  # the RTMP publisher was disconnected
    assert await asyncio.wait_for(srt.wait(), 15) == 0
    assert await end_reasons(control) == ["publisher_disconnected"]
