"""v1 instance specs and state readers for tests that drive ``LocalEngine`` instances directly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from simulcast.engine import ElementSpec, InstanceEvent, InstanceSpec
from simulcast.media.local_engine import LocalEngine

KEY1 = "a" * 32


KEY2 = "b" * 32


def spec(
    elements: Sequence[ElementSpec],
    destinations: Mapping[str, str],
    *,
    keys: Mapping[str, str] | None = None,
    instance_id: str = "inst-1",
) -> InstanceSpec:
    """An instance of ``elements`` with input keys KEY1, KEY2... in element order."""
    if keys is None:
        inputs = [e.id for e in elements if e.type == "inputstream"]
        keys = dict(zip(inputs, (KEY1, KEY2), strict=False))
    return InstanceSpec(instance_id, 1, elements, keys, destinations)


def output(dest_ids: Sequence[str], source: str) -> ElementSpec:
    """``outputstream-1`` reading ``source``."""
    return ElementSpec("outputstream-1", "outputstream", {"destinations": list(dest_ids)}, [source])


INPUT1 = ElementSpec("inputstream-1", "inputstream", {})


INPUT2 = ElementSpec("inputstream-2", "inputstream", {})


def element_state(engine: LocalEngine, element_id: str, instance_id: str = "inst-1") -> Any:
    """``state`` of one element of a running instance."""
    info = engine.instance(instance_id)
    assert info is not None
    return next(e.state for e in info.elements if e.id == element_id)


def destinations(engine: LocalEngine) -> dict[str, str]:
    """The push state of each destination of ``outputstream-1``."""
    rows = element_state(engine, "outputstream-1")["destinations"]
    return {row["id"]: row["state"] for row in rows}


def events(control: Any, name: str) -> list[InstanceEvent]:
    """The instance events called ``name`` the control plane got so far."""
    return [e for e in control.events if isinstance(e, InstanceEvent) and e.event == name]
