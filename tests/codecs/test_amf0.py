"""AMF0 (and the AMF3 parts RTMP needs): golden bytes, round trips, malformed input."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulcast.codecs import amf, amf0
from simulcast.codecs.amf import UNDEFINED, AmfDate, EcmaArray, TypedObject, XmlDocument

GOLDEN: list[tuple[Any, bytes]] = [
    (1.5, b"\x00" + struct.pack(">d", 1.5)),
    (True, b"\x01\x01"),
    (False, b"\x01\x00"),
    ("abc", b"\x02\x00\x03abc"),
    ({"a": None}, b"\x03\x00\x01a\x05\x00\x00\x09"),
    (None, b"\x05"),
    (UNDEFINED, b"\x06"),
    (
        EcmaArray(w=1.0),
        b"\x08\x00\x00\x00\x01\x00\x01w\x00" + struct.pack(">d", 1) + b"\x00\x00\x09",
    ),
    ([True, None], b"\x0a\x00\x00\x00\x02\x01\x01\x05"),
    (AmfDate(1000.0, 0), b"\x0b" + struct.pack(">d", 1000) + b"\x00\x00"),
    ("x" * 70000, b"\x0c\x00\x01\x11\x70" + b"x" * 70000),
    (XmlDocument("<a/>"), b"\x0f\x00\x00\x00\x04<a/>"),
    (TypedObject("T", {"k": False}), b"\x10\x00\x01T\x00\x01k\x01\x00\x00\x00\x09"),
]


@pytest.mark.parametrize(("value", "wire"), GOLDEN)
def test_golden(value: Any, wire: bytes) -> None:
    assert amf0.encode(value) == wire
    decoded = amf0.decode(wire)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(value, bool | float)


def test_connect_command_golden() -> None:
    wire = amf0.encode_all("connect", 1, {"app": "live"})
    assert wire == (
        b"\x02\x00\x07connect\x00?\xf0\x00\x00\x00\x00\x00\x00"
        b"\x03\x00\x03app\x02\x00\x04live\x00\x00\x09"
    )
    assert amf0.decode_all(wire) == ["connect", 1.0, {"app": "live"}]


def test_reference_resolves_to_earlier_object() -> None:
    wire = b"\x0a\x00\x00\x00\x02" + b"\x03\x00\x01a\x05\x00\x00\x09" + b"\x07\x00\x01"
    first, second = amf0.decode(wire)
    assert first is second == {"a": None}


def test_ecma_array_count_is_only_a_hint() -> None:
    assert amf0.decode(b"\x08\x00\x00\x00\x09\x00\x01a\x05\x00\x00\x09") == {"a": None}


def test_avmplus_switch_decodes_amf3() -> None:
    # 0x11 then an AMF3 object with dynamic members {"n": 5, "s": "hi"} and an AMF3 dense array.
    obj = b"\x11\x0a\x0b\x01\x03n\x04\x05\x03s\x06\x05hi\x01"
    assert amf0.decode(obj) == {"n": 5, "s": "hi"}
    assert amf0.decode(b"\x11\x09\x05\x01\x04\x01\x05" + struct.pack(">d", 2.5)) == [1, 2.5]
    assert amf0.decode(b"\x11\x04\xff\xff\xff\xff") == -1  # 29-bit signed integer
    assert amf0.decode(b"\x11\x0c\x07abc") == b"abc"  # ByteArray


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00\x01",
        b"\x02\x00\x05ab",
        b"\x02\x00\x02\xff\xfe",  # invalid UTF-8
        b"\x03\x00\x01a",
        b"\x07\x00\x00",  # reference to nothing
        b"\x0a\xff\xff\xff\xff\x05",  # absurd strict array length
        b"\x0d",  # unsupported marker
        b"\x09",  # object end outside an object
        b"\x11\x0a\x07\x01",  # externalizable AMF3 object
        b"\x0a\x00\x00\x00\x01" * 100 + b"\x05",  # too deep
    ],
)
def test_malformed_raises_decode_error(wire: bytes) -> None:
    with pytest.raises(amf.AMFDecodeError):
        amf0.decode(wire)


def test_trailing_bytes_rejected_by_decode() -> None:
    with pytest.raises(amf.AMFDecodeError):
        amf0.decode(b"\x05\x05")


@pytest.mark.parametrize(
    "value", [object(), {1: 2}, 10**400, AmfDate(0.0, 1 << 20), {"k" * 70000: 1}]
)
def test_unencodable_raises_encode_error(value: Any) -> None:
    with pytest.raises(amf.AMFEncodeError):
        amf0.encode(value)


def test_cycle_raises_encode_error() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(amf.AMFEncodeError):
        amf0.encode(loop)


keys = st.text(max_size=8)
scalars = (
    st.floats(allow_nan=False)
    | st.booleans()
    | st.text(max_size=20)
    | st.none()
    | st.just(UNDEFINED)
    | st.builds(AmfDate, st.floats(allow_nan=False), st.integers(-32768, 32767))
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(keys, children, max_size=4)
        | st.dictionaries(keys, children, max_size=4).map(EcmaArray)
        | st.builds(TypedObject, st.text(max_size=5), st.dictionaries(keys, children, max_size=3))
    ),
    max_leaves=20,
)


@given(st.lists(values, max_size=4))
def test_round_trip(items: list[Any]) -> None:
    wire = amf0.encode_all(*items)
    decoded = amf0.decode_all(wire)
    assert decoded == items
    assert [type(x) for x in decoded] == [type(x) for x in items]
    assert amf0.encode_all(*decoded) == wire


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(amf.AMFDecodeError):
        amf0.decode_all(data)


@given(st.binary(max_size=200))
def test_arbitrary_amf3_only_raises_decode_error(data: bytes) -> None:
    with contextlib.suppress(amf.AMFDecodeError):
        amf0.decode_all(b"\x11" + data)
