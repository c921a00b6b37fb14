"""AMF3 decoding, only as far as RTMP needs it.

Some clients send AMF3 command (type 17) and data (type 15) messages: a 0x00 byte then AMF0
values, where a value may be an AMF0 "switch to AMF3" marker (0x11) followed by one AMF3 value.
:func:`decode_value` decodes that value from the AMF0 decoder's cursor; each
switch starts fresh AMF3 reference tables. Values map to the same Python model as AMF0 (see
:mod:`simulcast.codecs.amf`); ByteArray becomes ``bytes`` and the Vector types become lists.
Externalizable objects cannot be decoded without their class and raise ``AMFDecodeError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from simulcast.codecs.amf import (
    MAX_DEPTH,
    UNDEFINED,
    AmfDate,
    AMFDecodeError,
    ByteReader,
    EcmaArray,
    TypedObject,
    XmlDocument,
)

__all__ = ["decode_value"]

_UNDEFINED: Final = 0x00
_NULL: Final = 0x01
_FALSE: Final = 0x02
_TRUE: Final = 0x03
_INTEGER: Final = 0x04
_DOUBLE: Final = 0x05
_STRING: Final = 0x06
_XML_DOC: Final = 0x07
_DATE: Final = 0x08
_ARRAY: Final = 0x09
_OBJECT: Final = 0x0A
_XML: Final = 0x0B
_BYTE_ARRAY: Final = 0x0C
_VECTOR_INT: Final = 0x0D
_VECTOR_UINT: Final = 0x0E
_VECTOR_DOUBLE: Final = 0x0F
_VECTOR_OBJECT: Final = 0x10
_DICTIONARY: Final = 0x11

_F64 = struct.Struct(">d")


@dataclass(frozen=True, slots=True)
class _Traits:
    class_name: str
    dynamic: bool
    members: tuple[str, ...]


class _Context:
    """One AMF3 value's reference tables, read through the enclosing AMF0 decoder."""

    def __init__(self, dec: ByteReader) -> None:
        self.dec = dec
        self.strings: list[str] = []
        self.objects: list[Any] = []
        self.traits: list[_Traits] = []

    def u29(self) -> int:
        result = 0
        for _ in range(3):
            b = self.dec.read_u8()
            if b < 0x80:
                return (result << 7) | b
            result = (result << 7) | (b & 0x7F)
        return (result << 8) | self.dec.read_u8()

    def count(self, n: int, per_item: int = 1) -> int:
        # A length can never promise more items than bytes are left: refuse huge allocations.
        if n * per_item > self.dec.remaining:
            raise AMFDecodeError(f"AMF3 length {n} exceeds the input")
        return n

    def string(self) -> str:
        header = self.u29()
        if not header & 1:
            text: str = self._ref(self.strings, header >> 1)
            return text
        n = header >> 1
        try:
            text = self.dec.read_bytes(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AMFDecodeError(f"invalid UTF-8 in AMF3 string: {exc}") from None
        if text:  # the empty string is never sent by reference
            self.strings.append(text)
        return text

    @staticmethod
    def _ref(table: list[Any], index: int) -> Any:
        if index >= len(table):
            raise AMFDecodeError(f"AMF3 reference {index} to an unknown entry")
        return table[index]

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise AMFDecodeError("nesting too deep")
        marker = self.dec.read_u8()
        if marker == _UNDEFINED:
            return UNDEFINED
        if marker == _NULL:
            return None
        if marker in (_FALSE, _TRUE):
            return marker == _TRUE
        if marker == _INTEGER:
            n = self.u29()
            return n - (1 << 29) if n & (1 << 28) else n
        if marker == _DOUBLE:
            return _F64.unpack(self.dec.read_bytes(8))[0]
        if marker == _STRING:
            return self.string()
        if marker in (_XML_DOC, _XML, _DATE, _BYTE_ARRAY):
            return self._simple_object(marker)
        if marker == _ARRAY:
            return self._array(depth)
        if marker == _OBJECT:
            return self._object(depth)
        if marker in (_VECTOR_INT, _VECTOR_UINT, _VECTOR_DOUBLE, _VECTOR_OBJECT):
            return self._vector(marker, depth)
        if marker == _DICTIONARY:
            return self._dictionary(depth)
        raise AMFDecodeError(f"unknown AMF3 marker 0x{marker:02x}")

    def _simple_object(self, marker: int) -> Any:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1)
        value: Any
        if marker == _DATE:
            value = AmfDate(_F64.unpack(self.dec.read_bytes(8))[0])
        else:
            raw = self.dec.read_bytes(header >> 1)
            if marker == _BYTE_ARRAY:
                value = raw
            else:
                try:
                    value = XmlDocument(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise AMFDecodeError(f"invalid UTF-8 in AMF3 XML: {exc}") from None
        self.objects.append(value)
        return value

    def _array(self, depth: int) -> Any:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1)
        dense = self.count(header >> 1)
        assoc = EcmaArray()
        key = self.string()
        if key == "":
            items: list[Any] = []
            self.objects.append(items)
            for _ in range(dense):
                items.append(self.value(depth + 1))
            return items
        # Mixed arrays become an associative array with the dense part under "0", "1", ...
        self.objects.append(assoc)
        while key != "":
            assoc[key] = self.value(depth + 1)
            key = self.string()
        for i in range(dense):
            assoc[str(i)] = self.value(depth + 1)
        return assoc

    def _object(self, depth: int) -> Any:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1)
        if not header & 2:
            traits = self._ref(self.traits, header >> 2)
        else:
            if header & 4:
                raise AMFDecodeError("externalizable AMF3 objects are not supported")
            count = self.count(header >> 4)
            class_name = self.string()
            members = tuple(self.string() for _ in range(count))
            traits = _Traits(class_name, bool(header & 8), members)
            self.traits.append(traits)
        props: dict[str, Any] = {}
        result: Any = TypedObject(traits.class_name, props) if traits.class_name else props
        self.objects.append(result)
        for name in traits.members:
            props[name] = self.value(depth + 1)
        if traits.dynamic:
            key = self.string()
            while key != "":
                props[key] = self.value(depth + 1)
                key = self.string()
        return result

    def _vector(self, marker: int, depth: int) -> Any:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1)
        self.dec.read_u8()  # fixed-length flag: irrelevant once decoded
        items: list[Any] = []
        self.objects.append(items)
        if marker == _VECTOR_OBJECT:
            n = self.count(header >> 1)
            self.string()  # element type name
            for _ in range(n):
                items.append(self.value(depth + 1))
            return items
        size = 8 if marker == _VECTOR_DOUBLE else 4
        n = self.count(header >> 1, size)
        fmt = {_VECTOR_INT: ">%di", _VECTOR_UINT: ">%dI", _VECTOR_DOUBLE: ">%dd"}[marker]
        items.extend(struct.unpack(fmt % n, self.dec.read_bytes(n * size)))
        return items

    def _dictionary(self, depth: int) -> Any:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1)
        n = self.count(header >> 1, 2)
        self.dec.read_u8()  # weak-keys flag
        result: dict[Any, Any] = {}
        self.objects.append(result)
        for _ in range(n):
            key = self.value(depth + 1)
            item = self.value(depth + 1)
            try:
                result[key] = item
            except TypeError:
                raise AMFDecodeError("unhashable AMF3 dictionary key") from None
        return result


def decode_value(dec: ByteReader, depth: int = 0) -> Any:
    """Decode one AMF3 value at ``dec``'s position (just after an AMF0 0x11 marker)."""
    return _Context(dec).value(depth)
