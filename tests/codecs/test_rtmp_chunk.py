"""RTMP chunk stream: golden headers, extended timestamps, limits, arbitrary splits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulcast.codecs.rtmp import messages as msg
from simulcast.codecs.rtmp.chunk import ChunkDecoder, RawMessage, encode_message
from simulcast.codecs.rtmp.errors import LocalProtocolError, RemoteProtocolError


def decode_all(data: bytes, decoder: ChunkDecoder | None = None) -> list[RawMessage]:
    dec = decoder or ChunkDecoder()
    dec.feed(data)
    out = []
    while (m := dec.next_message()) is not None:
        out.append(m)
    return out


def test_golden_all_four_formats() -> None:
    wire = (
        bytes.fromhex("03 0003e8 000005 14 01000000") + b"hello"  # fmt 0, ts 1000
        + bytes.fromhex("43 000064 000003 09") + b"abc"  # fmt 1, delta 100
        + bytes.fromhex("83 000032") + b"def"  # fmt 2, delta 50
        + bytes.fromhex("c3") + b"ghi"  # fmt 3, delta 50 again
    )  # fmt: skip
    assert decode_all(wire) == [
        RawMessage(3, 20, 1, 1000, b"hello"),
        RawMessage(3, 9, 1, 1100, b"abc"),
        RawMessage(3, 9, 1, 1150, b"def"),
        RawMessage(3, 9, 1, 1200, b"ghi"),
    ]


def test_fmt3_after_fmt0_reuses_the_timestamp_as_delta() -> None:
    wire = bytes.fromhex("04 000010 000001 08 01000000") + b"a" + bytes.fromhex("c4") + b"b"
    assert [m.timestamp for m in decode_all(wire)] == [16, 32]


@pytest.mark.parametrize(
    ("csid", "basic"), [(2, "02"), (63, "3f"), (64, "0000"), (319, "00ff"), (320, "010001"),
                        (65599, "01ffff")]
)  # fmt: skip
def test_basic_header_sizes(csid: int, basic: str) -> None:
    wire = encode_message(csid, 8, 1, 7, b"xy", 128)
    assert wire == bytes.fromhex(basic + "000007 000002 08 01000000") + b"xy"
    assert decode_all(wire) == [RawMessage(csid, 8, 1, 7, b"xy")]


def test_encode_splits_with_fmt3_continuations() -> None:
    wire = encode_message(6, 8, 1, 5, b"0123456789", 4)
    assert wire == (
        bytes.fromhex("06 000005 00000a 08 01000000") + b"0123"
        + b"\xc6" + b"4567" + b"\xc6" + b"89"
    )  # fmt: skip
    assert decode_all(wire, _with_chunk_size(4)) == [RawMessage(6, 8, 1, 5, b"0123456789")]


def _with_chunk_size(size: int) -> ChunkDecoder:
    dec = ChunkDecoder()
    decode_all(encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(size), 128), dec)
    assert dec.chunk_size == size
    return dec


def test_extended_timestamp_repeated_on_continuations() -> None:
    ts = 0x01020304
    wire = encode_message(7, 9, 1, ts, b"abcdef", 4)
    ext = bytes.fromhex("01020304")
    assert wire == (
        bytes.fromhex("07 ffffff 000006 09 01000000") + ext + b"abcd" + b"\xc7" + ext + b"ef"
    )
    assert decode_all(wire, _with_chunk_size(4)) == [RawMessage(7, 9, 1, ts, b"abcdef")]


def test_extended_timestamp_omitted_on_continuations_is_tolerated() -> None:
    ext = bytes.fromhex("01020304")
    wire = bytes.fromhex("07 ffffff 000006 09 01000000") + ext + b"abcd" + b"\xc7" + b"ef"
    # Telling "absent" from "present" takes four bytes, so the verdict waits for what follows.
    wire += encode_message(3, 20, 0, 0, b"next", 128)
    assert decode_all(wire, _with_chunk_size(4))[0] == RawMessage(7, 9, 1, 0x01020304, b"abcdef")


def test_extended_timestamp_on_fmt3_new_message() -> None:
    # fmt 0 with an extended timestamp, then a fmt 3 new message carrying it again (as delta).
    ext = bytes.fromhex("01000000")
    wire = bytes.fromhex("05 ffffff 000001 12 01000000") + ext + b"a" + b"\xc5" + ext + b"b"
    assert [m.timestamp for m in decode_all(wire)] == [1 << 24, 2 << 24]


def test_timestamps_unwrap_past_32_bits() -> None:
    near = 0xFFFFFFF0
    wire = encode_message(6, 9, 1, near, b"a", 128)
    wire += bytes.fromhex("46 000020 000001 09") + b"b"  # delta wraps the 32-bit clock
    wire += encode_message(6, 9, 1, 0x30, b"c", 128)  # absolute, already wrapped
    wire += encode_message(6, 9, 1, 0x28, b"d", 128)  # slightly backwards
    stamps = [m.timestamp for m in decode_all(wire)]
    assert stamps == [near, near + 0x20, (1 << 32) + 0x30, (1 << 32) + 0x28]


def test_new_chunk_stream_joins_the_unwrapped_timeline() -> None:
    wire = encode_message(6, 9, 1, 0xFFFFFFF0, b"a", 128)
    wire += bytes.fromhex("46 000020 000001 09") + b"b"
    wire += encode_message(4, 8, 1, 0x18, b"c", 128)  # audio starts after the wrap
    assert decode_all(wire)[-1].timestamp == (1 << 32) + 0x18


def test_large_chunk_size_and_message() -> None:
    payload = bytes(range(256)) * 1000
    wire = encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(65536), 128)
    wire += encode_message(6, 9, 1, 40, payload, 65536)
    messages = decode_all(wire)
    assert messages[-1].payload == payload
    assert wire.count(b"\xc6") >= 3


def test_chunk_size_over_the_practical_cap_is_clamped() -> None:
    dec = ChunkDecoder()
    decode_all(encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(0x7FFFFFFF), 128), dec)
    assert dec.chunk_size == 0xFFFFFF


@pytest.mark.parametrize("size", [0, 0x80000000])
def test_invalid_chunk_size_is_remote_error(size: int) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(size), 128))


def test_abort_drops_partial_message() -> None:
    dec = ChunkDecoder()
    first = encode_message(6, 9, 1, 0, b"x" * 200, 128)[:140]  # header + one chunk of 200
    abort = encode_message(2, msg.ABORT, 0, 0, msg.u32(6), 128)
    again = encode_message(6, 9, 1, 10, b"fresh", 128)
    assert [m.type_id for m in decode_all(first + abort + again, dec)] == [msg.ABORT, 9]
    assert dec.incomplete == 0


def test_zero_length_message() -> None:
    assert decode_all(encode_message(3, 20, 0, 0, b"", 128)) == [RawMessage(3, 20, 0, 0, b"")]


def test_limits() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(
            encode_message(6, 9, 1, 0, b"x" * 1000, 4096), ChunkDecoder(max_message_size=999)
        )
    many = b"".join(encode_message(c, 9, 1, 0, b"x", 128) for c in range(3, 20))
    with pytest.raises(RemoteProtocolError):
        decode_all(many, ChunkDecoder(max_chunk_streams=10))
    partials = b"".join(encode_message(c, 9, 1, 0, b"x" * 300, 128)[:140] for c in range(3, 20))
    with pytest.raises(RemoteProtocolError):
        decode_all(partials, ChunkDecoder(max_incomplete_size=1000))


@pytest.mark.parametrize(
    "wire",
    [
        bytes.fromhex("43 000000 000001 09") + b"a",  # fmt 1 on an unknown chunk stream
        encode_message(6, 9, 1, 0, b"x" * 200, 128)[:140] + bytes.fromhex("86 000000"),
    ],
)
def test_header_errors(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(wire)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"csid": 1}, {"csid": 65600}, {"chunk_size": 0}, {"chunk_size": 1 << 24},
        {"msg_type": 256}, {"msid": -1}, {"payload": bytes(1 << 24)},
    ],
)  # fmt: skip
def test_encode_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"csid": 6, "msg_type": 9, "msid": 1, "timestamp": 0,
                               "payload": b"x", "chunk_size": 128} | kwargs  # fmt: skip
    with pytest.raises(LocalProtocolError):
        encode_message(**args)  # type: ignore[arg-type]


message_specs = st.lists(
    st.tuples(
        st.sampled_from([3, 4, 6, 70, 400]),
        st.sampled_from([8, 9, 18]),
        st.integers(0, 0x1FFFFFFF),
        st.binary(max_size=700),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150)
@given(message_specs, st.sampled_from([1, 7, 128, 4096]), st.data())
def test_arbitrary_splits_give_the_same_messages(
    specs: list[tuple[int, int, int, bytes]], chunk_size: int, data: st.DataObject
) -> None:
    specs = sorted(specs, key=lambda s: s[2])  # one growing clock, so no unwrapping surprises
    wire = encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(chunk_size), 128) + b"".join(
        encode_message(c, t, 1, ts, p, chunk_size) for c, t, ts, p in specs
    )
    whole = decode_all(wire)
    dec = ChunkDecoder()
    pieces: list[RawMessage] = []
    pos = 0
    while pos < len(wire):
        n = data.draw(st.integers(1, 600))
        dec.feed(wire[pos : pos + n])
        pos += n
        while (m := dec.next_message()) is not None:
            pieces.append(m)
    assert pieces == whole
    assert [(m.csid, m.type_id, m.timestamp, m.payload) for m in whole[1:]] == specs


def _chunks(csid: int, type_id: int, ts: int, payload: bytes, size: int) -> list[bytes]:
    """One message as separate chunks: a fmt 0 header, then one-byte fmt 3 continuations."""
    head = bytes((csid,)) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big")
    head += bytes((type_id,)) + (1).to_bytes(4, "little")
    parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
    return [head + parts[0]] + [bytes((0xC0 | csid,)) + part for part in parts[1:]]


@settings(max_examples=150)
@given(
    st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=300)), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 5000), st.binary(max_size=300)), min_size=1, max_size=4),
    st.sampled_from([1, 16, 128]),
    st.data(),
)
def test_interleaved_chunk_streams_reassemble_each_message(
    video: list[tuple[int, bytes]],
    audio: list[tuple[int, bytes]],
    chunk_size: int,
    data: st.DataObject,
) -> None:
    # Audio chunks land between a video frame's continuations (as publishers send them): a
    # continuation on one chunk stream must never be taken for the other's.
    video_chunks = [c for ts, p in video for c in _chunks(7, 9, ts, p, chunk_size)]
    audio_chunks = [c for ts, p in audio for c in _chunks(6, 8, ts, p, chunk_size)]
    wire = [encode_message(2, msg.SET_CHUNK_SIZE, 0, 0, msg.u32(chunk_size), 128)]
    while video_chunks or audio_chunks:
        pick_video = bool(video_chunks) and (not audio_chunks or data.draw(st.booleans()))
        wire.append((video_chunks if pick_video else audio_chunks).pop(0))
    got = decode_all(b"".join(wire))[1:]
    assert [(m.timestamp, m.payload) for m in got if m.csid == 7] == video
    assert [(m.timestamp, m.payload) for m in got if m.csid == 6] == audio
