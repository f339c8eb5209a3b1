"""Segments: create, edit, delete and list them; their members, events and explanations.

Creating or editing a segment stores its validated rules and runs the engine
on it at once, so the answer is a segment with its members already counted.

Functions acting on one segment take it as an ``int`` (its id, what the API
has) or a ``str`` (its name, what the CLI has) and look it up once.
:func:`live_counts` is what the server's live pages show of every segment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import engine, rules, rulesql
from segflow.datasets import Dataset, require
from segflow.db import records
from segflow.db.engine import Database
from segflow.db.linked import refuse_if_linked
from segflow.db.schema import datasets, members, segment_events, segments
from segflow.db.scope import owned, workspace_of
from segflow.errors import Conflict, InvalidInput, NotFound

MAX_NAME = 100


@dataclass(frozen=True)
class Segment:
    id: int
    name: str
    dataset: str
    rules: dict[str, Any]
    member_count: int
    last_processed_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    watermark: int
    error: str | None
    #: False for stored rules nested past ``rules.MAX_DEPTH`` (saved before the
    #: bounds existed): too deep to serialise as JSON, so ``as_dict`` leaves
    #: them out and ``error`` says why.
    rules_shown: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "dataset": self.dataset,
            "rules": self.rules if self.rules_shown else None,
            "member_count": self.member_count,
            "last_processed_at": _iso(self.last_processed_at),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "watermark": self.watermark,
            "error": self.error,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def validate_segment_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAX_NAME or not cleaned.isprintable():  # NUL included
        raise InvalidInput(
            f"segment name {name!r} is not valid: use 1-{MAX_NAME} printable characters"
        )
    return cleaned


_COLUMNS = (
    segments.c.id,
    segments.c.name,
    datasets.c.name.label("dataset"),
    segments.c.rules,
    segments.c.member_count,
    segments.c.last_processed_at,
    segments.c.created_at,
    segments.c.updated_at,
    segments.c.watermark,
    segments.c.error,
)


def _select(conn: Connection) -> sa.Select[Any]:
    """Segments of the connection's workspace, with their dataset's name."""
    return (
        sa.select(*_COLUMNS)
        .select_from(segments.join(datasets, datasets.c.id == segments.c.dataset_id))
        .where(owned(conn, segments))
    )


def _row_to_segment(row: sa.Row[Any]) -> Segment:
    segment = Segment(**row._mapping)
    size = rules.measure(segment.rules)
    try:
        rules.check_size(size)
    except rules.RuleError as exc:
        # A rule stored before the bounds existed: list it, saying what is
        # wrong, rather than fail the whole list.
        return replace(
            segment,
            error=segment.error or f"rules cannot be used: {exc}",
            rules_shown=size.too_deep is None,
        )
    return segment


def list_segments(db: Database, *, dataset: str | None = None) -> list[Segment]:
    with db.read() as conn:
        query = _select(conn).order_by(segments.c.name)
        if dataset is not None:
            query = query.where(datasets.c.name == dataset)
        return [_row_to_segment(r) for r in conn.execute(query)]


def _find(conn: Connection, segment: int | str) -> Segment:
    """The segment with this id (an int) or name (a str) in the connection's workspace."""
    if isinstance(segment, int):
        row = conn.execute(_select(conn).where(segments.c.id == segment)).first()
        if row is None:
            raise NotFound(f"no segment with id {segment}")
        return _row_to_segment(row)
    name = segment
    row = conn.execute(_select(conn).where(segments.c.name == name)).first()
    if row is None:
        names = (
            conn.execute(
                sa.select(segments.c.name).where(owned(conn, segments)).order_by(segments.c.name)
            )
            .scalars()
            .all()
        )
        known = f" (segments: {', '.join(names)})" if names else " (there are no segments yet)"
        raise NotFound(f"no segment named {name!r}{known}")
    return _row_to_segment(row)


def get_segment(db: Database, segment: int | str) -> Segment:
    """The segment with this id or name."""
    with db.read() as conn:
        return _find(conn, segment)


def _validated(dataset: Dataset, raw_rules: Any) -> tuple[rules.Group, dict[str, Any]]:
    parsed = rules.parse(raw_rules, engine.fields_of(dataset))
    return parsed, rules.to_json(parsed)


def _index_time_columns(conn: Connection, dataset: Dataset, parsed: rules.Group) -> None:
    """Index the columns of within_last conditions, so ticks find crossing dates fast."""
    for condition in rules.conditions(parsed):
        if condition.operator in rules.TIME_RELATIVE:
            records.index_column(conn, dataset.records_table, condition.field.column)


def create_segment(
    db: Database, *, name: str, dataset: str, rules_json: Any, now: dt.datetime
) -> Segment:
    """Store a new segment and evaluate it fully."""
    name = validate_segment_name(name)
    with db.write() as conn:
        ds = require(conn, dataset)
        parsed, canonical = _validated(ds, rules_json)
        taken = sa.select(segments.c.id).where(segments.c.name == name, owned(conn, segments))
        if conn.execute(taken).first():
            raise Conflict(f"a segment named {name!r} already exists")
        segment_id = conn.execute(
            sa.insert(segments)
            .values(
                workspace_id=workspace_of(conn),
                name=name,
                dataset_id=ds.id,
                rules=canonical,
                rules_version=1,
                evaluated_version=0,
                watermark=0,
                member_count=0,
                created_at=now,
                updated_at=now,
            )
            .returning(segments.c.id)
        ).scalar_one()
        _index_time_columns(conn, ds, parsed)
        engine.check_runs(conn, ds, parsed, now)
    engine.tick(db, now, segment_ids=[segment_id])
    return get_segment(db, segment_id)


def edit_segment(
    db: Database,
    segment: int | str,
    *,
    now: dt.datetime,
    rules_json: Any = None,
    new_name: str | None = None,
) -> Segment:
    """Change a segment's rules and/or name; new rules are evaluated fully at once."""
    with db.write() as conn:
        current = _find(conn, segment)
        values: dict[str, Any] = {"updated_at": now}
        if new_name is not None and new_name.strip() != current.name:
            new_name = validate_segment_name(new_name)
            taken = conn.execute(
                sa.select(segments.c.id).where(segments.c.name == new_name, owned(conn, segments))
            )
            if taken.first():
                raise Conflict(f"a segment named {new_name!r} already exists")
            values["name"] = new_name
        if rules_json is not None:
            ds = require(conn, current.dataset)
            parsed, canonical = _validated(ds, rules_json)
            values["rules"] = canonical
            values["rules_version"] = segments.c.rules_version + 1
            _index_time_columns(conn, ds, parsed)
            engine.check_runs(conn, ds, parsed, now)
        conn.execute(sa.update(segments).where(segments.c.id == current.id).values(**values))
    if rules_json is not None:
        engine.tick(db, now, segment_ids=[current.id])
    return get_segment(db, current.id)


def delete_segment(db: Database, segment: int | str) -> Segment:
    """Delete a segment (refused while it feeds a destination); the segment as it was."""
    with db.write() as conn:
        found = _find(conn, segment)
        refuse_if_linked(conn, [found.id], f"segment {found.name!r}")
        conn.execute(sa.delete(segments).where(segments.c.id == found.id))
    return found


def _records_of(conn: Connection, segment: Segment) -> tuple[Dataset, sa.TableClause]:
    dataset = require(conn, segment.dataset)
    return dataset, records.table(dataset.records_table, dataset.columns)


def _record_dict(dataset: Dataset, row: sa.Row[Any]) -> dict[str, Any]:
    mapping = row._mapping
    return {c.name: mapping[records.raw_col(c.position)] for c in dataset.columns}


def list_members(
    db: Database, segment: int | str, *, limit: int = 100, after: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of members in record order, raw values as imported; and the next cursor."""
    with db.read() as conn:
        found = _find(conn, segment)
        dataset, rec = _records_of(conn, found)
        return _members_page(conn, found.id, dataset, rec, limit, after)


def _members_page(
    conn: Connection,
    segment_id: int,
    dataset: Dataset,
    rec: sa.TableClause,
    limit: int,
    after: int | None,
) -> tuple[list[dict[str, Any]], int | None]:
    raw = [rec.c[records.raw_col(c.position)] for c in dataset.columns]
    query = (
        sa.select(rec.c.rid, rec.c.key, *raw)
        .select_from(members.join(rec, rec.c.rid == members.c.rid))
        .where(members.c.segment_id == segment_id)
        .order_by(members.c.rid)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(members.c.rid > after)
    rows = conn.execute(query).all()
    page = [{"key": r.key, "record": _record_dict(dataset, r)} for r in rows[:limit]]
    cursor = int(rows[limit - 1].rid) if len(rows) > limit else None
    return page, cursor


@dataclass(frozen=True)
class MemberPages:
    """Every member of a segment, page by page (for an export)."""

    segment: Segment
    #: The dataset's column names, the keys of each member's ``record``.
    columns: list[str]
    #: Pages of ``{"key", "record"}``, each read on a connection of its own
    #: when iterated; the first is yielded even when empty.
    pages: Iterator[list[dict[str, Any]]]


def member_pages(db: Database, segment: int | str, *, size: int = 1000) -> MemberPages:
    """Look the segment and its dataset up once, then read its members ``size`` at a time."""
    with db.read() as conn:
        found = _find(conn, segment)
        dataset, rec = _records_of(conn, found)

    def pages() -> Iterator[list[dict[str, Any]]]:
        cursor: int | None = None
        while True:
            with db.read() as conn:
                page, cursor = _members_page(conn, found.id, dataset, rec, size, cursor)
            yield page
            if cursor is None:
                return

    return MemberPages(found, [c.name for c in dataset.columns], pages())


def list_events(
    db: Database, segment: int | str, *, limit: int = 100, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of enter/exit events, newest first; and the cursor for older ones."""
    with db.read() as conn:
        found = _find(conn, segment)
        query = (
            sa.select(segment_events)
            .where(segment_events.c.segment_id == found.id)
            .order_by(segment_events.c.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            query = query.where(segment_events.c.id < before)
        rows = conn.execute(query).all()
    page = [
        {"id": r.id, "key": r.record_key, "kind": r.kind, "seq": r.seq, "at": r.at.isoformat()}
        for r in rows[:limit]
    ]
    cursor = int(rows[limit - 1].id) if len(rows) > limit else None
    return page, cursor


def count_matching(
    db: Database, dataset: str, rules_json: Any, now: dt.datetime, *, workers: int = 2
) -> int:
    """How many live records of a dataset match rules, without saving a segment.

    On SQLite the scan is split by record id over ``workers`` threads, each on
    its own connection (SQLite runs a query without holding the GIL), so a
    count uses every core the way PostgreSQL's parallel scans do. Each part
    reads its own snapshot: a count taken while an import commits may mix
    the two states, which is fine for a preview and never used for members.
    """
    with db.read() as conn:
        ds = require(conn, dataset)
        parsed = rules.parse(rules_json, engine.fields_of(ds))
        table = records.table(ds.records_table, ds.columns)
        where = engine.live_matches(rulesql.Compiler(conn.dialect.name, table, now), parsed, table)
        if conn.dialect.name != "sqlite" or workers < 2:
            return int(conn.execute(sa.select(sa.func.count()).where(where)).scalar_one())
        # Two scalar subqueries: SQLite answers each from the primary key, but
        # min() and max() side by side would scan the table.
        low, high = conn.execute(
            sa.select(
                sa.select(sa.func.min(table.c.rid)).scalar_subquery(),
                sa.select(sa.func.max(table.c.rid)).scalar_subquery(),
            )
        ).one()
    if low is None:
        return 0
    step = (int(high) - int(low)) // workers + 1
    bounds = [(int(low) + i * step, int(low) + (i + 1) * step - 1) for i in range(workers)]

    def part(bound: tuple[int, int]) -> int:
        with db.read() as conn:
            query = sa.select(sa.func.count()).where(table.c.rid.between(*bound), where)
            return int(conn.execute(query).scalar_one())

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(part, bounds))


def explain(db: Database, segment: int | str, key: str, now: dt.datetime) -> dict[str, Any]:
    """Which conditions a record passes, evaluated by the same SQL the engine runs."""
    with db.read() as conn:
        found = _find(conn, segment)
        dataset, rec = _records_of(conn, found)
        parsed = rules.parse(found.rules, engine.fields_of(dataset))
        compiler = rulesql.Compiler(conn.dialect.name, rec, now)
        # Each condition once in SQL (its values are bound once, so the
        # statement stays within the bound-value limits the rules bounds
        # keep); groups are combined from them below, as the engine's SQL does.
        leaves = rules.conditions(parsed)
        checks = [
            sa.case((compiler.compile(node), 1), else_=0).label(f"n{i}")
            for i, node in enumerate(leaves)
        ]
        raw = [rec.c[records.raw_col(c.position)] for c in dataset.columns]
        row = conn.execute(
            sa.select(rec.c.rid, rec.c.deleted, *raw, *checks).where(rec.c.key == key)
        ).first()
        if row is None or row.deleted:
            raise NotFound(f"no record with key {key!r} in dataset {dataset.name!r}")
        member = conn.execute(
            sa.select(members.c.rid).where(
                members.c.segment_id == found.id, members.c.rid == row.rid
            )
        ).first()
    values = _record_dict(dataset, row)
    results = {id(node): bool(row._mapping[f"n{i}"]) for i, node in enumerate(leaves)}
    _combine(parsed, results)
    return {
        "segment": found.name,
        "key": key,
        "matches": results[id(parsed)],
        "member": member is not None,
        "evaluated_at": now.isoformat(),
        "rules": _explain_node(parsed, results, values),
    }


def _combine(node: rules.Node, results: dict[int, bool]) -> bool:
    """A group's result from its conditions' (every condition is two-valued,
    so AND, OR and NOT in Python agree with the compiled SQL)."""
    if isinstance(node, rules.Condition):
        return results[id(node)]
    parts = [_combine(child, results) for child in node.conditions]
    matched = all(parts) if node.logic == rules.AND else any(parts)
    results[id(node)] = not matched if node.negate else matched
    return results[id(node)]


def _explain_node(
    node: rules.Node, results: dict[int, bool], values: dict[str, Any]
) -> dict[str, Any]:
    out = rules.to_json(node)
    out["passed"] = results[id(node)]
    if isinstance(node, rules.Condition):
        out["actual"] = values.get(node.field.name)
    else:
        out["conditions"] = [_explain_node(c, results, values) for c in node.conditions]
    return out


def member_keys(db: Database, segment: int | str) -> set[str]:
    """Every member's key (for tests and small exports)."""
    with db.read() as conn:
        found = _find(conn, segment)
        _, rec = _records_of(conn, found)
        rows = conn.execute(
            sa.select(rec.c.key)
            .select_from(members.join(rec, rec.c.rid == members.c.rid))
            .where(members.c.segment_id == found.id)
        )
        return {r[0] for r in rows}


def preview(
    db: Database,
    dataset: str,
    rules_json: Any,
    now: dt.datetime,
    *,
    segment_id: int | None = None,
    sample: int = 10,
) -> dict[str, Any]:
    """What rules would select, without saving: count, a sample, and for a
    saved segment how many would enter and leave if it took these rules."""
    count = count_matching(db, dataset, rules_json, now)
    with db.read() as conn:
        ds = require(conn, dataset)
        parsed = rules.parse(rules_json, engine.fields_of(ds))
        rec = records.table(ds.records_table, ds.columns)
        where = engine.live_matches(rulesql.Compiler(conn.dialect.name, rec, now), parsed, rec)
        raw = [rec.c[records.raw_col(c.position)] for c in ds.columns]
        rows = conn.execute(
            sa.select(rec.c.key, *raw).where(where).order_by(rec.c.rid).limit(sample)
        ).all()
        out: dict[str, Any] = {
            "count": count,
            "sample": [{"key": r.key, "record": _record_dict(ds, r)} for r in rows],
            "would_enter": None,
            "would_exit": None,
        }
        if segment_id is None:
            return out
        segment_row = conn.execute(
            sa.select(segments.c.dataset_id).where(
                segments.c.id == segment_id, owned(conn, segments)
            )
        ).first()
        if segment_row is None:
            raise NotFound(f"no segment with id {segment_id}")
        if segment_row.dataset_id != ds.id:
            raise InvalidInput(f"segment {segment_id} belongs to another dataset")
        is_member = sa.exists(
            sa.select(members.c.rid).where(
                members.c.segment_id == segment_id, members.c.rid == rec.c.rid
            )
        )
        out["would_enter"] = int(
            conn.execute(sa.select(sa.func.count()).where(where, ~is_member)).scalar_one()
        )
        out["would_exit"] = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(members.join(rec, rec.c.rid == members.c.rid))
                .where(members.c.segment_id == segment_id, ~where)
            ).scalar_one()
        )
    return out


def history(db: Database, segment: int | str, *, points: int = 500) -> list[dict[str, Any]]:
    """Membership over time, rebuilt from the enter/exit events (one point per
    tick that changed something; the oldest are merged beyond ``points``)."""
    delta = sa.func.sum(sa.case((segment_events.c.kind == "enter", 1), else_=-1))
    with db.read() as conn:
        found = _find(conn, segment)
        rows = conn.execute(
            sa.select(segment_events.c.at, delta)
            .where(segment_events.c.segment_id == found.id)
            .group_by(segment_events.c.at)
            .order_by(segment_events.c.at)
        ).all()
    series = []
    total = 0
    for at, change in rows:
        total += int(change)
        series.append({"at": at.isoformat(), "members": total})
    if len(series) > points:
        step = len(series) / points
        series = [series[int(i * step)] for i in range(points - 1)] + [series[-1]]
    return series


def live_counts(db: Database) -> dict[int, tuple[int, dict[str, Any]]]:
    """Every segment's count and state by segment id, with its workspace: what
    live pages show. Reads across all workspaces (the broadcaster routes each
    to its own workspace's streams), in one small query."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                segments.c.id,
                segments.c.workspace_id,
                segments.c.name,
                segments.c.member_count,
                segments.c.last_processed_at,
                segments.c.error,
            )
        ).all()
    return {
        r.id: (
            r.workspace_id,
            {
                "id": r.id,
                "name": r.name,
                "member_count": int(r.member_count),
                "last_processed_at": _iso(r.last_processed_at),
                "error": r.error,
            },
        )
        for r in rows
    }
