"""CLI commands for datasets: ``import``, ``datasets list|show|retype|delete``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, BinaryIO

from segflow import colformats, datasets, ingest, retype, segments, worker
from segflow.cli import output as show
from segflow.cli.args import delimiter_arg
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.errors import InvalidInput, SegflowError
from segflow.ingest import preview
from segflow.progress import TerminalProgress


def cmd_import(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    options = ingest.ImportOptions(
        dataset=args.dataset,
        key=args.key,
        mode=args.mode,
        delimiter=delimiter_arg(args.delimiter) if args.delimiter else None,
        encoding=args.encoding,
        confirm_delete=args.confirm_delete,
        delete_limit=args.delete_limit,
        dry_run=args.dry_run,
        sample_bytes=sample_bytes(args.sample_mb, args.dry_run),
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
        summary = worker.import_and_tick(
            db,
            stream,
            options,
            source=source,
            clock=utcnow,
            total_bytes=total,
            progress=progress,
            settings=settings,
        )
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if args.json:
        show.emit_json(summary)
    elif summary.get("dry_run"):
        show.import_preview(summary)
        import_notes(summary)
    else:
        show.import_summary(summary)
        import_notes(summary)
    return 0


def sample_bytes(sample_mb: float | None, dry_run: bool) -> int | None:
    """``--sample-mb`` in bytes; refused without ``--dry-run``."""
    if sample_mb is None:
        return None
    if not dry_run:
        raise InvalidInput("--sample-mb reads part of the file, which only --dry-run does")
    return preview.sample_bytes_of(sample_mb)


def import_notes(summary: dict[str, Any]) -> None:
    """What the reader did to fit the file (a dropped column, a ``sep=`` line)."""
    for note in summary.get("notes", []):
        print(f"  note: {note}")


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


def cmd_datasets_retype(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    changed = retype.retype(db, args.name, args.column, args.type, now=utcnow(), fmt=args.format)
    show.retyped(changed.as_dict(), args.json)
    return 0


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
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
        help="key column (first import only; default: the first column named id, customer_id, "
        "email or email_address, ignoring case, spaces, '_' and '-')",
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
        "--confirm-delete",
        action="store_true",
        help="replace mode: go ahead although more records (or destination members) would be "
        "deleted than the delete limit allows",
    )
    imp.add_argument(
        "--delete-limit",
        type=int,
        metavar="PERCENT",
        help="replace mode: ask for --confirm-delete above this share of the dataset's records "
        "or of a linked destination's members (default: SEGFLOW_REPLACE_DELETE_LIMIT, 20)",
    )
    imp.add_argument(
        "--dry-run",
        action="store_true",
        help="read and check the file and say what it would change (records, segments' "
        "enters and exits), storing nothing",
    )
    imp.add_argument(
        "--sample-mb",
        type=float,
        metavar="N",
        help="with --dry-run: a quick look, reading only the file's first N MB (cut after the "
        "last whole row in them; default: the whole file)",
    )
    imp.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: only on a terminal)",
    )
    imp.set_defaults(func=cmd_import)

    ds = sub.add_parser("datasets", help="list, show, retype a column of, or delete datasets")
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
    ds_retype = ds_sub.add_parser(
        "retype",
        parents=[common, as_json],
        help="change a column's type (imports never do)",
        description="Change a column's type. Done only when every stored value fits the "
        "new type and every segment's rules on the column still make sense; otherwise "
        "nothing changes and the values or segments in the way are named. Segments "
        "reading the column are evaluated again in full.",
    )
    ds_retype.add_argument("name", metavar="DATASET")
    ds_retype.add_argument("column", metavar="COLUMN")
    ds_retype.add_argument(
        "type", metavar="TYPE", choices=retype.TYPES, help=", ".join(retype.TYPES)
    )
    ds_retype.add_argument(
        "--format",
        metavar="FORMAT",
        help="how the values are written: for integer and number "
        + ", ".join(repr(f) for f in colformats.NUMBER_FORMATS)
        + "; for date "
        + ", ".join(colformats.DATE_FORMATS)
        + " (default: the column's format where the new type reads it, else plain)",
    )
    ds_retype.set_defaults(func=cmd_datasets_retype)
    ds_delete = ds_sub.add_parser("delete", parents=[common], help="delete a dataset")
    ds_delete.add_argument("name", metavar="NAME")
    ds_delete.set_defaults(func=cmd_datasets_delete)
