"""Columns sealed at rest: :class:`Sealed` stores a value through the engine's ``SecretBox``.

Code reads and writes plain strings (``destination.url``, ``webhook.secret``); the database holds
only Fernet tokens. The box travels with the engine (:func:`attach_box`, done by
``session.create_engine``), so two servers in one process with different keys never mix.

A sealed value is not searchable (each seal is randomized): a column that is looked up keeps a
digest beside it (``streams.stream_key_digest``). The empty string is stored as is: it hides
nothing, and self-hosted destinations have no URL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from simulcast.control.secretbox import SecretBox

_ATTRIBUTE = "simulcast_secret_box"


class Sealed(TypeDecorator[str]):
    """A text column whose values are sealed with the engine's secret box."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Seal on the way in."""
        if not value:
            return value
        return box_of(dialect).seal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """Open on the way out."""
        if not value:
            return None if value is None else str(value)
        return box_of(dialect).open(str(value))


def attach_box(engine: AsyncEngine, box: SecretBox) -> None:
    """Make ``box`` the one :class:`Sealed` columns of ``engine`` use."""
    setattr(engine.sync_engine.dialect, _ATTRIBUTE, box)


def box_of(dialect: Dialect) -> SecretBox:
    """The box attached to the engine of ``dialect``."""
    box = getattr(dialect, _ATTRIBUTE, None)
    if not isinstance(box, SecretBox):
        raise RuntimeError("no secret box attached to this database engine (see attach_box)")
    return box
