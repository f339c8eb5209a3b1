"""CLI commands for segments: ``segments create|edit|list|show|members|events|delete|explain``."""

from __future__ import annotations

import argparse
from typing import Any

from segflow import segments
from segflow.cli import output as show
from segflow.cli.args import rules_arg
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.errors import InvalidInput


def cmd_segments_create(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    segment = segments.create_segment(
        db, name=args.name, dataset=args.dataset, rules_json=rules_arg(args.rules), now=utcnow()
    )
    show.created_segment(segment.as_dict(), args.json)
    return 0


def cmd_segments_edit(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    if args.rules is None and args.rename is None:
        raise InvalidInput("nothing to change: give --rules and/or --rename")
    before = segments.get_segment(db, args.name)
    segment = segments.edit_segment(
        db,
        before.id,
        now=utcnow(),
        rules_json=None if args.rules is None else rules_arg(args.rules),
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
    recent, _ = segments.list_events(db, segment.id, limit=args.events)
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


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
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
