"""The dataset catalog: what datasets exist, their columns, and their records.

A dataset is a named table of records keyed by one column, filled by imports
(``segflow.ingest``). This module finds, lists, describes, pages and deletes
datasets; :func:`require` is the one lookup that says a dataset is not there.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db import records
from segflow.db.engine import Database
from segflow.db.linked import refuse_if_linked
from segflow.db.records import ident
from segflow.db.schema import dataset_columns, datasets, imports, segments
from segflow.db.scope import owned
from segflow.errors import InvalidInput, NotFound

# fullmatch: "$" would also accept a trailing newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Column:
    position: int
    name: str
    type: str
    #: How the values are written when not plainly (``segflow.colformats``).
    format: str | None = None


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    key_column: str
    records_table: str
    record_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        folded = name.casefold()
        for column in self.columns:
            if column.name.casefold() == folded:
                return column
        return None


def validate_dataset_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"dataset name {name!r} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


# --------------------------------------------------------------------- queries


def load_dataset(conn: Connection, name: str, *, lock: bool = False) -> Dataset | None:
    """The dataset of this name in the connection's workspace."""
    where = sa.and_(datasets.c.name == name, owned(conn, datasets))
    return _load_where(conn, where, lock=lock)


def load_dataset_by_id(conn: Connection, dataset_id: int) -> Dataset | None:
    """Any workspace's dataset: for background work that holds an id, not a name."""
    return _load_where(conn, datasets.c.id == dataset_id, lock=False)


def _load_where(conn: Connection, where: Any, *, lock: bool) -> Dataset | None:
    query = sa.select(datasets).where(where)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    cols = conn.execute(
        sa.select(
            dataset_columns.c.position,
            dataset_columns.c.name,
            dataset_columns.c.type,
            dataset_columns.c.format,
        )
        .where(dataset_columns.c.dataset_id == row["id"])
        .order_by(dataset_columns.c.position)
    ).all()
    return Dataset(
        id=row["id"],
        name=row["name"],
        key_column=row["key_column"],
        records_table=row["records_table"],
        record_count=row["record_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        columns=tuple(Column(p, n, t, f) for p, n, t, f in cols),
    )


def find_dataset(db: Database, name: str) -> Dataset | None:
    with db.read() as conn:
        return load_dataset(conn, name)


def get_dataset(db: Database, name: str) -> Dataset:
    with db.read() as conn:
        return require(conn, name)


def require(
    conn: Connection, name: str, *, lock: bool = False, name_others: bool = True
) -> Dataset:
    """The dataset of this name in the connection's workspace, or NotFound.

    The message names the workspace's other datasets, except with
    ``name_others=False``: the plain message the catalog's commands give.
    """
    dataset = load_dataset(conn, name, lock=lock)
    if dataset is None:
        known = ""
        if name_others:
            names = (
                conn.execute(
                    sa.select(datasets.c.name)
                    .where(owned(conn, datasets))
                    .order_by(datasets.c.name)
                )
                .scalars()
                .all()
            )
            known = f" (datasets: {', '.join(names)})" if names else " (there are no datasets yet)"
        raise NotFound(f"no dataset named {name!r}{known}")
    return dataset


def list_datasets(db: Database) -> list[Dataset]:
    with db.read() as conn:
        names = conn.execute(
            sa.select(datasets.c.name).where(owned(conn, datasets)).order_by(datasets.c.name)
        ).scalars()
        return [d for d in (load_dataset(conn, n) for n in list(names)) if d is not None]


def describe_dataset(db: Database, name: str) -> dict[str, Any]:
    """Schema with non-empty counts, record count and the last import's summary."""
    with db.read() as conn:
        dataset = require(conn, name, name_others=False)
        counts: Sequence[Any] = ()
        if dataset.columns:
            table = ident(dataset.records_table)
            selects = ", ".join(
                f"COUNT({ident(records.raw_col(c.position))})" for c in dataset.columns
            )
            counts = conn.exec_driver_sql(
                f"SELECT {selects} FROM {table} WHERE NOT deleted"  # noqa: S608 - generated names
            ).one()
        last = conn.execute(
            sa.select(imports.c.summary, imports.c.finished_at)
            .where(imports.c.dataset_id == dataset.id)
            .order_by(imports.c.id.desc())
            .limit(1)
        ).first()
    return {
        "name": dataset.name,
        "key": dataset.key_column,
        "records": dataset.record_count,
        "created_at": dataset.created_at.isoformat(),
        "updated_at": dataset.updated_at.isoformat(),
        "columns": [
            {"name": c.name, "type": c.type, "format": c.format, "non_empty": int(n)}
            for c, n in zip(dataset.columns, counts, strict=True)
        ],
        "last_import": None if last is None else last[0],
    }


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "key": dataset.key_column,
        "records": dataset.record_count,
        "columns": len(dataset.columns),
        "created_at": dataset.created_at.isoformat(),
        "updated_at": dataset.updated_at.isoformat(),
    }


def delete_dataset(db: Database, name: str) -> Dataset:
    """Drop a dataset, its records and (by cascade) its segments; refused while
    one of its segments feeds a destination."""
    with db.write() as conn:
        dataset = require(conn, name, lock=True, name_others=False)
        segment_ids = conn.execute(
            sa.select(segments.c.id).where(segments.c.dataset_id == dataset.id)
        ).scalars()
        refuse_if_linked(conn, list(segment_ids), f"a segment of dataset {dataset.name!r}")
        records.drop_table(conn, dataset.records_table)
        conn.execute(sa.delete(datasets).where(datasets.c.id == dataset.id))
    return dataset


def read_records(db: Database, name: str, *, limit: int = 20) -> list[dict[str, str | None]]:
    """The first live records by key, raw text as imported."""
    with db.read() as conn:
        dataset = require(conn, name, name_others=False)
        table = records.table(dataset.records_table, dataset.columns)
        raw = [table.c[records.raw_col(c.position)] for c in dataset.columns]
        rows = conn.execute(
            sa.select(*raw).where(table.c.deleted == sa.false()).order_by(table.c.key).limit(limit)
        ).all()
    return [dict(zip((c.name for c in dataset.columns), row, strict=True)) for row in rows]


def page_records(
    db: Database, name: str, *, limit: int = 100, after: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of live records in storage order, raw text as imported; and the next cursor."""
    with db.read() as conn:
        dataset = require(conn, name, name_others=False)
        table = records.table(dataset.records_table, dataset.columns)
        raw = [table.c[records.raw_col(c.position)] for c in dataset.columns]
        query = (
            sa.select(table.c.rid, table.c.key, *raw)
            .where(table.c.deleted == sa.false())
            .order_by(table.c.rid)
            .limit(limit + 1)
        )
        if after is not None:
            query = query.where(table.c.rid > after)
        rows = conn.execute(query).all()
    names = [c.name for c in dataset.columns]
    page = [{"key": r.key, "record": dict(zip(names, r[2:], strict=True))} for r in rows[:limit]]
    cursor = int(rows[limit - 1].rid) if len(rows) > limit else None
    return page, cursor
