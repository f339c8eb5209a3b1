"""The ``segflow`` command: a thin layer over the library.

Every command takes ``--db URL`` (default ``SEGFLOW_DATABASE_URL``, else
``sqlite:///segflow.db``); listing and showing commands take ``--json``.
Exit status 0 on success; 1 with one line on stderr when segflow refuses;
2 for a command line it does not understand.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from segflow import __version__, auth, datasets, demo, engine, ingest, segments
from segflow.activation import destinations, links, sync
from segflow.cli import activation as cli_activation
from segflow.cli import output as show
from segflow.cli import remote as cli_remote
from segflow.cli import team as cli_team
from segflow.cli.output import emit_json as _emit_json
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import lost_connection, utcnow
from segflow.db.migrations import upgrade
from segflow.errors import InvalidInput, SegflowError, describe_failure
from segflow.progress import TerminalProgress

DEMO_DATASET = "customers"
DEMO_ROWS = 25_000


#: How long ``worker`` and ``serve`` wait for an unreachable database at start.
START_PATIENCE_S = 120.0


def _open_db(args: argparse.Namespace, settings: Settings) -> Database:
    db = Database(args.db or settings.database_url)
    patience = START_PATIENCE_S if getattr(args, "long_running", False) else 0.0
    deadline = time.monotonic() + patience
    while True:
        try:
            applied = upgrade(db)
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
    workspace = getattr(args, "workspace", None) or settings.workspace
    if workspace != "default":
        try:
            return db.in_workspace(auth.workspace_id(db, workspace))
        except SegflowError:
            db.dispose()
            raise
    return db


def _delimiter(value: str) -> str:
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    return named.get(value.lower(), value)


# ------------------------------------------------------------------- commands


def cmd_import(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    options = ingest.ImportOptions(
        dataset=args.dataset,
        key=args.key,
        mode=args.mode,
        delimiter=_delimiter(args.delimiter) if args.delimiter else None,
        encoding=args.encoding,
    )
    stream: BinaryIO
    if args.path == "-":
        stream, source, total = sys.stdin.buffer, "<stdin>", None
    else:
        try:
            stream = open(args.path, "rb")
        except OSError as exc:
            raise SegflowError(f"cannot open {args.path}: {exc.strerror}") from None
        source, total = args.path, os.fstat(stream.fileno()).st_size
    on_terminal = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = TerminalProgress(f"importing {source}", live=None) if on_terminal else None
    try:
        summary = ingest.import_csv(
            db,
            stream,
            options,
            source=source,
            now=utcnow(),
            total_bytes=total,
            progress=progress,
            settings=settings,
        )
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    _process_dataset(db, args.dataset, summary)
    if args.json:
        _emit_json(summary)
    else:
        show.import_summary(summary)
    return 0


def _process_dataset(db: Database, name: str, summary: dict[str, Any]) -> None:
    """Run the engine on a dataset's segments right after its import committed."""
    dataset = datasets.find_dataset(db, name)
    processed = (
        engine.tick_imported(db, dataset.id, utcnow())
        if dataset is not None
        else {"segments": [], "deferred": None}
    )
    summary["segments"] = processed["segments"]
    summary["segments_deferred"] = processed["deferred"]


def cmd_datasets_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    show.datasets([datasets.dataset_summary(d) for d in datasets.list_datasets(db)], args.json)
    return 0


def cmd_datasets_show(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    info = datasets.describe_dataset(db, args.name)
    if args.sample:
        info["sample"] = datasets.read_records(db, args.name, limit=args.sample)
    show.dataset(info, args.json)
    return 0


def cmd_datasets_delete(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    gone = segments.list_segments(db, dataset=args.name)
    dataset = datasets.delete_dataset(db, args.name)
    also = f", and its {len(gone)} segment{'s' if len(gone) != 1 else ''}" if gone else ""
    print(f"deleted dataset {dataset.name!r} ({dataset.record_count:,} records{also})")
    return 0


DEMO_SEGMENTS: dict[str, Any] = {
    "CA high spenders": {
        "logic": "AND",
        "conditions": [
            {"field": "state", "operator": "equals", "value": "CA"},
            {"field": "lifetime_spend", "operator": "greater_than", "value": 100},
        ],
    },
    "Gmail subscribers": {
        "logic": "AND",
        "conditions": [
            {"field": "email", "operator": "ends_with", "value": "@gmail.com"},
            {"field": "is_subscriber", "operator": "equals", "value": True},
        ],
    },
    "Signed up in the last two years": {
        "conditions": [{"field": "signup_date", "operator": "within_last", "value": 730}]
    },
}


DEMO_DESTINATION = "demo audience file"
DEMO_LINKED_SEGMENT = "CA high spenders"


def _demo_destination(db: Database, settings: Settings, now: Any, path: Path) -> sync.SyncReport:
    """A file destination fed by one demo segment, synced once (idempotent)."""
    if DEMO_DESTINATION not in {d.name for d in destinations.list_destinations(db)}:
        destinations.add_destination(db, DEMO_DESTINATION, destinations.FILE, {"path": path}, now)
    if not any(lk.destination == DEMO_DESTINATION for lk in links.list_links(db)):
        links.link(db, DEMO_LINKED_SEGMENT, DEMO_DESTINATION, now)
    return sync.sync(db, settings, clock=utcnow)


def cmd_demo(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    """Import the synthetic demo customers and create the demo segments (idempotent)."""
    data = demo.csv_bytes(args.rows, seed=args.seed)
    now = utcnow()
    summary = ingest.import_csv(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(dataset=args.dataset, key="id"),
        source=f"demo ({args.rows:,} synthetic customers)",
        now=now,
        total_bytes=len(data),
    )
    _process_dataset(db, args.dataset, summary)
    existing = {s.name for s in segments.list_segments(db)}
    created = [
        segments.create_segment(db, name=name, dataset=args.dataset, rules_json=rules, now=now)
        for name, rules in DEMO_SEGMENTS.items()
        if name not in existing
    ]
    synced = _demo_destination(db, settings, now, Path(args.audience_file))
    if args.json:
        summary["created_segments"] = [s.as_dict() for s in created]
        summary["sync"] = [o.as_dict() for o in synced.outcomes]
        _emit_json(summary)
    else:
        show.import_summary(summary)
        for segment in created:
            print(f"  created segment {segment.name!r}: {segment.member_count:,} members")
        cli_activation.print_sync_report(synced, quiet=True)
        print(f"database: {db.display_url}")
    return 0


def _rules_arg(value: str) -> Any:
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise SegflowError(f"cannot read rules from {value[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--rules is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


def cmd_segments_create(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    segment = segments.create_segment(
        db, name=args.name, dataset=args.dataset, rules_json=_rules_arg(args.rules), now=utcnow()
    )
    show.created_segment(segment.as_dict(), args.json)
    return 0


def cmd_segments_edit(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    if args.rules is None and args.rename is None:
        raise InvalidInput("nothing to change: give --rules and/or --rename")
    before = segments.get_segment(db, args.name)
    segment = segments.edit_segment(
        db,
        args.name,
        now=utcnow(),
        rules_json=None if args.rules is None else _rules_arg(args.rules),
        new_name=args.rename,
    )
    show.edited_segment(segment.as_dict(), before.member_count, args.json)
    return 0


def cmd_segments_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    items = segments.list_segments(db, dataset=args.dataset)
    show.segments([s.as_dict() for s in items], args.json)
    return 0


def cmd_segments_show(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    segment = segments.get_segment(db, args.name)
    recent, _ = segments.list_events(db, args.name, limit=args.events)
    show.segment(segment.as_dict(), recent, args.json)
    return 0


def cmd_segments_members(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    page, cursor = segments.list_members(db, args.name, limit=args.limit, after=args.after)
    show.members(page, cursor, args.json)
    return 0


def cmd_segments_events(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    page, cursor = segments.list_events(db, args.name, limit=args.limit, before=args.before)
    show.events(page, cursor, args.json)
    return 0


def cmd_segments_delete(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    segment = segments.delete_segment(db, args.name)
    print(f"deleted segment {segment.name!r} ({segment.member_count:,} members)")
    return 0


def cmd_segments_explain(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    show.explanation(segments.explain(db, args.name, args.key, utcnow()), args.key, args.json)
    return 0


def cmd_process(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    report = engine.tick(db, utcnow())
    outcomes = [o.as_dict() for o in report.outcomes]
    if args.json:
        _emit_json({"segments": outcomes, "skipped": report.skipped})
    else:
        print(
            f"processed {len(outcomes)} segments: +{report.entered:,} entered, "
            f"-{report.exited:,} left"
        )
        show.outcomes([o for o in outcomes if o["entered"] or o["exited"] or o["error"]])
    return 0


def cmd_worker(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    interval = args.interval or settings.tick_seconds
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        print(
            f"segflow worker: {signal.Signals(signum).name}, stopping after this batch",
            file=sys.stderr,
        )
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"segflow worker: ticking and syncing every {interval}s on {db.display_url}",
        file=sys.stderr,
        flush=True,
    )
    owner = sync.default_owner()
    while not stop.is_set():
        try:
            report = engine.tick(db, utcnow())
            if report.entered or report.exited:
                print(
                    f"segflow worker: +{report.entered:,} entered, -{report.exited:,} left",
                    file=sys.stderr,
                    flush=True,
                )
            synced = sync.sync(db, settings, clock=utcnow, owner=owner, stop=stop.is_set)
            cli_activation.print_sync_report(
                sync.SyncReport([o for o in synced.outcomes if o.requests or o.error or o.paused]),
                sys.stderr,
                quiet=True,
            )
            wait = _sleep_for(db, interval)
        except Exception as exc:
            # A lost database connection or a restarting server: try again
            # next interval rather than dying (what was not committed is redone).
            print(
                f"segflow worker: pass failed ({describe_failure(exc)}); retrying in {interval}s",
                file=sys.stderr,
                flush=True,
            )
            wait = float(interval)
        stop.wait(wait)
    print("segflow worker: stopped", file=sys.stderr)
    return 0


def _sleep_for(db: Database, interval: int) -> float:
    """Until the next tick, or sooner when a sync retry falls due."""
    due = sync.next_due(db)
    if due is None:
        return float(interval)
    return max(0.05, min(float(interval), (due - utcnow()).total_seconds()))


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def cmd_serve(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    import uvicorn

    from segflow.web.app import create_app

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
    app = create_app(db, settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Open event streams would hold a graceful shutdown open forever.
            app.state.segflow.broadcaster.close()
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

    imp = sub.add_parser(
        "import",
        parents=[common, as_json],
        help="import a CSV file into a dataset (creates it on first import)",
        description="Import a CSV file into a dataset. The first import creates the dataset "
        "and fixes its key column; later imports upsert by key.",
    )
    imp.add_argument("path", metavar="PATH", help="CSV file, or - for standard input")
    imp.add_argument("--dataset", required=True, metavar="NAME", help="dataset to import into")
    imp.add_argument(
        "--key",
        metavar="COLUMN",
        help="key column (first import only; default: id, customer_id or email if present)",
    )
    imp.add_argument(
        "--mode",
        choices=ingest.MODES,
        default=ingest.UPSERT,
        help="upsert (default) keeps records absent from the file; replace deletes them",
    )
    imp.add_argument(
        "--delimiter", metavar="C", help="field delimiter (default: detected; 'tab' for tabs)"
    )
    imp.add_argument("--encoding", default="utf-8", metavar="E", help="text encoding (utf-8)")
    imp.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: only on a terminal)",
    )
    imp.set_defaults(func=cmd_import)

    ds = sub.add_parser("datasets", help="list, show or delete datasets")
    ds_sub = ds.add_subparsers(dest="action", required=True, metavar="ACTION")
    ds_list = ds_sub.add_parser("list", parents=[common, as_json], help="list datasets")
    ds_list.set_defaults(func=cmd_datasets_list)
    ds_show = ds_sub.add_parser(
        "show", parents=[common, as_json], help="schema, counts and last import of a dataset"
    )
    ds_show.add_argument("name", metavar="NAME")
    ds_show.add_argument(
        "--sample", type=int, default=0, metavar="N", help="also print the first N records"
    )
    ds_show.set_defaults(func=cmd_datasets_show)
    ds_delete = ds_sub.add_parser("delete", parents=[common], help="delete a dataset")
    ds_delete.add_argument("name", metavar="NAME")
    ds_delete.set_defaults(func=cmd_datasets_delete)

    seg = sub.add_parser("segments", help="create, inspect and change segments")
    seg_sub = seg.add_subparsers(dest="action", required=True, metavar="ACTION")
    rules_help = "rules as JSON, or @FILE to read them from a file"
    sc = seg_sub.add_parser("create", parents=[common, as_json], help="create a segment")
    sc.add_argument("--dataset", required=True, metavar="D")
    sc.add_argument("--name", required=True, metavar="N")
    sc.add_argument("--rules", required=True, metavar="JSON|@FILE", help=rules_help)
    sc.set_defaults(func=cmd_segments_create)
    se = seg_sub.add_parser(
        "edit", parents=[common, as_json], help="change a segment's rules (re-evaluates it)"
    )
    se.add_argument("name", metavar="NAME")
    se.add_argument("--rules", metavar="JSON|@FILE", help=rules_help)
    se.add_argument("--rename", metavar="NEW_NAME", help="give the segment a new name")
    se.set_defaults(func=cmd_segments_edit)
    sl = seg_sub.add_parser("list", parents=[common, as_json], help="list segments")
    sl.add_argument("--dataset", metavar="D", help="only segments of this dataset")
    sl.set_defaults(func=cmd_segments_list)
    ss = seg_sub.add_parser(
        "show", parents=[common, as_json], help="rules, count, last processed, recent events"
    )
    ss.add_argument("name", metavar="NAME")
    ss.add_argument("--events", type=int, default=10, metavar="N", help="recent events (10)")
    ss.set_defaults(func=cmd_segments_show)
    sm = seg_sub.add_parser("members", parents=[common, as_json], help="list members")
    sm.add_argument("name", metavar="NAME")
    sm.add_argument("--limit", type=int, default=100, metavar="N", help="page size (100)")
    sm.add_argument("--after", type=int, metavar="CURSOR", help="continue after this cursor")
    sm.set_defaults(func=cmd_segments_members)
    sv = seg_sub.add_parser("events", parents=[common, as_json], help="enter/exit history")
    sv.add_argument("name", metavar="NAME")
    sv.add_argument("--limit", type=int, default=100, metavar="N", help="page size (100)")
    sv.add_argument("--before", type=int, metavar="CURSOR", help="continue with older events")
    sv.set_defaults(func=cmd_segments_events)
    sd = seg_sub.add_parser("delete", parents=[common], help="delete a segment")
    sd.add_argument("name", metavar="NAME")
    sd.set_defaults(func=cmd_segments_delete)
    sx = seg_sub.add_parser(
        "explain", parents=[common, as_json], help="why a record is (not) a member"
    )
    sx.add_argument("name", metavar="NAME")
    sx.add_argument("key", metavar="KEY")
    sx.set_defaults(func=cmd_segments_explain)

    pr = sub.add_parser(
        "process", parents=[common, as_json], help="run one engine tick (for cron) and exit"
    )
    pr.set_defaults(func=cmd_process)
    wk = sub.add_parser(
        "worker", parents=[common], help="run engine ticks on a timer until stopped"
    )
    wk.add_argument(
        "--interval",
        type=int,
        metavar="S",
        help="seconds between ticks (default $SEGFLOW_TICK_SECONDS or 60)",
    )
    wk.set_defaults(func=cmd_worker, long_running=True)

    cli_activation.register(sub, common, as_json)
    cli_team.register(sub, common, as_json)

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

    dm = sub.add_parser("demo", parents=[common, as_json], help="import synthetic demo customers")
    dm.add_argument("--rows", type=int, default=DEMO_ROWS, help=f"rows (default {DEMO_ROWS:,})")
    dm.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    dm.add_argument("--dataset", default=DEMO_DATASET, help=f"dataset (default {DEMO_DATASET})")
    dm.add_argument(
        "--audience-file",
        default="segflow-demo-audience.jsonl",
        metavar="PATH",
        help="where the demo's file destination writes (default segflow-demo-audience.jsonl)",
    )
    dm.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    db: Database | None = None
    try:
        settings = Settings.from_env()
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
    finally:
        if db is not None:
            db.dispose()
