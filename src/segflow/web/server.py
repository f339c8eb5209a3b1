"""Running the app under uvicorn on a thread: for tests, benchmarks and embedding."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from segflow.config import Settings
from segflow.db import Database
from segflow.web.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    app: FastAPI


@contextmanager
def live_server(
    db: Database,
    settings: Settings | None = None,
    *,
    poll_interval: float = 0.2,
    background: bool = True,
) -> Iterator[LiveServer]:
    """segflow's app on 127.0.0.1 and a free port; with its background work unless
    ``background`` is False (then nothing changes but what requests change)."""
    port = free_port()
    app = create_app(
        db,
        settings or Settings(),
        poll_interval=poll_interval,
        background=background,
        address=("127.0.0.1", port),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="segflow-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app)
    finally:
        # Open event streams would otherwise hold the shutdown open.
        app.state.segflow.broadcaster.close()
        server.should_exit = True
        thread.join(timeout=20)
