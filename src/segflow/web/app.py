"""Builds the FastAPI application: routes, error format, upload limit, lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segflow import __version__
from segflow.config import Settings
from segflow.db.engine import Database, lost_connection
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
from segflow.web import api, auth, pages
from segflow.web.broadcaster import Broadcaster
from segflow.web.runtime import Runtime
from segflow.web.state import AppState

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("segflow.web")


def _status_for(exc: SegflowError) -> int:
    for kind, status in (
        (NotFound, 404),
        (Conflict, 409),
        (NotAuthenticated, 401),
        (Forbidden, 403),
        (Throttled, 429),
    ):
        if isinstance(exc, kind):
            return status
    return 400


class UploadLimit:
    """Refuses request bodies over the limit with 413, before reading them whole.

    A declared Content-Length over the limit is refused at once; a body sent
    without one is counted as it arrives and cut off when it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = api.error_response(
            413,
            "too_large",
            f"the request body is larger than the limit of {self.limit:,} bytes "
            "(SEGFLOW_MAX_UPLOAD_BYTES)",
        )
        await response({"type": "http"}, _no_receive, send)


class RefuseNul:
    """Refuses NUL characters in the path or query: no stored value can hold one,
    and PostgreSQL refuses them in text parameters."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower()
        ):
            response = api.error_response(
                400, "invalid_input", "the address contains a NUL character, which segflow refuses"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    db: Database, settings: Settings, *, background: bool = True, poll_interval: float = 1.0
) -> FastAPI:
    """The app; with ``background`` it also runs engine ticks and sync while it serves."""
    broadcaster = Broadcaster(db, interval=poll_interval)
    state = AppState(db=db, settings=settings, broadcaster=broadcaster)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broadcaster.start()
        runtime = None
        if background:
            runtime = Runtime(db, settings, broadcaster)
            state.wake = runtime.wake
            runtime.start()
        try:
            yield
        finally:
            broadcaster.close()
            if runtime is not None:
                runtime.stop()

    app = FastAPI(
        title="segflow",
        version=__version__,
        description="Keeps marketing audiences up to date: datasets, segments, live counts, "
        "Customer Match sync.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.segflow = state

    @app.exception_handler(SegflowError)
    async def segflow_error(request: Request, exc: SegflowError) -> Any:
        details: dict[str, Any] | None = None
        if isinstance(exc, ImportFailed):
            details = {"file": exc.file, "line": exc.line, "column": exc.column}
        path = getattr(exc, "path", None)
        if path is not None:
            details = {"path": path}
        response = api.error_response(_status_for(exc), exc.code, str(exc), details)
        if isinstance(exc, Throttled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        errors = [
            {"location": list(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        first = errors[0] if errors else {"location": [], "message": "invalid request"}
        where = ".".join(str(p) for p in first["location"])
        return api.error_response(
            422, "invalid_request", f"{where}: {first['message']}", {"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return api.error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(sa.exc.DBAPIError)
    async def database_error(request: Request, exc: sa.exc.DBAPIError) -> Any:
        # PostgreSQL refuses NUL in text, wherever in a request it came from
        # (a JSON name or rule value); SQLite stores it. Neither is a fault.
        if isinstance(exc, sa.exc.DataError) and "NUL (0x00)" in str(exc.orig):
            return api.error_response(
                400, "invalid_input", "text containing a NUL character is refused"
            )
        if lost_connection(exc):
            # A restarting or failing-over server: the transaction rolled back
            # and the pool reconnects for the next request.
            log.warning(
                "%s %s: database connection lost (%s)",
                request.method,
                request.url.path,
                describe_failure(exc),
            )
            response = api.error_response(
                503,
                "unavailable",
                "the connection to the database was lost; send the request again "
                "(an import is applied whole or not at all)",
            )
            response.headers["Retry-After"] = "1"
            return response
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Any:
        # The traceback goes to the server's log; the client never sees the
        # exception's text, which could carry values or paths.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return api.error_response(500, "internal", "internal error; see the server log")

    app.include_router(api.router)
    app.include_router(auth.router, responses=api.ERRORS)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Outermost last: NUL check, then who is asking, then the body's size.
    app.add_middleware(UploadLimit, limit=settings.max_upload_bytes)
    app.add_middleware(auth.Authenticate, state=state)
    app.add_middleware(RefuseNul)
    return app
