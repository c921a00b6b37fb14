"""Every router of the HTTP API, gathered in one place."""

from __future__ import annotations

from fastapi import FastAPI

from simulcast.control.api import (
    archives,
    auth,
    dashboard,
    events,
    fleet,
    hls_route,
    keys,
    lightning,
    money,
    public,
    streams,
    system,
    tips,
    v1_instances,
    v1_resources,
    webhooks,
)


def include_routers(app: FastAPI) -> None:
    """Mount every router on the app."""
    modules = (
        public,
        auth,
        keys,
        streams,
        money,
        fleet,
        lightning,
        tips,
        archives,
        webhooks,
        events,
        v1_resources,
        v1_instances,
        system,
        hls_route,
    )
    for module in (*modules, dashboard):
        app.include_router(module.router)
