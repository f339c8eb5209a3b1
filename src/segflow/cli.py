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
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

from segflow import __version__, datasets, demo
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.db.migrations import upgrade
from segflow.errors import SegflowError
from segflow.progress import TerminalProgress

DEMO_DATASET = "customers"
DEMO_ROWS = 25_000


def _open_db(args: argparse.Namespace, settings: Settings) -> Database:
    db = Database(args.db or settings.database_url)
    applied = upgrade(db)
    if applied:
        print(
            f"segflow: upgraded the database schema to version {applied[-1].version} "
            f"({db.display_url})",
            file=sys.stderr,
        )
    return db


def _emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _delimiter(value: str) -> str:
    named = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    return named.get(value.lower(), value)


# ------------------------------------------------------------------- commands


def cmd_import(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    options = datasets.ImportOptions(
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
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = TerminalProgress(f"importing {source}", live=None) if show else None
    try:
        summary = datasets.import_csv(
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
    if args.json:
        _emit_json(summary)
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    created = "created, " if s["created"] else ""
    print(
        f"Imported {s['source']} into dataset {s['dataset']!r} ({created}key {s['key']!r}, "
        f"{s['mode']}) in {s['duration_s']:.1f}s"
    )
    print(
        f"  {s['rows']:,} rows: {s['inserted']:,} inserted, {s['updated']:,} updated, "
        f"{s['unchanged']:,} unchanged, {s['deleted']:,} deleted, {s['rejected']:,} rejected"
    )
    print("  columns: " + ", ".join(f"{c['name']} ({c['type']})" for c in s["columns"]))
    for change in s["schema_changes"]:
        if change["change"] == "added":
            print(f"  new column {change['column']!r} ({change['type']})")
        else:
            print(f"  column {change['column']!r} is now {change['to']} (was {change['from']})")
    for ident in s["identifiers"]:
        print(
            f"  {ident['kind']:<11} column {ident['column']!r}: {ident['valid']:,} valid of "
            f"{ident['non_empty']:,} non-empty"
        )
    if s["duplicate_keys"]:
        print(f"  {s['duplicate_keys']:,} rows repeated an earlier row's key")
    if s["rejects"]:
        shown = s["rejects"][:20]
        print(f"  rejected rows (first {len(shown)} of {s['rejected']:,}; all with --json):")
        for reject in shown:
            print(f"    line {reject['line']}: {reject['reason']}")


def cmd_datasets_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    items = [datasets.dataset_summary(d) for d in datasets.list_datasets(db)]
    if args.json:
        _emit_json(items)
        return 0
    if not items:
        print("no datasets yet; import one with: segflow import FILE.csv --dataset NAME")
        return 0
    width = max(len(i["name"]) for i in items)
    print(f"{'NAME':<{width}}  {'RECORDS':>10}  {'COLUMNS':>7}  KEY  UPDATED")
    for i in items:
        print(
            f"{i['name']:<{width}}  {i['records']:>10,}  {i['columns']:>7}  {i['key']}  "
            f"{i['updated_at']}"
        )
    return 0


def cmd_datasets_show(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    info = datasets.describe_dataset(db, args.name)
    if args.sample:
        info["sample"] = datasets.read_records(db, args.name, limit=args.sample)
    if args.json:
        _emit_json(info)
        return 0
    print(f"dataset {info['name']!r}: {info['records']:,} records, key {info['key']!r}")
    print(f"  created {info['created_at']}, updated {info['updated_at']}")
    width = max([len(c["name"]) for c in info["columns"]] + [6])
    print(f"  {'COLUMN':<{width}}  {'TYPE':<8}  NON-EMPTY")
    for c in info["columns"]:
        print(f"  {c['name']:<{width}}  {c['type']:<8}  {c['non_empty']:,}")
    last = info["last_import"]
    if last:
        for ident in last["identifiers"]:
            print(
                f"  last import: {ident['kind']} column {ident['column']!r} "
                f"{ident['valid']:,} valid of {ident['non_empty']:,}"
            )
    for row in info.get("sample", []):
        print("  " + json.dumps(row, ensure_ascii=False))
    return 0


def cmd_datasets_delete(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    dataset = datasets.delete_dataset(db, args.name)
    print(f"deleted dataset {dataset.name!r} ({dataset.record_count:,} records)")
    return 0


def cmd_demo(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    """Import the synthetic demo customers (idempotent: a re-run changes nothing)."""
    data = demo.csv_bytes(args.rows, seed=args.seed)
    summary = datasets.import_csv(
        db,
        io.BytesIO(data),
        datasets.ImportOptions(dataset=args.dataset, key="id"),
        source=f"demo ({args.rows:,} synthetic customers)",
        now=utcnow(),
        total_bytes=len(data),
    )
    if args.json:
        _emit_json(summary)
    else:
        _print_summary(summary)
        print(f"database: {db.display_url}")
    return 0


# --------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: $SEGFLOW_DATABASE_URL or sqlite:///segflow.db)",
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
        choices=datasets.MODES,
        default=datasets.UPSERT,
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

    dm = sub.add_parser("demo", parents=[common, as_json], help="import synthetic demo customers")
    dm.add_argument("--rows", type=int, default=DEMO_ROWS, help=f"rows (default {DEMO_ROWS:,})")
    dm.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    dm.add_argument("--dataset", default=DEMO_DATASET, help=f"dataset (default {DEMO_DATASET})")
    dm.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    db: Database | None = None
    try:
        settings = Settings.from_env()
        db = _open_db(args, settings)
        result: int = args.func(args, db, settings)
        return result
    except SegflowError as exc:
        print(f"segflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "segflow: interrupted; nothing was changed by the unfinished command", file=sys.stderr
        )
        return 130
    finally:
        if db is not None:
            db.dispose()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
