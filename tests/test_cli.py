"""The entry point runs a plain ``serve`` itself and leaves everything else to typer."""

from __future__ import annotations

import pytest

from simulcast.cli import plain_serve


@pytest.mark.parametrize(
    ("argv", "options"),
    [
        (["serve"], {}),
        (["serve", "--role", "media"], {"role": "media"}),
        (
            ["serve", "--role=api", "--host", "127.0.0.1", "--port=8081"],
            {"role": "api", "host": "127.0.0.1", "port": "8081"},
        ),
    ],
)
def test_a_plain_serve_is_parsed_without_typer(argv: list[str], options: dict[str, str]) -> None:
    assert plain_serve(argv) == options


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["migrate"],
        ["accounts", "create", "serve"],
        ["serve", "--help"],
        ["serve", "--role"],
        ["serve", "--role", "bogus"],
        ["serve", "--port", "http"],
        ["serve", "--port", "-1"],
        ["serve", "--port", "1", "--port", "2"],
        ["serve", "--reload"],
        ["serve", "extra"],
    ],
)
def test_anything_else_goes_to_the_typer_app(argv: list[str]) -> None:
    assert plain_serve(argv) is None
