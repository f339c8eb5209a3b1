"""The one HTTP error envelope: its shape, the status of each error, the handlers.

Every error leaves as ``{"error": {"code", "message", "details"}}``, whoever
raises it: a route (a :class:`~segflow.errors.SegflowError`), FastAPI's
request validation, Starlette's routing, the database, a middleware refusing
a request before any route runs, or a bug (whose text never reaches the client).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from segflow.db.engine import lost_connection
from segflow.errors import (
    Conflict,
    Forbidden,
    ImportFailed,
    NotAuthenticated,
    NotFound,
    SegflowError,
    Throttled,
    describe_failure,
)
from segflow.ingest.guard import DeleteNeedsConfirmation
from segflow.web.headers import headers_for

log = logging.getLogger("segflow.web")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error segflow answers, whatever the status."""

    error: ErrorDetail


#: The error statuses, for the OpenAPI description of every route.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "input segflow refuses (invalid_input, invalid_rules, import_failed)"),
        (401, "unauthenticated: team mode, and no valid session or bearer token"),
        (
            403,
            "forbidden: a session's request without its X-CSRF-Token; cross_origin: in the "
            "local mode, a change sent by another web site's page",
        ),
        (404, "not_found"),
        (409, "conflict: a taken name, a second link"),
        (
            413,
            "too_large: an upload over SEGFLOW_MAX_UPLOAD_BYTES, any other body over "
            "SEGFLOW_MAX_JSON_BYTES",
        ),
        (421, "wrong_host: in the local mode, a Host header that does not name this server"),
        (422, "invalid_request: malformed JSON, form or parameters"),
        (429, "throttled: too many failed sign-ins, or event streams open, for this name"),
        (500, "internal: details are in the server's log"),
        (503, "unavailable: the database connection was lost; send the request again"),
    )
}

_STATUSES: tuple[tuple[type[SegflowError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (NotAuthenticated, 401),
    (Forbidden, 403),
    (Throttled, 429),
)


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """The envelope every error answer has."""
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status
    )


def status_for(exc: SegflowError) -> int:
    """The HTTP status of a refusal: 400 unless its kind says otherwise."""
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            return status
    return 400


async def segflow_error(request: Request, exc: SegflowError) -> JSONResponse:
    details: dict[str, Any] | None = None
    if isinstance(exc, ImportFailed):
        details = {"file": exc.file, "line": exc.line, "column": exc.column}
    if isinstance(exc, DeleteNeedsConfirmation):
        # What a confirm step shows: the numbers of the message, as fields.
        details = {**(details or {}), **exc.details()}
    path = getattr(exc, "path", None)
    if path is not None:
        details = {"path": path}
    response = error_response(status_for(exc), exc.code, str(exc), details)
    if isinstance(exc, Throttled):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"location": list(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
    ]
    first = errors[0] if errors else {"location": [], "message": "invalid request"}
    where = ".".join(str(p) for p in first["location"])
    return error_response(
        422, "invalid_request", f"{where}: {first['message']}", {"errors": errors}
    )


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    return error_response(exc.status_code, code, str(exc.detail))


async def database_error(request: Request, exc: sa.exc.DBAPIError) -> JSONResponse:
    # PostgreSQL refuses NUL in text, wherever in a request it came from
    # (a JSON name or rule value); SQLite stores it. Neither is a fault.
    if isinstance(exc, sa.exc.DataError) and "NUL (0x00)" in str(exc.orig):
        return error_response(400, "invalid_input", "text containing a NUL character is refused")
    if lost_connection(exc):
        # A restarting or failing-over server: the transaction rolled back
        # and the pool reconnects for the next request.
        log.warning(
            "%s %s: database connection lost (%s)",
            request.method,
            request.url.path,
            describe_failure(exc),
        )
        response = error_response(
            503,
            "unavailable",
            "the connection to the database was lost; send the request again "
            "(an import is applied whole or not at all)",
        )
        response.headers["Retry-After"] = "1"
        return response
    return await unexpected(request, exc)


#: Characters of a RecursionError's message that reach the log.
LOGGED_MESSAGE_CHARS = 200


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server's log; the client never sees the
    # exception's text, which could carry values or paths.
    if isinstance(exc, RecursionError):
        # Its traceback is thousands of identical frames per request: one
        # line says as much, and a flood of such requests cannot fill the log.
        text = str(exc)[:LOGGED_MESSAGE_CHARS]
        log.error(
            "%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, text
        )
    else:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    response = error_response(500, "internal", "internal error; see the server log")
    # This answer leaves outside the middleware that adds them to every other.
    response.headers.update(headers_for(request.url.path))
    return response


def register(app: FastAPI) -> None:
    """Answer every error an app raises with the envelope (handlers are async: they
    run on the event loop, not the thread pool the routes use)."""
    handlers: list[tuple[type[Exception], Any]] = [
        (SegflowError, segflow_error),
        (RequestValidationError, validation_error),
        (StarletteHTTPException, http_error),
        (sa.exc.DBAPIError, database_error),
        (Exception, unexpected),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)
