"""Builds the FastAPI application: routes, error format, middleware, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from segflow import __version__, coltypes
from segflow.config import Settings
from segflow.db.engine import Database
from segflow.web import api, auth, errors, pages
from segflow.web.broadcaster import Broadcaster
from segflow.web.headers import SecurityHeaders
from segflow.web.middleware import BodyLimit, LocalGuard, RefuseNul, local_hosts
from segflow.web.runtime import Runtime
from segflow.web.state import AppState

STATIC = Path(__file__).parent / "static"


def _lifespan(
    state: AppState, *, background: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the broadcaster (and with ``background`` the ticks and sync) while serving."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.broadcaster.start()
        runtime = None
        if background:
            runtime = Runtime(state.db, state.settings, state.broadcaster)
            state.wake = runtime.wake
            runtime.start()
        try:
            yield
        finally:
            state.broadcaster.close()
            if runtime is not None:
                runtime.stop()

    return lifespan


def create_app(
    db: Database,
    settings: Settings,
    *,
    background: bool = True,
    poll_interval: float = 1.0,
    address: tuple[str, int] | None = None,
) -> FastAPI:
    """The app; with ``background`` it also runs engine ticks and sync while it serves.

    ``address`` is the host and port the server listens on: in the local mode
    only requests naming it (or localhost) by ``Host`` are answered. None, for
    an app not served on a socket of its own, checks no ``Host``.
    """
    coltypes.use_empty_like(settings.empty_like)
    broadcaster = Broadcaster(db, interval=poll_interval)
    state = AppState(db=db, settings=settings, broadcaster=broadcaster)
    app = FastAPI(
        title="segflow",
        version=__version__,
        description="Keeps marketing audiences up to date: datasets, segments, live counts, "
        "Customer Match sync.",
        lifespan=_lifespan(state, background=background),
        docs_url=None,
        redoc_url=None,
    )
    app.state.segflow = state
    errors.register(app)
    app.include_router(api.router)
    app.include_router(auth.router, responses=errors.ERRORS)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        # Asked for by clients that read no <link rel="icon">; an SVG is what we have.
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    # Outermost last: the headers every answer has, then (local mode) other
    # sites' pages, the NUL check, who is asking, and the body's size.
    app.add_middleware(
        BodyLimit,
        upload_limit=settings.max_upload_bytes,
        json_limit=settings.max_json_bytes,
        upload_paths=api.UPLOAD_PATHS,
    )
    app.add_middleware(auth.Authenticate, state=state)
    app.add_middleware(RefuseNul)
    if not settings.auth:
        # Team mode needs no such guard: every request there carries a sign-in
        # that another site's page cannot use (see the README's Team mode).
        hosts = local_hosts(*address) if address is not None else None
        app.add_middleware(LocalGuard, hosts=hosts)
    app.add_middleware(SecurityHeaders)
    return app
