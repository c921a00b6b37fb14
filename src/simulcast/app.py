"""The full HTTP app (roles ``all`` and ``api``): every route, on a node of ``simulcast.roles``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from simulcast import __version__
from simulcast.control.api.deps import OTHER_SCHEMES, PRIMARY_SCHEME
from simulcast.control.api.errors import BodySizeLimit, install_error_handlers
from simulcast.control.api.fleet import HlsRedirect
from simulcast.control.api.hls import HlsFastPath
from simulcast.control.api.routes import include_routers
from simulcast.roles import EXPOSED_HEADERS, cors_origins, lifespan
from simulcast.settings import Settings

UPLOAD_OVERHEAD_BYTES = 64 * 1024
"""Room for a multipart body's boundaries and headers around the file itself."""

API_DESCRIPTION = """Simulcast's HTTP API: the public (``pk_``) endpoints for embedding a stream,
the management (``sk_`` or session token) endpoints for streams, destinations, money and webhooks.
Every error is JSON ``{"error": "..."}``."""


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document, adjusted to what the API really does.

    FastAPI documents a 422 on every route, but this API answers validation errors with 400; and
    a credential is accepted from several places (API.md's order), which the document lists as
    alternative security schemes of every authenticated operation.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
                    if {PRIMARY_SCHEME: []} in operation.get("security", []):
                        operation["security"] += [{name: []} for name in OTHER_SCHEMES]
            components = schema.setdefault("components", {})
            components.get("schemas", {}).pop("HTTPValidationError", None)
            components.get("schemas", {}).pop("ValidationError", None)
            components.setdefault("securitySchemes", {}).update(OTHER_SCHEMES)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app with every route; components start and stop with its lifespan."""
    app = FastAPI(
        title="Simulcast API",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    include_routers(app)
    origins = cors_origins(settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=EXPOSED_HEADERS,
    )
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        # Uploads are bounded by the account's quota (checked again when stored).
        uploads={"/api/v1/files": settings.files_quota_bytes + UPLOAD_OVERHEAD_BYTES},
    )
    app.add_middleware(
        HlsFastPath, allow_origins=origins, expose_headers=", ".join(EXPOSED_HEADERS)
    )
    if settings.role == "api":
        # Outermost: HLS lives on media nodes; send the viewer to the one that owns the stream.
        app.add_middleware(HlsRedirect)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
