"""CLI command ``serve``: the web app, with engine ticks and sync in the background."""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import threading
from typing import Any

from segflow import auth
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import InvalidInput

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _check_exposure(args: argparse.Namespace, db: Database, settings: Settings) -> None:
    """Refuse a non-loopback address without sign-in; warn of team-mode pitfalls."""
    if args.host not in LOOPBACK_HOSTS and not settings.auth:
        raise InvalidInput(
            f"segflow serve binds {args.host!r} only in team mode: without sign-in anyone who "
            "could reach it could read every record. Set SEGFLOW_AUTH=on and add users "
            "(segflow users add), or bind 127.0.0.1."
        )
    if settings.auth:
        if not auth.list_users(db):
            print(
                "segflow: team mode is on but there are no users yet: "
                "segflow users add NAME --member-of default",
                file=sys.stderr,
            )
        if settings.cookie_secure and not args.ssl_certfile:
            print(
                "segflow: sign-in cookies are Secure: browsers send them over HTTPS (or to "
                "localhost) only, so serve behind a TLS proxy or pass --ssl-certfile/--ssl-keyfile",
                file=sys.stderr,
            )


def cmd_serve(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    # Imported here, not above: the web stack costs every other command a third
    # of a second to load (no import cycle is involved).
    import uvicorn

    from segflow.web.app import create_app

    _check_exposure(args, db, settings)
    app = create_app(db, settings, address=(args.host, args.port))

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Open event streams would hold a graceful shutdown open forever.
            app.state.segflow.broadcaster.close()
            _stop_within(STOP_DEADLINE_S)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    scheme = "https" if args.ssl_certfile else "http"
    mode = "team mode" if settings.auth else "local mode, no sign-in"
    print(
        f"segflow: serving {scheme}://{args.host}:{args.port} on {db.display_url} "
        f"({mode}; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down;
    # with these handlers that ends here, so the exit status says "clean".
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    Server(config).run()
    print("segflow: stopped", file=sys.stderr)
    return 0


#: Seconds from SIGTERM or Ctrl-C to the process's end, whatever still runs.
STOP_DEADLINE_S = 40.0


def _stop_within(seconds: float) -> None:
    """End the process ``seconds`` from now if a clean stop has not ended it by then.

    A request thread stuck in a database call (seen once under connections
    dropped mid-run) would keep the interpreter from exiting. Every write is
    one transaction, so ending the process rolls back what was unfinished;
    the threads' stacks are printed first, to see what held the stop.
    """

    def force() -> None:
        print(
            f"segflow: not stopped {seconds:.0f} s after the signal; ending now (unfinished "
            "transactions roll back). What was still running:",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
    sv = sub.add_parser(
        "serve",
        parents=[common],
        help="run the web app, engine ticks and sync in one process",
        description="Serve the web app and API at http://HOST:PORT while ticking segments and "
        "syncing destinations in the background. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    sv.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate")
    sv.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    sv.set_defaults(func=cmd_serve, long_running=True)
