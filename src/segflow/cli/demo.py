"""CLI command ``demo``: synthetic customers, three segments and a file destination."""

from __future__ import annotations

import argparse
import datetime as dt
import io
from pathlib import Path
from typing import Any

from segflow import demo, ingest, segments, worker
from segflow.activation import destinations, links, sync
from segflow.cli import output as show
from segflow.cli.activation import print_sync_report
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow

DEMO_DATASET = "customers"
DEMO_ROWS = 25_000

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


def _demo_destination(
    db: Database, settings: Settings, now: dt.datetime, path: Path
) -> sync.SyncReport:
    """A file destination fed by one demo segment, synced once (idempotent)."""
    if DEMO_DESTINATION not in {d.name for d in destinations.list_destinations(db)}:
        destinations.add_destination(db, DEMO_DESTINATION, destinations.FILE, {"path": path}, now)
    if not any(lk.destination == DEMO_DESTINATION for lk in links.list_links(db)):
        links.link(db, DEMO_LINKED_SEGMENT, DEMO_DESTINATION, now)
    return sync.sync(db, settings, clock=utcnow)


def cmd_demo(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    """Import the synthetic demo customers and create the demo segments (idempotent)."""
    data = demo.csv_bytes(args.rows, seed=args.seed)
    summary = worker.import_and_tick(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(dataset=args.dataset, key="id"),
        source=f"demo ({args.rows:,} synthetic customers)",
        clock=utcnow,
        total_bytes=len(data),
    )
    now = utcnow()
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
        show.emit_json(summary)
    else:
        show.import_summary(summary)
        for segment in created:
            print(f"  created segment {segment.name!r}: {segment.member_count:,} members")
        print_sync_report(synced, quiet=True)
        print(f"database: {db.display_url}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
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
