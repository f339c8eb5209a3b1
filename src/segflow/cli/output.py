"""What the CLI prints, from plain dicts.

The same dicts come from the library (working on the database) and from the
API (``--server``), so a command prints the same either way.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from segflow.ingest import consent


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def outcomes(items: list[dict[str, Any]]) -> None:
    for o in items:
        if o["error"]:
            print(f"  segment {o['name']!r}: {o['error']}")
        else:
            print(
                f"  segment {o['name']!r}: +{o['entered']:,} entered, -{o['exited']:,} left, "
                f"{o['member_count']:,} members ({o['strategy']})"
            )


def _typed(column: dict[str, Any]) -> str:
    """``number`` or ``number, 1.234,56``: a column's type with its format if it has one."""
    return f"{column['type']}, {column['format']}" if column.get("format") else column["type"]


def import_summary(s: dict[str, Any]) -> None:
    created = "created, " if s["created"] else ""
    print(
        f"Imported {s['source']} into dataset {s['dataset']!r} ({created}key {s['key']!r}, "
        f"{s['mode']}) in {s['duration_s']:.1f}s"
    )
    print(
        f"  {s['rows']:,} rows: {s['inserted']:,} inserted, {s['updated']:,} updated, "
        f"{s['unchanged']:,} unchanged, {s['deleted']:,} deleted, {s['rejected']:,} rejected"
    )
    print("  columns: " + ", ".join(f"{c['name']} ({_typed(c)})" for c in s["columns"]))
    for change in s["schema_changes"]:
        if change["change"] == "added":
            print(f"  new column {change['column']!r} ({change['type']})")
        else:
            print(f"  column {change['column']!r} is now {change['to']} (was {change['from']})")
    for line in misfit_lines(s.get("misfits", [])):
        print(f"  {line}")
    for ident in s["identifiers"]:
        print(
            f"  {ident['kind']:<11} column {ident['column']!r}: {ident['valid']:,} valid of "
            f"{ident['non_empty']:,} non-empty"
        )
    for line in consent.describe(s.get("consent", [])):
        print(f"  consent {line}")
    for kind, count in s.get("identifier_members", {}).get("several", {}).items():
        if count:
            print(f"  {plural(count, 'record')} with two or more distinct valid {kind} values")
    if s["duplicate_keys"]:
        repeated = plural(s["duplicate_keys"], "row")
        print(f"  {repeated} repeated an earlier row's key (the later row was rejected)")
    outcomes(s.get("segments", []))
    if s.get("segments_deferred"):
        print(f"  {s['segments_deferred']}")
    rejected_rows(s, "rejected rows")


def import_preview(s: dict[str, Any]) -> None:
    """A dry run's summary, told as what the import would do."""
    what = "a new dataset" if s["created"] else "dataset"
    print(
        f"Preview of {s['source']} for {what} {s['dataset']!r} (key {s['key']!r}, {s['mode']}); "
        "nothing was stored"
    )
    sample = s.get("sample") or {}
    read = "the whole file" if sample.get("whole_file", True) else "a sample of the file"
    bom = f" with a {s['bom'].upper()} byte order mark" if s.get("bom") else ""
    delimiter = {"\t": "tab"}.get(s["delimiter"], repr(s["delimiter"]))
    print(
        f"  read {read} ({s['bytes']:,} bytes, {plural(s['rows'], 'row')}): encoding "
        f"{s.get('encoding', '?')}{bom}, delimiter {delimiter}, header on line "
        f"{s.get('header_line', 1)}"
    )
    print(
        f"  would insert {s['inserted']:,}, update {s['updated']:,}, delete {s['deleted']:,}; "
        f"{s['unchanged']:,} unchanged, {s['rejected']:,} rejected"
    )
    guard = s.get("delete_guard") or {}
    if guard.get("needs_confirmation"):
        lost = "".join(
            f", {d['members_removed']:,} of {d['members']:,} members of {d['destination']!r}"
            for d in guard["destinations"]
            if d["members_removed"]
        )
        print(
            f"  the deletes need confirming (--confirm-delete): {guard['would_delete']:,} of "
            f"{guard['records']:,} records{lost}, over the {guard['limit_percent']}% limit"
        )
    candidates = s.get("key_candidates", [])
    if candidates:
        print("  key candidates:")
        for c in candidates:
            chosen = " (the key)" if c["chosen"] else ""
            if c["unique"]:
                state = "unique, every row has one"
            else:
                parts = []
                if c["duplicates"]:
                    parts.append(plural(c["duplicates"], "repeated value"))
                if c["empty"]:
                    parts.append(plural(c["empty"], "empty cell"))
                state = "not unique: " + ", ".join(parts or ["no rows"])
            print(f"    {c['column']}{chosen}: {state}")
    print("  columns:")
    width = max([len(c["name"]) for c in s["columns"]] + [4])
    for c in s["columns"]:
        examples = ", ".join(repr(e) for e in c.get("examples", [])) or "no values"
        line = f"    {c['name']:<{width}}  {_typed(c):<20} e.g. {examples}"
        tokens = c.get("empty_like") or {}
        if tokens:
            line += "; empty-like: " + ", ".join(f"{t!r} x{n:,}" for t, n in tokens.items())
        print(line)
    for ident in s["identifiers"]:
        print(
            f"  {ident['kind']} column {ident['column']!r}: {ident['valid']:,} valid of "
            f"{ident['non_empty']:,} non-empty"
        )
    for line in misfit_lines(s.get("misfits", [])):
        print(f"  {line}")
    for change in s["schema_changes"]:
        if change["change"] == "added":
            print(f"  would add column {change['column']!r} ({change['type']})")
        else:
            print(
                f"  column {change['column']!r} would become {change['to']} (is {change['from']})"
            )
    for o in s.get("segments", []):
        if o["error"]:
            print(f"  segment {o['name']!r}: {o['error']}")
        else:
            print(
                f"  segment {o['name']!r}: would gain {o['entered']:,} and lose {o['exited']:,} "
                f"members, to {o['member_count']:,}"
            )
    rejected_rows(s, "rows it would reject")


#: How a value of each type is called in "5 values are not numbers".
_KIND_WORDS = {
    "integer": "whole numbers",
    "number": "numbers",
    "boolean": "true/false values",
    "date": "dates (YYYY-MM-DD)",
    "datetime": "date-times (ISO 8601)",
}


def misfit_lines(misfits: list[dict[str, Any]]) -> list[str]:
    """ "Lifetime Value: 5 values are not numbers, e.g. line 14 'N/A?'" for each kept column."""
    out = []
    for m in misfits:
        examples = ", ".join(f"line {e['line']} {e['value']!r}" for e in m["examples"])
        values = "1 value is not" if m["count"] == 1 else f"{m['count']:,} values are not"
        out.append(
            f"{m['column']}: {values} {_KIND_WORDS.get(m['type'], m['type'])}, e.g. {examples}; "
            f"the column stays {m['type']} and those cells have no {m['type']} value "
            f"(segflow datasets retype changes a column's type)"
        )
    return out


def retyped(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(info)
        return
    new = _typed({"type": info["to"], "format": info.get("format")})
    old = _typed({"type": info["from"], "format": info.get("from_format")})
    if new == old:
        print(f"column {info['column']!r} of dataset {info['dataset']!r} is {new} already")
        return
    print(
        f"column {info['column']!r} of dataset {info['dataset']!r} is now {new} "
        f"(was {old}; {plural(info['values'], 'stored value')})"
    )
    if info["segments"]:
        names = ", ".join(repr(name) for name in info["segments"])
        print(f"  evaluated again in full at the next tick: {names}")


def datasets(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(items)
        return
    if not items:
        print("no datasets yet; import one with: segflow import FILE.csv --dataset NAME")
        return
    width = max([len(i["name"]) for i in items] + [4])
    key_width = max([len(i["key"]) for i in items] + [3])
    print(f"{'NAME':<{width}}  {'RECORDS':>10}  {'COLUMNS':>7}  {'KEY':<{key_width}}  UPDATED")
    for i in items:
        print(
            f"{i['name']:<{width}}  {i['records']:>10,}  {i['columns']:>7}  "
            f"{i['key']:<{key_width}}  {i['updated_at']}"
        )


def dataset(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(info)
        return
    print(f"dataset {info['name']!r}: {info['records']:,} records, key {info['key']!r}")
    print(f"  created {info['created_at']}, updated {info['updated_at']}")
    width = max([len(c["name"]) for c in info["columns"]] + [6])
    kinds = [_typed(c) for c in info["columns"]]
    kind_width = max([len(k) for k in kinds] + [4])
    print(f"  {'COLUMN':<{width}}  {'TYPE':<{kind_width}}  NON-EMPTY")
    for c, kind in zip(info["columns"], kinds, strict=True):
        print(f"  {c['name']:<{width}}  {kind:<{kind_width}}  {c['non_empty']:,}")
    last = info["last_import"]
    if last:
        for ident in last["identifiers"]:
            print(
                f"  last import: {ident['kind']} column {ident['column']!r} "
                f"{ident['valid']:,} valid of {ident['non_empty']:,}"
            )
        for line in consent.describe(last.get("consent", [])):
            print(f"  last import: consent {line}")
    for row in info.get("sample", []):
        print("  " + json.dumps(row, ensure_ascii=False))


def segments(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(items)
        return
    if not items:
        print(
            "no segments yet; create one with: segflow segments create --dataset D --name N "
            "--rules JSON"
        )
        return
    width = max(len(s["name"]) for s in items)
    print(f"{'NAME':<{width}}  {'DATASET':<12}  {'MEMBERS':>10}  LAST PROCESSED")
    for s in items:
        when = s["last_processed_at"] or "never"
        line = f"{s['name']:<{width}}  {s['dataset']:<12}  {s['member_count']:>10,}  {when}"
        print(line + (f"  ERROR: {s['error']}" if s["error"] else ""))


def segment(seg: dict[str, Any], recent: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(dict(seg, recent_events=recent))
        return
    print(f"segment {seg['name']!r} on dataset {seg['dataset']!r}")
    print(f"  members: {seg['member_count']:,}")
    when = seg["last_processed_at"] or "never"
    print(f"  last processed: {when} (change sequence {seg['watermark']:,})")
    if seg["error"]:
        print(f"  error: {seg['error']}")
    print("  rules: " + json.dumps(seg["rules"], indent=2).replace("\n", "\n  "))
    if recent:
        print(f"  recent events (newest first, {len(recent)}):")
        for e in recent:
            print(f"    {e['at']}  {e['kind']:<5}  {e['key']}")


def created_segment(seg: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(seg)
    else:
        print(
            f"created segment {seg['name']!r} on {seg['dataset']!r}: "
            f"{seg['member_count']:,} members"
        )


def edited_segment(seg: dict[str, Any], before: int, as_json: bool) -> None:
    if as_json:
        emit_json(seg)
    else:
        print(f"updated segment {seg['name']!r}: {seg['member_count']:,} members (was {before:,})")


def members(page: list[dict[str, Any]], cursor: int | None, as_json: bool) -> None:
    if as_json:
        emit_json({"members": page, "next": cursor})
        return
    for m in page:
        print(json.dumps(m["record"], ensure_ascii=False))
    if cursor is not None:
        print(f"(more: --after {cursor})", file=sys.stderr)


def events(page: list[dict[str, Any]], cursor: int | None, as_json: bool) -> None:
    if as_json:
        emit_json({"events": page, "next": cursor})
        return
    for e in page:
        print(f"{e['at']}  {e['kind']:<5}  {e['key']}  (change {e['seq']})")
    if cursor is not None:
        print(f"(older: --before {cursor})", file=sys.stderr)


def explanation(result: dict[str, Any], key: str, as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    verdict = "matches" if result["matches"] else "does not match"
    membership = "is a member" if result["member"] else "is not a member"
    print(f"record {key!r} {verdict} segment {result['segment']!r} and {membership}")
    _explained(result["rules"], 1)


def _explained(node: dict[str, Any], depth: int) -> None:
    mark = "pass" if node["passed"] else "FAIL"
    pad = "  " * depth
    if "field" in node:
        value = f" {json.dumps(node['value'])}" if "value" in node else ""
        print(
            f"{pad}[{mark}] {node['field']} {node['operator']}{value} "
            f"(actual: {json.dumps(node['actual'], ensure_ascii=False)})"
        )
        return
    print(f"{pad}[{mark}] {'NOT ' if node.get('not') else ''}{node['logic']} of:")
    for child in node["conditions"]:
        _explained(child, depth + 1)


def forgotten(report: dict[str, Any], key: str, as_json: bool) -> None:
    if as_json:
        emit_json(report)
        return
    print(f"forgot the record {key!r} of dataset {report['dataset']!r}:")
    print("  its values are erased and its key replaced by a placeholder")
    left = ", ".join(repr(s) for s in report["segments_left"]) or "none"
    print(f"  left segments: {left}")
    queued = ", ".join(repr(d) for d in report["removes_queued"])
    if queued:
        print(f"  remove queued for destinations: {queued} (sent by segflow sync or a worker)")
    print(
        f"  key replaced in {plural(report['events_scrubbed'], 'event')}; "
        f"{plural(report['import_details_scrubbed'], 'rejected-row detail')} dropped from imports"
    )


def rejected_rows(s: dict[str, Any], title: str) -> None:
    """The first rejected rows of an import's summary, and where the rest are."""
    if not s["rejects"]:
        return
    shown = s["rejects"][:20]
    kept = len(s["rejects"])
    more = f"the first {kept:,} with --json" if s.get("rejects_truncated") else "all with --json"
    print(f"  {title} (first {len(shown)} of {s['rejected']:,}; {more}):")
    for reject in shown:
        print(f"    line {reject['line']}: {reject['reason']}")
