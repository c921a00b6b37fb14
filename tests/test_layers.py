"""The import graph of ``src/simulcast`` points one way and has no circles.

Every ``import`` statement counts: at module level, inside functions and under
``if TYPE_CHECKING:``. A type-only import still makes a lower module know a higher one; the lower
layer types what it needs as a ``typing.Protocol`` instead (``media/sources.py`` and
``media/output.py`` do that for ingest and outputs). Only the implicit import of a module's
parent packages is not counted (their ``__init__`` files hold no code that could close a
circle).

The house, bottom floor first. A room may import its own modules and any room on a floor below,
never a sibling on its own floor, and control reaches the media plane only through the seam:

====  =========================================================================================
0     ``codecs`` (sans-I/O: imports nothing of ours but codecs) | ``support``: ``settings``,
      ``metrics``, ``periodic`` (the one supervision policy of background work and the one
      backoff), ``closing``, ``dialing`` (how a push and a pull connect to a server),
      ``engine`` (the seam's value types and protocols), ``web`` (the templates and static
      files, read by the dashboard routes) and the package's ``__version__``
1     ``media``: the hub, sessions, instances, the Output and source protocols
2     ``ingest`` | ``outputs``: siblings that share nothing but what is below them
3     ``node``: the one module that assembles the media engine with its listeners and outputs
4     ``control``: imports codecs and support only (the media plane through ``engine.py``)
5     ``entry``: ``app`` (the API's FastAPI app), ``roles`` (a node's components by role, and
      a media node's small Starlette app), ``cli`` (the entry point), ``commands``
      (the typer command line), ``serve``, ``__main__``, ``http_protocol``
====  =========================================================================================

A module the table does not place fails the test: place it here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"

FLOORS: list[dict[str, tuple[str, ...]]] = [
    {
        "codecs": ("simulcast.codecs.*",),
        "support": (
            "simulcast",
            "simulcast.settings",
            "simulcast.metrics",
            "simulcast.periodic",
            "simulcast.closing",
            "simulcast.dialing",
            "simulcast.engine",
            "simulcast.web.*",
        ),
    },
    {"media": ("simulcast.media.*",)},
    {"ingest": ("simulcast.ingest.*",), "outputs": ("simulcast.outputs.*",)},
    {"node": ("simulcast.node",)},
    {"control": ("simulcast.control.*",)},
    {
        "entry": (
            "simulcast.app",
            "simulcast.roles",
            "simulcast.cli",
            "simulcast.commands",
            "simulcast.serve",
            "simulcast.__main__",
            "simulcast.http_protocol",
        )
    },
]
"""Rooms by floor, bottom first: a name is that module, ``pkg.*`` the package and all in it."""

SEAM = {"control": {"media", "ingest", "outputs", "node"}}
"""Rooms below a room that it still may not import."""


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}"


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the packages under ``root`` by dotted name (a package by its own)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports(root: Path) -> Iterator[Edge]:
    """Every import between two modules under ``root``, wherever the statement stands."""
    modules = module_names(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for source, path in modules.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # ``from pkg import name``: the submodule ``pkg.name`` if there is one.
                names = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            targets = {resolve(name) for name in names}
            for target in sorted(t for t in targets if t is not None and t != source):
                yield Edge(source, target, path.relative_to(root), node.lineno)


def room(module: str) -> tuple[int, str] | None:
    """The floor and room of a module, or ``None`` when no room claims it."""
    for floor, rooms in enumerate(FLOORS):
        for name, patterns in rooms.items():
            for pattern in patterns:
                package = pattern.removesuffix(".*")
                if module == package or (
                    pattern.endswith(".*") and module.startswith(package + ".")
                ):
                    return floor, name
    return None


def upward(edges: list[Edge]) -> list[str]:
    """Edges that go up a floor, sideways to a sibling room, or through the seam."""
    bad = []
    for edge in edges:
        source, target = room(edge.source), room(edge.target)
        if source is None or target is None:
            continue  # reported by unplaced()
        (s_floor, s_room), (t_floor, t_room) = source, target
        if s_room == t_room:
            continue
        if t_floor > s_floor:
            why = "imports a higher floor"
        elif t_floor == s_floor:
            why = "imports a sibling room"
        elif s_room == "codecs":
            why = "codecs import nothing of ours but codecs"
        elif t_room in SEAM.get(s_room, set()):
            why = "reaches the media plane around engine.py"
        else:
            continue
        bad.append(f"{edge}  ({s_room} -> {t_room}: {why})")
    return bad


def unplaced(root: Path) -> list[str]:
    """Modules no room claims."""
    modules = module_names(root)
    return [f"{path.relative_to(root)}" for name, path in modules.items() if room(name) is None]


def circles(edges: list[Edge]) -> list[list[str]]:
    """Each import circle (a strongly connected set of modules) with the edges inside it."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
        graph.setdefault(edge.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is a few hundred modules
        index[node] = low[node] = len(index)
        stack.append(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(
                    [str(e) for m in sorted(members) for e in graph[m] if e.target in members]
                )

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(root: Path) -> list[str]:
    """Everything wrong with the import graph of the packages under ``root``, one per line."""
    edges = list(imports(root))
    report = [f"not placed in FLOORS: {line}" for line in unplaced(root)]
    report += [f"against the layers: {line}" for line in upward(edges)]
    for number, members in enumerate(circles(edges), 1):
        report += [f"circle {number}: {line}" for line in members]
    return report


def test_imports_point_down_and_never_circle() -> None:
    report = problems(SRC)
    print("\n".join(report))
    assert not report, "import graph of src/simulcast:\n" + "\n".join(report)


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    files = {
        "simulcast/__init__.py": "",
        "simulcast/codecs/__init__.py": "",
        "simulcast/codecs/a.py": "from simulcast.codecs import b\n",
        "simulcast/codecs/b.py": "def f():\n    from . import a\n",
        "simulcast/media/__init__.py": "",
        "simulcast/media/m.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from simulcast.outputs.o import X\n"
        ),
        "simulcast/outputs/__init__.py": "",
        "simulcast/outputs/o.py": "import simulcast.ingest.i\n",
        "simulcast/ingest/__init__.py": "",
        "simulcast/ingest/i.py": "",
        "simulcast/control/__init__.py": "",
        "simulcast/control/c.py": "from simulcast.media import m\nimport simulcast.settings\n",
        "simulcast/settings.py": "",
        "simulcast/stray.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    report = "\n".join(problems(tmp_path))
    assert "not placed in FLOORS: simulcast/stray.py" in report
    assert "simulcast.media.m -> simulcast.outputs.o  (media -> outputs: imports a higher" in report
    assert "simulcast.outputs.o -> simulcast.ingest.i  (outputs -> ingest: imports a sibl" in report
    assert "simulcast.control.c -> simulcast.media.m  (control -> media: reaches" in report
    assert "circle 1: simulcast/codecs/a.py:1: simulcast.codecs.a -> simulcast.codecs.b" in report
    assert "circle 1: simulcast/codecs/b.py:2: simulcast.codecs.b -> simulcast.codecs.a" in report
    assert "settings" not in report  # control may import support
