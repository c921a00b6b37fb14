"""Every API error is JSON ``{"error": "<sentence>", ...}``: never HTML, never a trace."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("simulcast.api")

_T = TypeVar("_T")


class ApiError(Exception):
    """An error answered as ``{"error": message, **extra}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def not_found(what: str) -> ApiError:
    """A 404 naming what was not found."""
    return ApiError(404, f"{what} not found")


def found_or_404(row: _T | None, what: str) -> _T:
    """``row``, or the 404 naming ``what`` when the lookup found none (lookups are scoped to
    the account, so another account's object answers the same as a missing one)."""
    if row is None:
        raise not_found(what)
    return row


def with_message(status: int, message: str) -> ApiError:
    """An error whose body also carries ``message`` (the same sentence), for endpoints whose
    success body has one (API.md): a client printing ``data["message"]`` works either way."""
    exc = ApiError(status, message)
    exc.extra["message"] = message
    return exc


def _describe_validation(errors: Sequence[Any]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "Malformed JSON body", None
    if kind == "missing" and field is None:
        return "Request body is required", None
    msg = first.get("msg", "invalid value")
    if field:
        return f"Invalid field '{field}': {msg}", field
    return f"Invalid request: {msg}", None


def error_response(exc: ApiError) -> JSONResponse:
    """The JSON response of an :class:`ApiError`."""
    return JSONResponse(
        {"error": exc.message, **exc.extra}, status_code=exc.status, headers=exc.headers
    )


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    errors = list(exc.errors())  # type: ignore[attr-defined]  # a RequestValidationError
    message, field = _describe_validation(errors)
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=400)


_REASONS = {
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large (limit 1 MiB)",
}


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    message = _REASONS.get(exc.status_code) or detail or "Request failed"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "Internal server error"}, status_code=500)


def install_error_handlers(app: Starlette, *, validation: bool = True) -> None:
    """Map every exception the API can raise to the JSON error shape.

    ``validation``: the app is FastAPI's and validates requests (a media node's plain Starlette
    app validates nothing, and does not load FastAPI).
    """
    app.add_exception_handler(ApiError, _api_error)
    if validation:
        from fastapi.exceptions import RequestValidationError

        app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, uploads: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = dict(uploads or {})
        """Exact paths that take larger bodies (file uploads), with their own limit."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload_limit = self.uploads.get(scope.get("path", ""))
        if upload_limit is not None:
            await self._limited(scope, receive, send, upload_limit)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._reject(send, declared < 0)
                    return
        await self._limited(scope, receive, send, self.max_bytes)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Run the app, failing the request (413) once its streamed body passes ``limit``."""
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException: FastAPI turns any other error while it reads a JSON or
                    # form body into a 400, which misnamed a (chunked) body over the limit.
                    too_large = "Request body too large"
                    if limit == self.max_bytes:
                        too_large += " (limit 1 MiB)"
                    raise StarletteHTTPException(413, too_large)
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, send: Send, malformed: bool) -> None:
        status = 400 if malformed else 413
        body = (
            b'{"error":"Invalid Content-Length header"}'
            if malformed
            else b'{"error":"Request body too large (limit 1 MiB)"}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
