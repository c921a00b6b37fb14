"""The AMF value model and errors shared by the AMF0 and AMF3 decoders.

Both :mod:`simulcast.codecs.amf0` and :mod:`simulcast.codecs.amf3` map wire values onto these
Python types; they live apart from both so that AMF0 (which switches into AMF3 on marker 0x11)
imports AMF3 and nothing imports back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol

MAX_DEPTH: Final = 64
"""Deepest container nesting accepted either way (guards the recursion of both directions)."""


class AMFError(Exception):
    """Base class of AMF errors."""


class AMFDecodeError(AMFError, ValueError):
    """The bytes are not valid AMF."""


class AMFEncodeError(AMFError, TypeError):
    """The value has no AMF0 representation."""


class Undefined:
    """The AMF ``undefined`` value (distinct from ``null``); use the :data:`UNDEFINED` singleton."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()


class EcmaArray(dict[str, Any]):
    """An associative array; kept apart from ``dict`` so re-encoding keeps the wire type."""


class XmlDocument(str):
    """An XML document value (AMF0 0x0F, AMF3 0x07/0x0B)."""


@dataclass(frozen=True, slots=True)
class AmfDate:
    """A date: milliseconds since the Unix epoch (UTC) and the obsolete timezone field."""

    milliseconds: float
    timezone: int = 0


@dataclass(slots=True)
class TypedObject:
    """An object carrying an ActionScript class name."""

    class_name: str
    properties: dict[str, Any] = field(default_factory=dict)


class ByteReader(Protocol):
    """The cursor an AMF3 value is read through: the enclosing AMF0 decoder's."""

    @property
    def remaining(self) -> int:
        """Number of unread bytes."""
        ...

    def read_bytes(self, n: int) -> bytes:
        """Consume exactly ``n`` bytes or raise :class:`AMFDecodeError`."""
        ...

    def read_u8(self) -> int:
        """Consume one byte or raise :class:`AMFDecodeError`."""
        ...
