"""RTMP connections: client and server paired in memory, odd clients, limits, fuzzing."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulcast.codecs import amf0
from simulcast.codecs.rtmp import events as ev
from simulcast.codecs.rtmp import handshake, status
from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import encode_message
from simulcast.codecs.rtmp.connection import ClientConnection, ServerConnection
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError, RtmpError
from tests.support.rtmp_peer import serve

CAPTURE = Path(__file__).parent / "data" / "rtmp_ffmpeg_publish.bin"


def seeded() -> Any:
    return random.Random(7).randbytes


def pair(chunk_size: int = 4096) -> tuple[ClientConnection, ServerConnection, list[ev.Event]]:
    """Run a client against a server until publishing; return both and the client's events."""
    client = ClientConnection("live", "rtmp://h/live", "key?t=1", chunk_size=chunk_size,
                              random_bytes=seeded())  # fmt: skip
    server = ServerConnection(random_bytes=seeded())
    client.initiate()
    client_events: list[ev.Event] = []
    for _ in range(10):
        serve(server, client.data_to_send())
        client_events += client.receive_data(server.data_to_send())
    return client, server, client_events


# Steps below 2**31 ms, so the last one crosses the 32-bit wrap and must come out unwrapped.
STAMPS = [(18, 0), (9, 0), (8, 0), (9, 33), (8, 23), (9, 0x1000000), (8, 0x70000000),
          (8, 0xE0000000), (8, 2**32 + 7)]  # fmt: skip


def test_client_publishes_to_server_bit_exact() -> None:
    client, server, events = pair(chunk_size=100)
    assert client.publishing and client.msid == 1 and client.handshake_verified
    kinds = [type(e) for e in events]
    assert kinds[0] is ev.HandshakeDone
    assert ev.Connected in kinds and kinds[-1] is ev.PublishStarted
    assert server.publishing == {1: "key?t=1"}
    rng = random.Random(3)
    sent = [(t, ts, rng.randbytes(rng.randrange(0, 5000))) for t, ts in STAMPS]
    wire = b"".join(client.media_bytes(t, ts, p) for t, ts, p in sent)
    got = [e for e in serve(server, wire) if isinstance(e, ev.MediaMessage)]
    assert [(m.type_id, m.payload) for m in got] == [(t, p) for t, _, p in sent]
    assert [m.timestamp for m in got] == [ts for _, ts in STAMPS]
    client.unpublish()
    end = serve(server, client.data_to_send())
    assert [type(e) for e in end] == [ev.FCUnpublish, ev.DeleteStream]
    assert server.publishing == {}


def test_media_bytes_depends_only_on_chunk_size_and_msid() -> None:
    a, _, _ = pair()
    b, _, _ = pair()
    assert (a.chunk_size, a.msid) == (b.chunk_size, b.msid)
    assert a.media_bytes(9, 40, b"x" * 9000) == b.media_bytes(9, 40, b"x" * 9000)


def raw_client_bytes(*commands: tuple[str, float, Any, tuple[Any, ...], int]) -> bytes:
    """Handshake bytes then the given ``(name, tid, obj, args, msid)`` commands as AMF0."""
    hello = handshake.client_hello(bytes(handshake.PACKET_SIZE))
    out = hello.c0c1 + bytes(handshake.PACKET_SIZE)
    for name, tid, obj, args, msid in commands:
        body = msg.Command(name, tid, obj, args).encode()
        out += encode_message(3, msg.COMMAND_AMF0, msid, 0, body, 128)
    return out


def test_client_that_skips_release_and_fcpublish() -> None:
    server = ServerConnection()
    data = raw_client_bytes(
        ("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live", "objectEncoding": 0}, (), 0),
        ("createStream", 2, None, (), 0),
        ("publish", 0, None, ("name", "live"), 1),
    )
    data += encode_message(6, 9, 1, 10, b"\x17\x00frame", 128)
    events = serve(server, data)
    kinds = [type(e) for e in events]
    assert kinds == [ev.HandshakeDone, ev.ConnectRequest, ev.CreateStream, ev.PublishCommand,
                     ev.MediaMessage]  # fmt: skip
    assert events[0] == ev.HandshakeDone(peer_digest=True)


def replies(server: ServerConnection) -> list[msg.Command]:
    """Decode the commands the server queued (reading with a chunk size of 4096)."""
    from simulcast.codecs.rtmp.chunk import ChunkDecoder

    data = server.data_to_send()
    dec = ChunkDecoder()
    dec.feed(data[1 + 2 * handshake.PACKET_SIZE :] if data[:1] == b"\x03" else data)
    out = []
    while (m := dec.next_message()) is not None:
        if m.type_id == msg.COMMAND_AMF0:
            out.append(msg.parse_command(m.type_id, m.payload))
    return out


def test_connect_result_echoes_object_encoding() -> None:
    server = ServerConnection()
    serve(server, raw_client_bytes(("connect", 1, {"app": "a", "objectEncoding": 3.0}, (), 0)))
    (result,) = replies(server)
    assert result.name == "_result" and result.transaction_id == 1
    assert result.command_object["fmsVer"].startswith("FMS/")
    assert result.arg(0)["code"] == status.CONNECT_SUCCESS
    assert result.arg(0)["objectEncoding"] == 3.0


def test_reject_connect_and_publish() -> None:
    server = ServerConnection()
    events = list(server.receive_data(raw_client_bytes(("connect", 1, {"app": "x"}, (), 0))))
    assert isinstance(events[-1], ev.ConnectRequest)
    server.reject_connect("no such app")
    (error,) = replies(server)
    assert error.name == "_error" and error.arg(0)["code"] == status.CONNECT_REJECTED
    with pytest.raises(LocalProtocolError):
        server.accept_connect()

    server = ServerConnection()
    data = raw_client_bytes(
        ("connect", 1, {"app": "live"}, (), 0),
        ("createStream", 2, None, (), 0),
        ("publish", 0, None, ("bad", "live"), 1),
    )
    serve(server, data, refuse_publish=(status.PUBLISH_BAD_NAME, "bad key"))
    on_status = replies(server)[-1]
    assert on_status.name == "onStatus" and on_status.arg(0)["level"] == "error"
    with pytest.raises(RemoteProtocolError):
        serve(server, encode_message(6, 9, 1, 0, b"x", 4096))  # media after refusal


def test_client_sees_connect_and_publish_failures() -> None:
    client = ClientConnection("live", "rtmp://h/live", "k")
    server = ServerConnection()
    client.initiate()
    list(server.receive_data(client.data_to_send()))
    list(client.receive_data(server.data_to_send()))
    list(server.receive_data(client.data_to_send()))
    server.reject_connect("nope")
    assert list(client.receive_data(server.data_to_send()))[-1] == ev.ConnectFailed(
        status.CONNECT_REJECTED, "nope"
    )
    with pytest.raises(LocalProtocolError):
        client.media_bytes(9, 0, b"x")

    client = ClientConnection("live", "rtmp://h/live", "k")
    server = ServerConnection()
    client.initiate()
    client_events: list[ev.Event] = []
    for _ in range(6):
        serve(server, client.data_to_send(), refuse_publish=(status.PUBLISH_DENIED, "denied"))
        client_events += client.receive_data(server.data_to_send())
    assert client_events[-1] == ev.PublishFailed(status.PUBLISH_DENIED, "denied")


def test_ping_is_answered_and_acks_are_sent() -> None:
    client, server, _ = pair()
    ping = encode_message(2, msg.USER_CONTROL, 0, 0, msg.user_control(msg.PING_REQUEST, 1234), 4096)
    events = list(client.receive_data(ping))
    assert events == [ev.UserControl(msg.PING_REQUEST, 1234)]
    pong = list(server.receive_data(client.data_to_send()))
    assert pong == [ev.UserControl(msg.PING_RESPONSE, 1234)]
    # The server asked for acks every 2.5 MB (accept_connect); send more than that.
    payload = bytes(1_000_000)
    acks: list[ev.Acknowledged] = []
    for i in range(3):
        serve(server, client.media_bytes(9, i, payload))
        acks += [
            e for e in client.receive_data(server.data_to_send()) if isinstance(e, ev.Acknowledged)
        ]
    assert len(acks) == 1 and acks[0].sequence_number >= 2_500_000


def test_unknown_command_is_not_fatal_and_can_be_answered() -> None:
    server = ServerConnection()
    data = raw_client_bytes(("connect", 1, {"app": "live"}, (), 0), ("_checkbw", 5, None, (), 0))
    events = serve(server, data)
    unknown = events[-1]
    assert isinstance(unknown, ev.UnknownCommand) and unknown.name == "_checkbw"
    server.answer_error(unknown.transaction_id, "not supported")
    assert replies(server)[-1].name == "_error"


def test_commands_before_connect_are_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        serve(ServerConnection(), raw_client_bytes(("createStream", 2, None, (), 0)))


def test_amf3_command_and_data_messages() -> None:
    server = ServerConnection()
    data = raw_client_bytes(
        ("connect", 1, {"app": "live"}, (), 0), ("createStream", 2, None, (), 0)
    )
    serve(server, data)
    publish = b"\x00" + msg.Command("publish", 0, None, ("n", "live")).encode()
    meta = amf0.encode_all("onMetaData", {"width": 160.0})
    amf3_meta = amf0.encode("onTextData") + b"\x11\x0a\x0b\x01\x03t\x06\x03x\x01"
    wire = encode_message(3, msg.COMMAND_AMF3, 1, 0, publish, 128)
    wire += encode_message(5, msg.DATA_AMF3, 1, 0, b"\x00" + meta, 128)
    wire += encode_message(5, msg.DATA_AMF3, 1, 0, b"\x00" + amf3_meta, 128)
    wire += encode_message(5, msg.DATA_AMF3, 1, 0, b"\x00\x11\x0c\x03z", 128)  # ByteArray
    events = serve(server, wire)
    assert isinstance(events[0], ev.PublishCommand) and events[0].stream_name == "n"
    media = [e for e in events if isinstance(e, ev.MediaMessage)]
    assert (media[0].type_id, media[0].payload) == (18, meta)
    assert media[1].type_id == 18
    assert amf0.decode_all(media[1].payload) == ["onTextData", {"t": "x"}]
    assert media[2].type_id == 15


def test_local_misuse() -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError):
        server.accept_create_stream(1)
    with pytest.raises(LocalProtocolError):
        server.accept_publish(1, "x")
    client = ClientConnection("a", "rtmp://h/a", "k")
    client.initiate()
    with pytest.raises(LocalProtocolError):
        client.initiate()
    with pytest.raises(LocalProtocolError):
        client.set_chunk_size(0)
    assert issubclass(LocalProtocolError, RtmpError) and issubclass(RemoteProtocolError, RtmpError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_errors_stick() -> None:
    server = ServerConnection()
    with pytest.raises(RemoteProtocolError):
        list(server.receive_data(b"\x06" + bytes(1536)))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_split_stream_name() -> None:
    assert msg.split_stream_name("key?token=a%20b&x=") == ("key", {"token": "a b", "x": ""})
    assert msg.split_stream_name("plain") == ("plain", {})


def test_set_data_frame_helpers() -> None:
    meta = amf0.encode_all("onMetaData", {"a": 1.0})
    wrapped = msg.add_set_data_frame(meta)
    assert amf0.decode_all(wrapped)[0] == "@setDataFrame"
    assert msg.strip_set_data_frame(wrapped) == meta
    assert msg.add_set_data_frame(wrapped) == wrapped


# -- the captured ffmpeg session: replay and fuzz ------------------------------------------------


def test_captured_session_replays_in_random_pieces() -> None:
    data = CAPTURE.read_bytes()
    whole = serve(ServerConnection(random_bytes=seeded()), data)
    rng = random.Random(11)
    server = ServerConnection(random_bytes=seeded())
    pieces: list[ev.Event] = []
    pos = 0
    while pos < len(data):
        n = rng.randrange(1, 3000)
        pieces += serve(server, data[pos : pos + n])
        pos += n
    assert pieces == whole
    media = [e for e in whole if isinstance(e, ev.MediaMessage)]
    assert {m.type_id for m in media} == {8, 9, 18}
    assert isinstance(whole[-1], ev.DeleteStream)


def fuzz_server(data: bytes) -> None:
    server = ServerConnection(max_message_size=1 << 20, max_incomplete_size=2 << 20)
    with contextlib.suppress(RemoteProtocolError):
        serve(server, data)
    # Memory stays bounded by the limits whatever the input.
    assert server._decoder.incomplete <= 2 << 20


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_fuzz_random_bytes_after_handshake(data: bytes) -> None:
    fuzz_server(raw_client_bytes() + data)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "truncate", "insert", "delete"]),
            st.integers(0, 45_000),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_fuzz_mutated_capture(mutations: list[tuple[str, int, bytes]]) -> None:
    data = bytearray(CAPTURE.read_bytes())
    for kind, where, blob in mutations:
        pos = where % len(data)
        if kind == "flip":
            data[pos] ^= 1 << (blob[0] % 8)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = blob
        else:
            del data[pos : pos + len(blob)]
        if not data:
            return
    fuzz_server(bytes(data))


@settings(max_examples=100)
@given(st.binary(max_size=5000))
def test_fuzz_client_side(data: bytes) -> None:
    client = ClientConnection("live", "rtmp://h/live", "k")
    client.initiate()
    with contextlib.suppress(RemoteProtocolError):
        list(client.receive_data(b"\x03" + bytes(2 * handshake.PACKET_SIZE) + data))


def test_codec_imports_no_io_modules() -> None:
    # The interpreter itself loads ``time`` at startup (zipimport), so compare with a baseline.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import simulcast.codecs.amf, simulcast.codecs.amf0, simulcast.codecs.amf3\n"
        "import simulcast.codecs.rtmp.connection\n"
        "new = set(sys.modules) - before\n"
        "print(sorted({'asyncio', 'socket', 'ssl', 'time', 'selectors'} & new))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    root = Path(__file__).parents[2] / "src" / "simulcast" / "codecs"
    for path in [
        root / "amf.py",
        root / "amf0.py",
        root / "amf3.py",
        *sorted((root / "rtmp").glob("*.py")),
    ]:
        source = path.read_text()
        for name in ("asyncio", "socket", "ssl", "time"):
            assert f"import {name}" not in source, (path, name)


def test_client_plays_a_stream() -> None:
    client = ClientConnection("live", "rtmp://h/live", "src", play=True, random_bytes=seeded())
    server = ServerConnection(random_bytes=seeded())
    client.initiate()
    seen: list[ev.Event] = []
    for _ in range(10):
        seen += serve(server, client.data_to_send())
        list(client.receive_data(server.data_to_send()))
    # A player asks for no publish: connect, createStream, then play (start -2000: live first).
    assert not any(isinstance(e, ev.ReleaseStream | ev.FCPublish | ev.PublishCommand) for e in seen)
    play = [e for e in seen if isinstance(e, ev.UnknownCommand) and e.name == "play"]
    assert len(play) == 1 and play[0].msid == client.msid == 1
    assert list(play[0].args) == ["src", -2000.0]
    assert not client.playing

    def from_server(type_id: int, timestamp: int, payload: bytes) -> bytes:
        csid = {msg.COMMAND_AMF0: 5, msg.AUDIO: 6}[type_id]
        return encode_message(csid, type_id, 1, timestamp, payload, server.chunk_size)

    started = msg.Command(
        "onStatus", 0.0, None, (status.info("status", status.PLAY_START, "Started"),)
    ).encode()
    wire = from_server(msg.COMMAND_AMF0, 0, started) + from_server(msg.AUDIO, 40, b"\xaf\x01ab")
    events = list(client.receive_data(wire))
    assert events == [ev.PlayStarted(1), ev.MediaMessage(msg.AUDIO, 1, 40, b"\xaf\x01ab")]
    assert client.playing
    refused = ClientConnection("live", "rtmp://h/live", "x", play=True, random_bytes=seeded())
    refused.initiate()
    server = ServerConnection(random_bytes=seeded())
    for _ in range(10):
        serve(server, refused.data_to_send())
        list(refused.receive_data(server.data_to_send()))
    error = msg.Command(
        "onStatus", 0.0, None, (status.info("error", "NetStream.Play.StreamNotFound", "no"),)
    ).encode()
    events = list(refused.receive_data(from_server(msg.COMMAND_AMF0, 0, error)))
    assert events == [ev.PublishFailed("NetStream.Play.StreamNotFound", "no")]


# -- hostile input (issue 20) -----------------------------------------------------------------

_NON_FINITE = [float("nan"), float("inf"), float("-inf"), -float("nan")]
_AFTER_CONNECT = (("connect", 1.0, {"app": "live"}, (), 0), ("createStream", 2.0, None, (), 0))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["deleteStream", "closeStream", "publish", "createStream", "FCUnpublish"]),
    st.sampled_from(_NON_FINITE),
    st.sampled_from(["tid", "arg", "object", "nested"]),
)
def test_fuzz_nan_corpus(name: str, bad: float, where: str) -> None:
    """NaN and infinities anywhere in a command are a protocol error, never another exception."""
    tid = bad if where == "tid" else 3.0
    obj = {"x": bad} if where == "object" else None
    args: tuple[Any, ...] = (bad,) if where == "arg" else ("key",)
    if where == "nested":
        args = ([1.0, {"deep": [bad]}],)
    data = raw_client_bytes(*_AFTER_CONNECT, (name, tid, obj, args, 1))
    server = ServerConnection()
    with pytest.raises(RemoteProtocolError, match="NaN or infinite"):
        serve(server, data)


def test_nan_in_shared_amf_references_is_found() -> None:
    # AMF0 references let an object appear many times (or contain itself): walked once.
    body = bytearray(amf0.encode_all("deleteStream", 4.0, None))
    body += b"\x03" + b"\x00\x01a" + b"\x07\x00\x00" + b"\x00\x00\x09"  # {a: ref to itself}
    body += amf0.encode(float("nan"))
    hello = handshake.client_hello(bytes(handshake.PACKET_SIZE))
    data = hello.c0c1 + bytes(handshake.PACKET_SIZE)
    data += raw_client_bytes(*_AFTER_CONNECT)[len(data) :]
    data += encode_message(3, msg.COMMAND_AMF0, 0, 0, bytes(body), 128)
    with pytest.raises(RemoteProtocolError, match="NaN"):
        serve(ServerConnection(), data)


def test_limits_before_publish_are_small_and_lifted_by_accept() -> None:
    hello = handshake.client_hello(bytes(handshake.PACKET_SIZE))
    start = hello.c0c1 + bytes(handshake.PACKET_SIZE)
    # A 16 MiB chunk size before connect: refused (ffmpeg sends 4096 after its connect).
    server = ServerConnection()
    big_chunks = encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(16 << 20), 128)
    with pytest.raises(RemoteProtocolError, match="chunk size"):
        serve(server, start + big_chunks)
    # An 8 MiB message header before publish: refused at the header, nothing is held.
    server = ServerConnection()
    header = encode_message(3, msg.COMMAND_AMF0, 0, 0, bytes(8 << 20), 128)[:12]
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        serve(server, start + header)
    assert server.buffered_bytes < 64
    # After an accepted publish the full limits apply: a 1 MiB keyframe and 1 MiB chunks pass.
    client, server, _ = pair()
    serve(server, encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(1 << 20), client.chunk_size))
    assert client.msid is not None
    frame = encode_message(7, msg.VIDEO, client.msid, 0, b"\x17" + bytes(1 << 20), 1 << 20)
    media = [e for e in serve(server, frame) if isinstance(e, ev.MediaMessage)]
    assert len(media) == 1 and len(media[0].payload) == (1 << 20) + 1


def test_ffmpeg_capture_fits_the_limits_before_publish() -> None:
    # What a real encoder sends before its publish is accepted stays far under the defaults.
    events = serve(ServerConnection(), CAPTURE.read_bytes())
    assert any(isinstance(e, ev.MediaMessage) for e in events)
