"""The ``segflow`` command: its parser, opening the database, and ``main``.

The commands live one module per group (datasets, segments, run, activation,
team, serve, demo; remote for ``--server``), each registering its parsers.
Every command takes ``--db URL`` (default ``SEGFLOW_DATABASE_URL``, else
``sqlite:///segflow.db``); listing and showing commands take ``--json``.
Exit status 0 on success; 1 with one line on stderr when segflow refuses;
2 for a command line it does not understand.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import sqlalchemy as sa

from segflow import __version__, auth, coltypes
from segflow.cli import activation as cli_activation
from segflow.cli import datasets as cli_datasets
from segflow.cli import demo as cli_demo
from segflow.cli import remote as cli_remote
from segflow.cli import run as cli_run
from segflow.cli import segments as cli_segments
from segflow.cli import serve as cli_serve
from segflow.cli import team as cli_team
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import lost_connection
from segflow.db.migrations import upgrade
from segflow.errors import SegflowError, describe_failure

#: How long ``worker`` and ``serve`` wait for an unreachable database at start.
START_PATIENCE_S = 120.0


def _open_db(args: argparse.Namespace, settings: Settings) -> Database:
    db = Database(args.db or settings.database_url)
    patience = START_PATIENCE_S if getattr(args, "long_running", False) else 0.0
    deadline = time.monotonic() + patience
    notices: list[str] = []
    while True:
        try:
            applied = upgrade(db, notices)
            break
        except sa.exc.OperationalError as exc:
            # A server restarting as a long-running process starts: wait for it.
            if not lost_connection(exc) or time.monotonic() >= deadline:
                db.dispose()
                raise
            print(
                f"segflow: the database is not reachable ({describe_failure(exc)}); retrying",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0)
    if applied:
        print(
            f"segflow: upgraded the database schema to version {applied[-1].version} "
            f"({db.display_url})",
            file=sys.stderr,
        )
    for notice in notices:
        print(f"segflow: {notice}", file=sys.stderr)
    workspace = getattr(args, "workspace", None) or settings.workspace
    if workspace != "default":
        try:
            return db.in_workspace(auth.workspace_id(db, workspace))
        except SegflowError:
            db.dispose()
            raise
    return db


# --------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: $SEGFLOW_DATABASE_URL or sqlite:///segflow.db)",
    )
    common.add_argument(
        "--server",
        metavar="URL",
        help="work through a segflow server's API instead of the database "
        "(default: $SEGFLOW_SERVER)",
    )
    common.add_argument(
        "--token",
        metavar="TOKEN",
        help="API token for --server (default: $SEGFLOW_TOKEN; see segflow tokens create)",
    )
    common.add_argument(
        "--workspace",
        metavar="NAME",
        help="workspace to work in, as an operator on the database "
        "(default: $SEGFLOW_WORKSPACE or 'default')",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="segflow",
        description="Keep marketing audiences up to date from CSV customer records.",
    )
    parser.add_argument("--version", action="version", version=f"segflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cli_datasets.register(sub, common, as_json)
    cli_segments.register(sub, common, as_json)
    cli_run.register(sub, common, as_json)
    cli_activation.register(sub, common, as_json)
    cli_team.register(sub, common, as_json)
    cli_serve.register(sub, common, as_json)
    cli_demo.register(sub, common, as_json)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    db: Database | None = None
    try:
        settings = Settings.from_env()
        coltypes.use_empty_like(settings.empty_like)
        server = getattr(args, "server", None) or settings.server
        if server:
            return cli_remote.run(args, server, getattr(args, "token", None) or settings.token)
        db = _open_db(args, settings)
        result: int = args.func(args, db, settings)
        return result
    except SegflowError as exc:
        print(f"segflow: {exc}", file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        print(f"segflow: database failure: {describe_failure(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "segflow: interrupted; nothing was changed by the unfinished command", file=sys.stderr
        )
        return 130
    except BrokenPipeError:
        # The reader stopped (`segflow ... | head`): what it took was all it
        # wanted. Output still buffered must not fail again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    finally:
        if db is not None:
            db.dispose()
