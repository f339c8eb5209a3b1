"""Changing a column's type: the user's explicit act, never an import's side effect.

An import keeps a stored typed column's type whatever a file holds (see
``segflow.ingest.columns``); this is the way to make ``Lifetime Value`` a
number after all, or text. The change is made only when every stored value
fits the new type and every segment's rules on the column still make
sense with it; otherwise nothing changes and the answer says which values
or segments stand in the way. Segments that read the column are evaluated
again in full at the next tick, as after an edit of their rules.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import colformats, coltypes, engine, rules
from segflow.datasets import Column, Dataset, require
from segflow.db import records
from segflow.db.engine import Database
from segflow.db.records import ident
from segflow.db.schema import dataset_columns, datasets, segments
from segflow.errors import InvalidInput, NotFound

TYPES = (
    coltypes.TEXT,
    coltypes.INTEGER,
    coltypes.NUMBER,
    coltypes.BOOLEAN,
    coltypes.DATE,
    coltypes.DATETIME,
)
#: Values shown when some do not fit.
EXAMPLES = 5


@dataclass(frozen=True)
class Retyped:
    dataset: str
    column: str
    old: str
    new: str
    #: Stored values that now have a typed value, and segments evaluated again.
    values: int
    segments: list[str]
    #: The column's number or date format after the change (None: plain).
    format: str | None = None
    old_format: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "column": self.column,
            "from": self.old,
            "to": self.new,
            "from_format": self.old_format,
            "format": self.format,
            "values": self.values,
            "segments": self.segments,
        }


def check_format(kind: str, fmt: str) -> str:
    """``fmt`` when it is a format that type ``kind`` reads values in; else a clear refusal."""
    numbers, dates = list(colformats.NUMBER_FORMATS), list(colformats.DATE_FORMATS)
    choices = f"number formats: {', '.join(numbers)}; date formats: {', '.join(dates)}"
    name = fmt.strip()
    shape = colformats.FORMATS.get(name) or colformats.FORMATS.get(name.upper())
    if shape is None:
        raise InvalidInput(f"unknown format {fmt!r} ({choices})")
    if kind in (coltypes.INTEGER, coltypes.NUMBER) and shape.name in numbers:
        return shape.name
    if kind == coltypes.DATE and shape.name in dates:
        return shape.name
    takes = {
        coltypes.INTEGER: f"the number formats {', '.join(numbers)}",
        coltypes.NUMBER: f"the number formats {', '.join(numbers)}",
        coltypes.DATE: f"the date formats {', '.join(dates)}",
    }.get(kind, "no format")
    raise InvalidInput(f"format {shape.name!r} does not go with type {kind}: {kind} takes {takes}")


def retype(
    db: Database,
    dataset: str,
    column: str,
    kind: str,
    *,
    now: dt.datetime,
    fmt: str | None = None,
) -> Retyped:
    """Give ``column`` of ``dataset`` the type ``kind`` (see the module docstring).

    ``fmt``: how its values are written (``1.234,56``, ``DD.MM.YYYY``: see
    :mod:`segflow.colformats`); without it a number or date column keeps its
    format where the new type reads values written so.
    """
    kind = kind.strip().lower()
    if kind not in TYPES:
        raise InvalidInput(f"unknown type {kind!r}; choose one of {', '.join(TYPES)}")
    wanted = None if fmt is None else check_format(kind, fmt)
    with db.write() as conn:
        ds = require(conn, dataset, lock=True)
        found = ds.column(column)
        if found is None:
            names = ", ".join(repr(c.name) for c in ds.columns)
            raise NotFound(f"dataset {ds.name!r} has no column {column!r} (its columns: {names})")
        if found.position == _key_position(ds):
            raise InvalidInput(f"{found.name!r} is the dataset's key, which is kept as text")
        fmt = _kept_format(found.format, kind) if wanted is None else wanted
        if found.type == kind and fmt == found.format:
            return Retyped(ds.name, found.name, kind, kind, 0, [], fmt, fmt)
        table = ident(ds.records_table)
        raw = ident(records.raw_col(found.position))
        if kind != coltypes.TEXT:
            _refuse_misfits(conn, ds, found, kind, table, raw, fmt)
        users = _segments_reading(conn, ds, found, kind)
        dialect = conn.dialect.name
        if not records.has_typed(found.type):
            records.fill_typed_column(conn, dialect, ds.records_table, found.position, kind, fmt)
        elif not records.has_typed(kind):
            records.retype_column(conn, dialect, ds.records_table, found.position, kind)
        else:
            records.replace_typed_column(conn, dialect, ds.records_table, found.position, kind, fmt)
            for segment_id, _name in users:
                _index_time_columns(conn, ds, found, segment_id)
        conn.execute(
            sa.update(dataset_columns)
            .where(
                dataset_columns.c.dataset_id == ds.id,
                dataset_columns.c.position == found.position,
            )
            .values(type=kind, format=fmt)
        )
        conn.execute(sa.update(datasets).where(datasets.c.id == ds.id).values(updated_at=now))
        if users:
            # Typed values changed without a change sequence number: only a
            # full evaluation sees them.
            conn.execute(
                sa.update(segments)
                .where(segments.c.id.in_([segment_id for segment_id, _ in users]))
                .values(rules_version=segments.c.rules_version + 1, updated_at=now)
            )
        values = int(
            conn.exec_driver_sql(
                f"SELECT COUNT({raw}) FROM {table} WHERE NOT deleted"  # noqa: S608 - generated
            ).scalar_one()
        )
    return Retyped(
        ds.name,
        found.name,
        found.type,
        kind,
        values,
        [name for _, name in users],
        fmt,
        found.format,
    )


def _index_time_columns(conn: Connection, ds: Dataset, column: Column, segment_id: int) -> None:
    """The index a within_last condition on the column had, which the new typed column lacks."""
    stored = conn.execute(sa.select(segments.c.rules).where(segments.c.id == segment_id)).scalar()
    for condition in rules.conditions(rules.parse(stored, engine.fields_of(ds))):
        if condition.field.name == column.name and condition.operator in rules.TIME_RELATIVE:
            records.index_column(conn, ds.records_table, records.typed_col(column.position))
            return


def _kept_format(fmt: str | None, kind: str) -> str | None:
    """The column's format where the new type reads values written that way, else None.

    ``1.234`` in a ``1.234,56`` column means 1234 whether the column holds
    whole numbers or numbers: read plainly it would be 1.234.
    """
    if fmt in colformats.NUMBER_FORMATS and kind in (coltypes.INTEGER, coltypes.NUMBER):
        return fmt
    if fmt in colformats.DATE_FORMATS and kind == coltypes.DATE:
        return fmt
    return None


def _key_position(ds: Dataset) -> int | None:
    key = ds.column(ds.key_column)
    return key.position if key is not None else None


def _refuse_misfits(
    conn: Connection,
    ds: Dataset,
    column: Column,
    kind: str,
    table: str,
    raw: str,
    fmt: str | None,
) -> None:
    records.install_fits(conn)
    misfit = (
        f"{raw} IS NOT NULL AND NOT ({records.is_empty_like_sql(raw)}) "
        f"AND NOT {records.fits_sql(conn.dialect.name, kind, raw, fmt)}"
    )
    where = f"FROM {table} WHERE NOT deleted AND {misfit}"
    count = int(conn.exec_driver_sql(f"SELECT COUNT(*) {where}").scalar_one())
    if not count:
        return
    shown = conn.exec_driver_sql(f"SELECT key, {raw} {where} ORDER BY key LIMIT {EXAMPLES}").all()
    examples = ", ".join(f"{key} {value!r}" for key, value in shown)
    values = "1 stored value does not" if count == 1 else f"{count:,} stored values do not"
    raise InvalidInput(
        f"{values} fit {kind}{f' written {fmt}' if fmt else ''} in column {column.name!r} "
        f"of dataset {ds.name!r} "
        f"(key and value: {examples}); nothing was changed. Correct them and import the "
        f"file again, or keep the column {column.type}"
    )


def _segments_reading(
    conn: Connection, ds: Dataset, column: Column, kind: str
) -> list[tuple[int, str]]:
    """The segments whose rules read ``column``; refused if any stops making sense."""
    retyped = replace(
        ds, columns=tuple(replace(c, type=kind) if c == column else c for c in ds.columns)
    )
    fields, new_fields = engine.fields_of(ds), engine.fields_of(retyped)
    users: list[tuple[int, str]] = []
    broken: list[str] = []
    rows = conn.execute(
        sa.select(segments.c.id, segments.c.name, segments.c.rules).where(
            segments.c.dataset_id == ds.id
        )
    )
    for segment_id, name, stored in rows:
        try:
            parsed = rules.parse(stored, fields)
        except rules.RuleError:
            continue  # already unusable; it says so on its own
        if not any(c.field.name == column.name for c in rules.conditions(parsed)):
            continue
        try:
            rules.parse(stored, new_fields)
        except rules.RuleError as exc:
            broken.append(f"{name!r} ({exc})")
            continue
        users.append((int(segment_id), str(name)))
    if broken:
        raise InvalidInput(
            f"segments use column {column.name!r} in ways {kind} does not allow: "
            f"{'; '.join(broken)}; edit them first. Nothing was changed"
        )
    return users
