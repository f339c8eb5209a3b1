"""A dataset's shape as an import writes it: its row, its records table and its columns.

A file can add columns and widen a typed column without loss (integer to
number, date to datetime), never narrow one. A stored typed column whose
file has cells of another kind keeps its type: those cells keep their raw
text with no typed value (the import counts them), so segments using the
column go on working. Only ``datasets.retype`` changes a type otherwise.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import colformats, coltypes
from segflow.datasets import Column
from segflow.db import records
from segflow.db.schema import dataset_columns, datasets
from segflow.db.scope import workspace_of
from segflow.ingest.quality import PHONE, POSTAL_CODE, detect_kind


def create_dataset(conn: Connection, name: str, key_name: str, now: dt.datetime) -> tuple[int, str]:
    """A new dataset's row and its records table, still without columns or indexes."""
    dataset_id = int(
        conn.execute(
            datasets.insert()
            .values(
                workspace_id=workspace_of(conn),
                name=name,
                key_column=key_name,
                records_table=f"sf_pending_{uuid.uuid4().hex}",
                record_count=0,
                created_at=now,
                updated_at=now,
            )
            .returning(datasets.c.id)
        ).scalar_one()
    )
    table = records.table_name(dataset_id)
    conn.execute(sa.update(datasets).where(datasets.c.id == dataset_id).values(records_table=table))
    records.create_table(conn, conn.dialect.name, table, indexes=False)
    return dataset_id, table


def add_column(conn: Connection, dataset_id: int, table: str, column: Column) -> None:
    """A new column of the dataset, empty in every stored record."""
    records.add_column(conn, conn.dialect.name, table, column.position, column.type)
    conn.execute(
        dataset_columns.insert().values(
            dataset_id=dataset_id,
            position=column.position,
            name=column.name,
            type=column.type,
            format=column.format,
        )
    )


def set_column_type(
    conn: Connection, dataset_id: int, position: int, kind: str, fmt: str | None = None
) -> None:
    """Record a column's new type and format in the catalog (its stored values are converted)."""
    conn.execute(
        sa.update(dataset_columns)
        .where(dataset_columns.c.dataset_id == dataset_id, dataset_columns.c.position == position)
        .values(type=kind, format=fmt)
    )


def fit_columns(
    conn: Connection,
    dataset_id: int,
    table: str,
    header: list[str],
    types: list[str],
    existing: dict[str, Column],
    *,
    created: bool,
    changes: list[dict[str, Any]],
    misfits: set[int] | None = None,
    notes: list[str] | None = None,
) -> list[Column]:
    """The dataset column of each file column: new ones added, stored ones widened.

    ``types`` are the file's inferred types or format states. ``existing``
    (the dataset's columns by folded name) is updated in place; for a
    dataset that existed before, each change is appended to ``changes``.
    File columns kept at a stored type some of their cells may not fit are
    added to ``misfits`` (by index): their conversion must be guarded. Why a
    column with formatted values stays text goes to ``notes``.
    """
    next_position = max((c.position for c in existing.values()), default=-1) + 1
    mapping: list[Column] = []  # file column index -> dataset column
    for index, name in enumerate(header):
        found = colformats.resolve(types[index])
        column = existing.get(name.casefold())
        if column is None:
            column = new_column(next_position, name, found, notes)
            next_position += 1
            add_column(conn, dataset_id, table, column)
            if not created:
                changes.append({"column": name, "change": "added", "type": column.type})
            existing[name.casefold()] = column
        else:
            column, guarded = _widen(conn, dataset_id, table, column, found, changes)
            existing[name.casefold()] = column
            if guarded and misfits is not None:
                misfits.add(index)
        mapping.append(column)
    return mapping


def new_column(
    position: int, name: str, found: colformats.Resolved, notes: list[str] | None = None
) -> Column:
    """A new column for a file column of type ``found``.

    Phone and postal code columns are text whatever they hold: ``07700900123``
    typed as a number loses its zero, and ``starts_with "+44"`` could not be
    written on an integer column.
    """
    if detect_kind(name) in (PHONE, POSTAL_CODE):
        return Column(position, name, coltypes.TEXT)
    if found.ambiguous and notes is not None:
        notes.append(f"column {name!r} kept as text: {found.ambiguous}")
    return Column(position, name, coltypes.column_type(found.kind), found.format)


def _widen(
    conn: Connection,
    dataset_id: int,
    table: str,
    column: Column,
    found: colformats.Resolved,
    changes: list[dict[str, Any]],
) -> tuple[Column, bool]:
    """A stored column with the type its stored values and this file's take together,
    and whether the file's cells must be checked against it (some may not fit)."""
    dialect = conn.dialect.name
    file_type = found.kind
    if (
        column.type == coltypes.TEXT
        and records.has_typed(file_type)
        and detect_kind(column.name) not in (PHONE, POSTAL_CODE)
        and not records.has_values(conn, table, column.position)
    ):
        # Text only because no value was ever seen: the first values decide.
        records.add_typed_column(conn, dialect, table, column.position, file_type)
        return _retyped(conn, dataset_id, column, file_type, found.format, changes), False
    if column.type == coltypes.TEXT:
        return column, False
    if column.format != found.format and file_type != coltypes.EMPTY:
        # Written another way than the column's values (or plainly where the
        # column has a format): kept as it is, each cell checked.
        return column, True
    kind = coltypes.widen(column.type, file_type)
    if kind == coltypes.TEXT:
        # Never to text because of a file: one "N/A?" would turn every rule
        # on the column into an error. The cells that do not fit are counted.
        return column, True
    if kind == column.type:
        return column, False
    records.retype_column(conn, dialect, table, column.position, kind, column.format)
    return _retyped(conn, dataset_id, column, kind, column.format, changes), False


def _retyped(
    conn: Connection,
    dataset_id: int,
    column: Column,
    kind: str,
    fmt: str | None,
    changes: list[dict[str, Any]],
) -> Column:
    set_column_type(conn, dataset_id, column.position, kind, fmt)
    changes.append({"column": column.name, "change": "retyped", "from": column.type, "to": kind})
    return Column(column.position, column.name, kind, fmt)
