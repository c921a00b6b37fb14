"""Configurations of the v1 dialect: element graphs, their validation, templates and overrides.

A configuration is a list of elements ``{"id", "type", "title", "settings", "inputs"}`` (V1.md).
Validation is pure: it takes the account's destination and file ids as arguments, so the same
rules check a saved configuration, a launch's overrides and a ``PATCH`` of a running instance's
overrides. Every refusal names the element and the field.

Processing runs where an element asks for it (a video player, an HTML overlay, an output's
``format``, ``reframe`` or ``encoding``, an input's ``audioGainPercent``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, get_args
from urllib.parse import urlsplit

from simulcast.engine import ElementSpec, ElementType

ELEMENT_TYPES: tuple[str, ...] = get_args(ElementType)
MAX_DESTINATIONS = 6
MAX_ELEMENTS = 64
_ID = re.compile(r"^([a-z]+)-([1-9][0-9]{0,5})$")

SETTINGS: dict[str, frozenset[str]] = {
    "inputstream": frozenset({"format", "pullUrl", "audioGainPercent"}),
    "videoplayer": frozenset({"file", "loop"}),
    "switch": frozenset({"input"}),
    "failover": frozenset(
        {"mode", "image", "backupInput", "recovery", "lowBitrateKbps", "webhookUrl"}
    ),
    "htmloverlay": frozenset({"url", "visible", "fps"}),
    "splitter": frozenset(),
    "outputstream": frozenset({"destinations", "format", "reframe", "encoding"}),
}
"""Every setting V1.md names, per element type (known names refused later still count as known)."""

INPUT_FORMATS = ("horizontal", "vertical", "dualhd-2640", "dualhd-2000", "dualhd-1760")
OUTPUT_FORMATS = ("source", "horizontal", "vertical")
ENCODING_LIMITS: dict[str, tuple[int, int]] = {
    "width": (16, 3840),
    "height": (16, 3840),
    "fps": (1, 60),
    "videoBitrateKbps": (100, 50_000),
    "audioBitrateKbps": (16, 512),
}
"""An output's ``encoding`` fields and their ranges."""
SOURCE_TYPES = frozenset({"inputstream", "videoplayer"})


class ConfigError(ValueError):
    """A configuration, override or launch body is invalid; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# --- Templates --------------------------------------------------------------------------------


def _el(id_: str, title: str, inputs: Sequence[str] = (), **settings: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "type": id_.rsplit("-", 1)[0],
        "title": title,
        "settings": settings,
        "inputs": list(inputs),
    }


TEMPLATES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "multistream": (
        "One input sent as is to up to 6 destinations.",
        [
            _el("inputstream-1", "Input"),
            _el("outputstream-1", "Output", ["inputstream-1"], destinations=[]),
        ],
    ),
    "failover": (
        "One input protected by a failover: when the input drops, destinations get the slate "
        "until it is back.",
        [
            _el("inputstream-1", "Input"),
            _el("failover-1", "Failover", ["inputstream-1"], mode="image"),
            _el("outputstream-1", "Output", ["failover-1"], destinations=[]),
        ],
    ),
    "two devices": (
        "Two inputs (e.g. a camera and a phone) behind a switch, protected by a failover: "
        "change the switch's input to shift between devices without a gap.",
        [
            _el("inputstream-1", "Device 1"),
            _el("inputstream-2", "Device 2"),
            _el("switch-1", "Switch", ["inputstream-1", "inputstream-2"], input="inputstream-1"),
            _el("failover-1", "Failover", ["switch-1"], mode="image"),
            _el("outputstream-1", "Output", ["failover-1"], destinations=[]),
        ],
    ),
}


def template(name: str) -> list[dict[str, Any]] | None:
    """A copy of a template's elements by name (case, ``-`` and ``_`` read as spaces)."""
    key = re.sub(r"[-_\s]+", " ", name.strip().lower())
    found = TEMPLATES.get(key)
    return copy.deepcopy(found[1]) if found else None


# --- Validation -------------------------------------------------------------------------------


def _field(element_id: str, *parts: str) -> str:
    return ".".join((element_id, *parts))


def _check_url(value: object, schemes: tuple[str, ...], element_id: str, name: str) -> str:
    f = _field(element_id, "settings", name)
    if not isinstance(value, str) or len(value) > 2048:
        raise ConfigError(f, f"Element '{element_id}': {name} must be a URL string")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError:
        raise ConfigError(f, f"Element '{element_id}': {name} is not a valid URL") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ConfigError(
            f, f"Element '{element_id}': {name} must be a {'/'.join(schemes)} URL with a host"
        )
    return value


def _check_int(value: object, element_id: str, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(
            _field(element_id, "settings", name),
            f"Element '{element_id}': {name} must be an integer from {lo} to {hi}",
        )
    return value


def _check_settings(
    element: Mapping[str, Any],
    ids: Collection[str],
    destinations: Collection[str],
    png_files: Collection[str],
    video_files: Collection[str],
) -> None:
    """Check one element's settings values (names were checked against :data:`SETTINGS`)."""
    eid, etype, settings = element["id"], element["type"], element["settings"]

    def sfield(name: str) -> str:
        return _field(eid, "settings", name)

    if etype == "inputstream":
        fmt = settings.get("format", "horizontal")
        if fmt not in INPUT_FORMATS:
            raise ConfigError(
                sfield("format"),
                f"Element '{eid}': format must be one of {', '.join(INPUT_FORMATS)}",
            )
        if settings.get("pullUrl") is not None:
            _check_url(settings["pullUrl"], ("rtmp", "rtmps", "srt"), eid, "pullUrl")
        if "audioGainPercent" in settings:
            _check_int(settings["audioGainPercent"], eid, "audioGainPercent", 0, 1000)
    elif etype == "htmloverlay":
        if settings.get("url") is not None:
            _check_url(settings["url"], ("http", "https"), eid, "url")
        if not isinstance(settings.get("visible", True), bool):
            raise ConfigError(sfield("visible"), f"Element '{eid}': visible must be true or false")
        if settings.get("fps") is not None:
            _check_int(settings["fps"], eid, "fps", 1, 60)
    elif etype == "videoplayer":
        file_id = settings.get("file")
        if not isinstance(file_id, str) or file_id not in video_files:
            raise ConfigError(
                sfield("file"),
                f"Element '{eid}': file must be the id of an uploaded MP4 file of this account",
            )
        if not isinstance(settings.get("loop", True), bool):
            raise ConfigError(sfield("loop"), f"Element '{eid}': loop must be true or false")
    elif etype == "switch":
        chosen = settings.get("input")
        if chosen is not None and chosen not in element["inputs"]:
            raise ConfigError(
                sfield("input"),
                f"Element '{eid}': input must be one of its inputs "
                f"({', '.join(element['inputs'])})",
            )
    elif etype == "failover":
        mode = settings.get("mode", "image")
        if mode not in ("image", "input"):
            raise ConfigError(sfield("mode"), f"Element '{eid}': mode must be 'image' or 'input'")
        if settings.get("recovery", "auto") != "auto":
            raise ConfigError(sfield("recovery"), f"Element '{eid}': recovery must be 'auto'")
        image = settings.get("image")
        if image is not None and (not isinstance(image, str) or image not in png_files):
            raise ConfigError(
                sfield("image"),
                f"Element '{eid}': image must be the id of an uploaded PNG file of this account",
            )
        backup = settings.get("backupInput")
        if mode == "input" and backup is None:
            raise ConfigError(
                sfield("backupInput"), f"Element '{eid}': mode 'input' needs a backupInput"
            )
        if backup is not None and (backup not in ids or backup in element["inputs"]):
            raise ConfigError(
                sfield("backupInput"),
                f"Element '{eid}': backupInput must be another element of the configuration",
            )
        if settings.get("lowBitrateKbps") is not None:
            _check_int(settings["lowBitrateKbps"], eid, "lowBitrateKbps", 1, 1_000_000)
        if settings.get("webhookUrl") is not None:
            _check_url(settings["webhookUrl"], ("http", "https"), eid, "webhookUrl")
            # Deliveries go through the account's signed webhooks only, so far.
            raise ConfigError(
                sfield("webhookUrl"),
                f"Element '{eid}': a per-element webhookUrl is not available yet; subscribe "
                "a webhook (POST /api/webhooks) to failover.activated and failover.recovered",
            )
    elif etype == "outputstream":
        dests = settings.get("destinations", [])
        if not isinstance(dests, list) or not all(isinstance(d, str) for d in dests):
            raise ConfigError(
                sfield("destinations"),
                f"Element '{eid}': destinations must be a list of destination ids",
            )
        if len(dests) > MAX_DESTINATIONS:
            raise ConfigError(
                sfield("destinations"),
                f"Element '{eid}': at most {MAX_DESTINATIONS} destinations per output "
                f"({len(dests)} given)",
            )
        if len(set(dests)) != len(dests):
            raise ConfigError(
                sfield("destinations"), f"Element '{eid}': a destination is listed twice"
            )
        unknown = [d for d in dests if d not in destinations]
        if unknown:
            raise ConfigError(
                sfield("destinations"),
                f"Element '{eid}': destination '{unknown[0]}' is not a destination of this "
                "account (GET /api/v1/destinations)",
            )
        if settings.get("format", "source") not in OUTPUT_FORMATS:
            raise ConfigError(
                sfield("format"),
                f"Element '{eid}': format must be one of {', '.join(OUTPUT_FORMATS)}",
            )
        if settings.get("reframe") not in (None, "center", "auto"):
            raise ConfigError(
                sfield("reframe"), f"Element '{eid}': reframe must be 'center' or 'auto'"
            )
        if settings.get("encoding") is not None:
            _check_encoding(eid, settings["encoding"])


def _check_encoding(eid: str, encoding: object) -> None:
    """An output's ``encoding``: known fields, integers in range."""
    where = _field(eid, "settings", "encoding")
    if not isinstance(encoding, dict):
        raise ConfigError(where, f"Element '{eid}': encoding must be an object")
    for name, value in encoding.items():
        limits = ENCODING_LIMITS.get(name)
        if limits is None:
            known = ", ".join(ENCODING_LIMITS)
            raise ConfigError(
                f"{where}.{name}", f"Element '{eid}': unknown encoding field {name!r} ({known})"
            )
        _check_int(value, eid, f"encoding.{name}", *limits)


def _check_shape(raw: object, index: int) -> dict[str, Any]:
    where = f"elements[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, f"{where} must be an object")
    unknown = set(raw) - {"id", "type", "title", "settings", "inputs"}
    if unknown:
        raise ConfigError(
            f"{where}.{sorted(unknown)[0]}", f"{where}: unknown field {sorted(unknown)[0]!r}"
        )
    etype = raw.get("type")
    if etype not in ELEMENT_TYPES:
        raise ConfigError(
            f"{where}.type",
            f"{where}: unknown element type {etype!r}; known: {', '.join(ELEMENT_TYPES)}",
        )
    raw_id = raw.get("id")
    match = _ID.match(raw_id) if isinstance(raw_id, str) else None
    if match is None or match.group(1) != etype:
        raise ConfigError(
            f"{where}.id", f"{where}: id must be '<type>-<n>', e.g. '{etype}-1' (got {raw_id!r})"
        )
    eid = match.group(0)
    title = raw.get("title", "")
    if not isinstance(title, str) or len(title) > 200:
        raise ConfigError(_field(eid, "title"), f"Element '{eid}': title must be a short string")
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(_field(eid, "settings"), f"Element '{eid}': settings must be an object")
    for name in settings:
        if name not in SETTINGS[etype]:
            known = ", ".join(sorted(SETTINGS[etype])) or "none"
            raise ConfigError(
                _field(eid, "settings", str(name)),
                f"Element '{eid}': unknown setting {name!r} for type '{etype}' (known: {known})",
            )
    inputs = raw.get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise ConfigError(_field(eid, "inputs"), f"Element '{eid}': inputs must be element ids")
    return {"id": eid, "type": etype, "title": title, "settings": dict(settings), "inputs": inputs}


_INPUT_COUNTS: dict[str, tuple[int, int]] = {
    "inputstream": (0, 0),
    "videoplayer": (0, 0),
    "switch": (1, 16),
    "failover": (1, 1),
    "htmloverlay": (1, 1),
    "splitter": (1, 1),
    "outputstream": (1, 1),
}


def _check_graph(elements: Sequence[Mapping[str, Any]]) -> None:
    by_id = {e["id"]: e for e in elements}
    for e in elements:
        lo, hi = _INPUT_COUNTS[e["type"]]
        n = len(e["inputs"])
        if not lo <= n <= hi:
            want = (
                "no inputs"
                if hi == 0
                else (f"exactly {lo} input" if lo == hi else f"{lo} to {hi} inputs")
            )
            raise ConfigError(
                _field(e["id"], "inputs"), f"Element '{e['id']}' takes {want} ({n} given)"
            )
        if len(set(e["inputs"])) != n:
            raise ConfigError(
                _field(e["id"], "inputs"), f"Element '{e['id']}': an input is listed twice"
            )
        for source in e["inputs"]:
            if source not in by_id:
                raise ConfigError(
                    _field(e["id"], "inputs"),
                    f"Element '{e['id']}': input '{source}' is not an element of the configuration",
                )
            if by_id[source]["type"] == "outputstream":
                raise ConfigError(
                    _field(e["id"], "inputs"),
                    f"Element '{e['id']}': '{source}' is an output and cannot feed another element",
                )
    # Cycles: a depth-first walk along inputs (and a failover's backup input).
    upstream = {
        e["id"]: [
            *e["inputs"],
            *([e["settings"]["backupInput"]] if e["settings"].get("backupInput") in by_id else []),
        ]
        for e in elements
    }
    state: dict[str, int] = {}

    def visit(eid: str) -> None:
        state[eid] = 1
        for source in upstream[eid]:
            if state.get(source) == 1:
                raise ConfigError(
                    _field(eid, "inputs"),
                    f"Element '{eid}': its inputs form a cycle through '{source}'",
                )
            if source not in state:
                visit(source)
        state[eid] = 2

    for e in elements:
        if e["id"] not in state:
            visit(e["id"])
    if not any(e["type"] in SOURCE_TYPES for e in elements):
        raise ConfigError("elements", "A configuration needs at least one inputstream")


def validate_elements(
    raw: object,
    *,
    destinations: Collection[str],
    png_files: Collection[str],
    video_files: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The normalized elements of a configuration body; :class:`ConfigError` when invalid.

    ``destinations``, ``png_files`` and ``video_files`` (MP4) are the ids the account has (what
    settings may name).
    """
    if not isinstance(raw, list) or not raw:
        raise ConfigError("elements", "elements must be a non-empty list")
    if len(raw) > MAX_ELEMENTS:
        raise ConfigError("elements", f"at most {MAX_ELEMENTS} elements")
    elements = [_check_shape(item, i) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for e in elements:
        if e["id"] in seen:
            raise ConfigError(_field(e["id"], "id"), f"Element id '{e['id']}' is used twice")
        seen.add(e["id"])
    _check_graph(elements)
    for e in elements:
        _check_settings(e, seen, destinations, png_files, video_files)
    return elements


# --- Overrides --------------------------------------------------------------------------------


def check_override_shape(
    elements: Sequence[Mapping[str, Any]], overrides: object, prefix: str = "overrides"
) -> dict[str, dict[str, Any]]:
    """Check that overrides name elements of the configuration and settings they have."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(prefix, f"{prefix} must be an object keyed by element id")
    types = {e["id"]: e["type"] for e in elements}
    out: dict[str, dict[str, Any]] = {}
    for eid, settings in overrides.items():
        if eid not in types:
            raise ConfigError(
                f"{prefix}.{eid}", f"{prefix}: '{eid}' is not an element of the configuration"
            )
        if not isinstance(settings, dict):
            raise ConfigError(f"{prefix}.{eid}", f"{prefix}.{eid} must be an object of settings")
        for name in settings:
            if name not in SETTINGS[types[eid]]:
                known = ", ".join(sorted(SETTINGS[types[eid]])) or "none"
                raise ConfigError(
                    f"{prefix}.{eid}.{name}",
                    f"{prefix}: element '{eid}' has no setting {name!r} (known: {known})",
                )
        out[eid] = dict(settings)
    return out


def merge_overrides(
    current: Mapping[str, Mapping[str, Any]], patch: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Deep-merge per element and per setting; a ``null`` setting drops that override."""
    merged = {eid: dict(settings) for eid, settings in current.items()}
    for eid, settings in patch.items():
        target = merged.setdefault(eid, {})
        for name, value in settings.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
        if not target:
            merged.pop(eid)
    return merged


def apply_overrides(
    elements: Sequence[Mapping[str, Any]], overrides: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The elements with the overrides' settings laid over their own."""
    return [{**e, "settings": {**e["settings"], **overrides.get(e["id"], {})}} for e in elements]


def effective_elements(
    elements: Sequence[Mapping[str, Any]],
    overrides: object,
    *,
    destinations: Collection[str],
    png_files: Collection[str],
    video_files: Collection[str] = (),
    prefix: str = "overrides",
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Check overrides against a configuration: ``(overrides, merged elements)`` or raise."""
    checked = check_override_shape(elements, overrides, prefix)
    merged = apply_overrides(elements, checked)
    try:
        validate_elements(
            merged, destinations=destinations, png_files=png_files, video_files=video_files
        )
    except ConfigError as exc:
        head = exc.field.split(".", 1)[0]
        field = f"{prefix}.{exc.field}" if head in checked else exc.field
        raise ConfigError(field, str(exc)) from None
    return checked, merged


def destinations_used(elements: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every destination id an outputstream of these elements names."""
    return {
        d
        for e in elements
        if e["type"] == "outputstream"
        for d in e["settings"].get("destinations", [])
    }


def element_specs(
    elements: Sequence[Mapping[str, Any]], image_paths: Mapping[str, str]
) -> list[ElementSpec]:
    """The engine's view of validated elements, defaults filled in.

    A failover's ``image`` and a video player's ``file`` (file ids) become the absolute
    paths of the stored files.
    """
    specs = []
    for e in elements:
        settings = dict(e["settings"])
        if e["type"] == "inputstream":
            settings.setdefault("format", "horizontal")
            settings.setdefault("audioGainPercent", 100)
        elif e["type"] == "switch":
            settings.setdefault("input", e["inputs"][0])
        elif e["type"] == "failover":
            settings.setdefault("mode", "image")
            settings.setdefault("recovery", "auto")
            if settings.get("image") is not None:
                settings["image"] = image_paths[settings["image"]]
        elif e["type"] == "videoplayer":
            settings.setdefault("loop", True)
            settings["file"] = image_paths[settings["file"]]
        elif e["type"] == "outputstream":
            settings.setdefault("destinations", [])
            settings.setdefault("format", "source")
        specs.append(
            ElementSpec(id=e["id"], type=e["type"], settings=settings, inputs=tuple(e["inputs"]))
        )
    return specs


def input_ids(elements: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of the ``inputstream`` elements (each gets its own stream key)."""
    return [e["id"] for e in elements if e["type"] == "inputstream"]


def output_ids(elements: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ids of the ``outputstream`` elements."""
    return [e["id"] for e in elements if e["type"] == "outputstream"]
