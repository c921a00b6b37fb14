"""Every router of the HTTP API, gathered in one place."""

from __future__ import annotations

from fastapi import FastAPI

from simulcast.control.api import (
    archives,
    auth,
    hls,
    money,
    public,
    streams,
    system,
    webhooks,
)


def include_routers(app: FastAPI) -> None:
    """Mount every router on the app."""
    for module in (public, auth, streams, money, archives, webhooks, system, hls):
        app.include_router(module.router)
