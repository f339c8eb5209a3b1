"""CLI commands that run the engine and sync: ``process`` (one tick) and ``worker`` (a loop)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from segflow import engine
from segflow.activation import sync
from segflow.cli import output as show
from segflow.cli.activation import print_sync_report
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.errors import describe_failure
from segflow.worker import Worker


def cmd_process(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    report = engine.tick(db, utcnow())
    outcomes = [o.as_dict() for o in report.outcomes]
    if args.json:
        show.emit_json({"segments": outcomes, "skipped": report.skipped})
    else:
        print(
            f"processed {len(outcomes)} segments: +{report.entered:,} entered, "
            f"-{report.exited:,} left"
        )
        show.outcomes([o for o in outcomes if o["entered"] or o["exited"] or o["error"]])
    return 0


def _print_tick(report: engine.TickReport | None) -> None:
    if report is not None and (report.entered or report.exited):
        print(
            f"segflow worker: +{report.entered:,} entered, -{report.exited:,} left",
            file=sys.stderr,
            flush=True,
        )


def _print_sync(synced: sync.SyncReport) -> None:
    print_sync_report(
        sync.SyncReport([o for o in synced.outcomes if o.requests or o.error or o.paused]),
        sys.stderr,
        quiet=True,
    )


def cmd_worker(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    interval = args.interval or settings.tick_seconds
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        print(
            f"segflow worker: {signal.Signals(signum).name}, stopping after this batch",
            file=sys.stderr,
        )
        stop.set()

    def failed(exc: Exception) -> float:
        # A lost database connection or a restarting server: try again next interval.
        print(
            f"segflow worker: pass failed ({describe_failure(exc)}); retrying in {interval}s",
            file=sys.stderr,
            flush=True,
        )
        return float(interval)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(
        f"segflow worker: ticking and syncing every {interval}s on {db.display_url}",
        file=sys.stderr,
        flush=True,
    )
    worker = Worker(
        db,
        settings,
        interval=interval,
        clock=utcnow,
        stop=stop.is_set,
        after_tick=_print_tick,
        after_sync=_print_sync,
    )
    worker.run(sleep=stop.wait, failed=failed)
    print("segflow worker: stopped", file=sys.stderr)
    return 0


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
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
