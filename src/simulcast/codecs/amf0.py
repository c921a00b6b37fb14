"""AMF0 (Action Message Format 0) encoder and decoder.

Python value model (decode produces it, encode accepts it; the types are
:mod:`simulcast.codecs.amf`'s):

========================  =====================================================
AMF0 type                 Python value
========================  =====================================================
number (0x00)             ``float`` (encode also accepts ``int``)
boolean (0x01)            ``bool``
string / long string      ``str`` (encode picks long string above 65535 bytes)
object (0x03)             ``dict[str, Any]``
null (0x05)               ``None``
undefined (0x06)          :data:`UNDEFINED`
reference (0x07)          the referenced container (decode only)
ECMA array (0x08)         :class:`EcmaArray` (a ``dict`` subclass)
strict array (0x0A)       ``list``
date (0x0B)               :class:`AmfDate`
XML document (0x0F)       :class:`XmlDocument` (a ``str`` subclass)
typed object (0x10)       :class:`TypedObject`
switch to AMF3 (0x11)     the AMF3 value, see :mod:`simulcast.codecs.amf3`
========================  =====================================================

Malformed input raises :class:`AMFDecodeError`; values that cannot be represented raise
:class:`AMFEncodeError`. Nothing else escapes (no ``IndexError``, ``struct.error`` or
``RecursionError``): nesting is capped at :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from simulcast.codecs import amf3
from simulcast.codecs.amf import (
    MAX_DEPTH,
    UNDEFINED,
    AmfDate,
    AMFDecodeError,
    AMFEncodeError,
    EcmaArray,
    TypedObject,
    XmlDocument,
)

__all__ = [
    "Decoder",
    "decode",
    "decode_all",
    "encode",
    "encode_all",
]

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class Decoder:
    """Reads consecutive AMF0 values from one buffer, sharing one reference table.

    AMF0 references index the complex values (objects, arrays) met so far in the same message,
    so a message is decoded with one ``Decoder``.
    """

    __slots__ = ("_data", "_pos", "_refs")

    def __init__(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        self._data = bytes(data)
        self._pos = offset
        self._refs: list[Any] = []

    @property
    def position(self) -> int:
        """Offset of the next unread byte."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Number of unread bytes."""
        return len(self._data) - self._pos

    def read_bytes(self, n: int) -> bytes:
        """Consume exactly ``n`` bytes (also used by the AMF3 decoder)."""
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise AMFDecodeError(f"truncated: need {n} bytes at offset {self._pos}")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def read_u8(self) -> int:
        """Consume one byte."""
        if self._pos >= len(self._data):
            raise AMFDecodeError(f"truncated at offset {self._pos}")
        b = self._data[self._pos]
        self._pos += 1
        return b

    def _read_utf8(self, n: int) -> str:
        try:
            return self.read_bytes(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AMFDecodeError(f"invalid UTF-8 in string: {exc}") from None

    def _read_short_string(self) -> str:
        (n,) = _U16.unpack(self.read_bytes(2))
        return self._read_utf8(n)

    def decode(self) -> Any:
        """Decode the next value."""
        return self._value(0)

    def _value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise AMFDecodeError("nesting too deep")
        marker = self.read_u8()
        if marker == NUMBER:
            return _DOUBLE.unpack(self.read_bytes(8))[0]
        if marker == BOOLEAN:
            return self.read_u8() != 0
        if marker == STRING:
            return self._read_short_string()
        if marker == OBJECT:
            obj: dict[str, Any] = {}
            self._refs.append(obj)
            self._properties(obj, depth)
            return obj
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == REFERENCE:
            (index,) = _U16.unpack(self.read_bytes(2))
            if index >= len(self._refs):
                raise AMFDecodeError(f"reference {index} to an unknown object")
            return self._refs[index]
        if marker == ECMA_ARRAY:
            # The count is only a hint (encoders disagree on it); the end marker is authoritative.
            self.read_bytes(4)
            arr = EcmaArray()
            self._refs.append(arr)
            self._properties(arr, depth)
            return arr
        if marker == STRICT_ARRAY:
            (count,) = _U32.unpack(self.read_bytes(4))
            if count > self.remaining:  # every element takes at least one byte
                raise AMFDecodeError(f"strict array of {count} exceeds the input")
            items: list[Any] = []
            self._refs.append(items)
            for _ in range(count):
                items.append(self._value(depth + 1))
            return items
        if marker == DATE:
            ms, tz = _DATE.unpack(self.read_bytes(10))
            return AmfDate(ms, tz)
        if marker in (LONG_STRING, XML_DOCUMENT):
            (n,) = _U32.unpack(self.read_bytes(4))
            text = self._read_utf8(n)
            return XmlDocument(text) if marker == XML_DOCUMENT else text
        if marker == TYPED_OBJECT:
            typed = TypedObject(self._read_short_string())
            self._refs.append(typed)
            self._properties(typed.properties, depth)
            return typed
        if marker == AVMPLUS:
            return amf3.decode_value(self, depth + 1)
        raise AMFDecodeError(f"unknown AMF0 marker 0x{marker:02x} at offset {self._pos - 1}")

    def _properties(self, target: dict[str, Any], depth: int) -> None:
        while True:
            key = self._read_short_string()
            if key == "" and self._pos < len(self._data) and self._data[self._pos] == OBJECT_END:
                self._pos += 1
                return
            target[key] = self._value(depth + 1)


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one AMF0 value that must span all of ``data``."""
    dec = Decoder(data)
    value = dec.decode()
    if dec.remaining:
        raise AMFDecodeError(f"{dec.remaining} trailing bytes after the value")
    return value


def decode_all(data: bytes | bytearray | memoryview) -> list[Any]:
    """Decode the sequence of AMF0 values that makes up a command or data message body."""
    dec = Decoder(data)
    values = []
    while dec.remaining:
        values.append(dec.decode())
    return values


def encode(value: Any) -> bytes:
    """Encode one value as AMF0."""
    out = bytearray()
    _encode(out, value, 0)
    return bytes(out)


def encode_all(*values: Any) -> bytes:
    """Encode several values back to back (a command or data message body)."""
    out = bytearray()
    for value in values:
        _encode(out, value, 0)
    return bytes(out)


def _short_string(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise AMFEncodeError(f"property name of {len(raw)} bytes exceeds 65535")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(out: bytearray, props: dict[str, Any], depth: int) -> None:
    for key, item in props.items():
        if not isinstance(key, str):
            raise AMFEncodeError(f"object keys must be str, not {type(key).__name__}")
        _short_string(out, key)
        _encode(out, item, depth + 1)
    out += b"\x00\x00\x09"


def _encode(out: bytearray, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AMFEncodeError("nesting too deep (or a cycle)")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        try:
            number = _DOUBLE.pack(float(value))
        except OverflowError:
            raise AMFEncodeError(f"{value} does not fit a double") from None
        out.append(NUMBER)
        out += number
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if isinstance(value, XmlDocument):
            out.append(XML_DOCUMENT)
            out += _U32.pack(len(raw))
        elif len(raw) > 0xFFFF:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            out.append(STRING)
            out += _U16.pack(len(raw))
        out += raw
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(out, item, depth + 1)
    elif isinstance(value, AmfDate):
        try:
            date = _DATE.pack(value.milliseconds, value.timezone)
        except (struct.error, OverflowError):
            raise AMFEncodeError(f"{value!r} does not fit the AMF0 date layout") from None
        out.append(DATE)
        out += date
    elif isinstance(value, TypedObject):
        out.append(TYPED_OBJECT)
        _short_string(out, value.class_name)
        _encode_properties(out, value.properties, depth)
    else:
        raise AMFEncodeError(f"no AMF0 encoding for {type(value).__name__}")
