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

from segflow import coltypes
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
            dataset_id=dataset_id, position=column.position, name=column.name, type=column.type
        )
    )


def set_column_type(conn: Connection, dataset_id: int, position: int, kind: str) -> None:
    """Record a column's new type in the catalog (its stored values are converted already)."""
    conn.execute(
        sa.update(dataset_columns)
        .where(dataset_columns.c.dataset_id == dataset_id, dataset_columns.c.position == position)
        .values(type=kind)
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
) -> list[Column]:
    """The dataset column of each file column: new ones added, stored ones widened.

    ``existing`` (the dataset's columns by folded name) is updated in place;
    for a dataset that existed before, each change is appended to ``changes``.
    File columns kept at a stored type some of their cells do not fit are
    added to ``misfits`` (by index): their conversion must be guarded.
    """
    next_position = max((c.position for c in existing.values()), default=-1) + 1
    mapping: list[Column] = []  # file column index -> dataset column
    for index, name in enumerate(header):
        file_type = types[index]
        column = existing.get(name.casefold())
        if column is None:
            kind = new_column_type(name, file_type)
            column = Column(next_position, name, kind)
            next_position += 1
            add_column(conn, dataset_id, table, column)
            if not created:
                changes.append({"column": name, "change": "added", "type": kind})
            existing[name.casefold()] = column
        else:
            column = _widen(conn, dataset_id, table, column, file_type, changes)
            existing[name.casefold()] = column
            if column.type != coltypes.TEXT and coltypes.widen(column.type, file_type) != (
                column.type
            ):
                if misfits is not None:
                    misfits.add(index)
        mapping.append(column)
    return mapping


def new_column_type(name: str, file_type: str) -> str:
    """The type a new column gets: text for phone and postal code columns, whatever they hold.

    ``07700900123`` typed as a number loses its zero, and a rule like
    ``starts_with "+44"`` could not be written on an integer column.
    """
    if detect_kind(name) in (PHONE, POSTAL_CODE):
        return coltypes.TEXT
    return coltypes.column_type(file_type)


def _widen(
    conn: Connection,
    dataset_id: int,
    table: str,
    column: Column,
    file_type: str,
    changes: list[dict[str, Any]],
) -> Column:
    """A stored column with the type its stored values and this file's take together."""
    dialect = conn.dialect.name
    kind = coltypes.widen(column.type, file_type)
    if kind == coltypes.TEXT and column.type != coltypes.TEXT:
        # Never to text because of a file: one "N/A?" would turn every rule
        # on the column into an error. The cells that do not fit are counted.
        kind = column.type
    if (
        column.type == coltypes.TEXT
        and records.has_typed(file_type)
        and not records.has_values(conn, table, column.position)
    ):
        # Text only because no value was ever seen: the first values decide.
        kind = file_type
        records.add_typed_column(conn, dialect, table, column.position, kind)
    elif kind != column.type:
        records.retype_column(conn, dialect, table, column.position, kind)
    if kind == column.type:
        return column
    set_column_type(conn, dataset_id, column.position, kind)
    changes.append({"column": column.name, "change": "retyped", "from": column.type, "to": kind})
    return Column(column.position, column.name, kind)


def correct_guesses(
    conn: Connection, dataset_id: int, table: str, mapping: list[Column], types: list[str]
) -> None:
    """Give a new dataset's columns the types of the whole file.

    They were created with the types of the first rows, which the rest of
    the file can only widen (an empty guess can become anything). ``mapping``
    is corrected in place.
    """
    dialect = conn.dialect.name
    for index, column in enumerate(mapping):
        kind = new_column_type(column.name, types[index])
        if kind == column.type:
            continue
        if column.type == coltypes.TEXT:  # only empty values in the first rows
            records.fill_typed_column(conn, dialect, table, column.position, kind)
        else:
            records.retype_column(conn, dialect, table, column.position, kind)
        set_column_type(conn, dataset_id, column.position, kind)
        mapping[index] = Column(column.position, column.name, kind)
