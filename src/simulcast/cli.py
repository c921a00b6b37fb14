"""The ``simulcast`` console entry point.

A well-formed ``simulcast serve [--role R] [--host H] [--port P]`` runs the server directly: the
command line's library (typer, click and what they import, ~1.5 MB) would otherwise stay
resident for the server's whole life. Everything else (the admin commands, ``--help``, an
option the server does not know or a bad value) goes to the typer app in
:mod:`simulcast.commands`, which parses it and reports errors.
"""

from __future__ import annotations

import sys

from simulcast.serve import ROLES, run_server


def plain_serve(argv: list[str]) -> dict[str, str] | None:
    """``serve``'s options by name (``role``, ``host``, ``port``) when ``argv`` is a plain,
    valid ``serve``, else ``None`` (the typer app then parses it)."""
    if not argv or argv[0] != "serve":
        return None
    options: dict[str, str] = {}
    rest = argv[1:]
    while rest:
        flag, eq, value = rest.pop(0).partition("=")
        name = flag[2:]
        if flag not in ("--role", "--host", "--port") or name in options:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        options[name] = value
    if not options.get("port", "0").isdigit() or options.get("role", "all") not in ROLES:
        return None
    return options


def main() -> None:
    """Console entry point."""
    options = plain_serve(sys.argv[1:])
    if options is not None:
        port = options.get("port")
        sys.exit(run_server(options.get("role"), options.get("host"), int(port) if port else None))
    from simulcast.commands import app

    app()
