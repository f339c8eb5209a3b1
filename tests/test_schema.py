"""The migrations and ``db/schema.py`` describe the same tables, on both engines.

The schema is written twice: as DDL in ``db/migrations.py`` (what a database
really gets) and as SQLAlchemy ``MetaData`` in ``db/schema.py`` (what every
query is built from). These tests migrate an empty database from nothing and
compare what ``sqlalchemy.inspect`` reads back with the metadata.

What is compared, and why only that:

* table names (the per-dataset records tables ``sf_rec_<id>`` are created by
  imports, not declared, and are left out by their name);
* column names, in either direction;
* column types by family (small/regular/big integer, text, timestamp, JSON),
  after resolving the metadata's variants and decorators for the dialect;
  the exact type names differ between engines (``TIMESTAMP`` vs
  ``TIMESTAMPTZ``, ``JSON`` vs ``JSONB``). On PostgreSQL also whether a
  timestamp has a time zone (SQLite has no such thing);
* nullability: every column on PostgreSQL; on SQLite only columns outside the
  primary key, because SQLite reports ``INTEGER PRIMARY KEY`` as nullable
  although it is a rowid, and the primary key itself is compared below;
* server defaults (the literal, without PostgreSQL's casts);
* on PostgreSQL, which column the database generates (identity) against the
  metadata's autoincrement column; SQLite makes every ``INTEGER PRIMARY KEY``
  a rowid whatever is declared, so there it cannot be compared;
* primary keys (columns, in order), unique constraints (column lists; their
  names are engine-generated), foreign keys (columns, referred table and
  columns, ``ON DELETE``) and indexes (name, columns in order, uniqueness;
  PostgreSQL's indexes that back a constraint are compared as the constraint).

Not compared: CHECK constraints (PostgreSQL rewrites their text, so the two
engines cannot be held to one spelling) and SQLite's ``WITHOUT ROWID``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from segflow.db import Database, schema
from segflow.db.migrations import upgrade
from segflow.db.records import table_name

RECORDS_TABLE = re.compile(r"^sf_rec_\d+$")

# Most specific first: BigInteger and SmallInteger are Integers, TIMESTAMP a DateTime.
_FAMILIES: tuple[tuple[type[sa.types.TypeEngine[Any]], str], ...] = (
    (sa.SmallInteger, "smallint"),
    (sa.BigInteger, "bigint"),
    (sa.Integer, "integer"),
    (sa.DateTime, "timestamp"),
    (sa.JSON, "json"),
    (sa.String, "text"),
)


@dataclass
class Column:
    family: str
    nullable: bool
    default: str | None
    timezone: bool | None
    generated: bool | None


@dataclass
class Table:
    columns: dict[str, Column] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    uniques: set[tuple[str, ...]] = field(default_factory=set)
    foreign_keys: set[tuple[tuple[str, ...], str, tuple[str, ...], str | None]] = field(
        default_factory=set
    )
    indexes: dict[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)


def _family(type_: sa.types.TypeEngine[Any]) -> str:
    for cls, name in _FAMILIES:
        if isinstance(type_, cls):
            return name
    raise AssertionError(f"no type family for {type_!r}")


def _default(text: Any) -> str | None:
    """A server default as a bare literal: ``'0'::smallint`` and ``0`` are both ``0``."""
    if text is None:
        return None
    value = str(text.text if isinstance(text, sa.TextClause) else text)
    value = re.sub(r"::[a-z ]+$", "", value.strip())
    return value.strip("()'")


def _timezone(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> bool | None:
    if dialect.name != "postgresql" or not isinstance(type_, sa.DateTime):
        return None
    return bool(type_.timezone)


def _declared(dialect: Dialect) -> dict[str, Table]:
    """The metadata of ``db/schema.py``, as this dialect would have it."""
    tables: dict[str, Table] = {}
    for table in schema.metadata.sorted_tables:
        out = tables[table.name] = Table()
        for col in table.columns:
            type_ = col.type.dialect_impl(dialect)
            if isinstance(type_, sa.types.TypeDecorator):
                type_ = type_.impl_instance
            out.columns[col.name] = Column(
                family=_family(type_),
                nullable=bool(col.nullable),
                default=_default(getattr(col.server_default, "arg", None)),
                timezone=_timezone(type_, dialect),
                generated=(col is table.autoincrement_column)
                if dialect.name == "postgresql"
                else None,
            )
        out.primary_key = tuple(c.name for c in table.primary_key.columns)
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint):
                out.uniques.add(tuple(c.name for c in constraint.columns))
        out.uniques |= {(c.name,) for c in table.columns if c.unique}
        for fk in table.foreign_key_constraints:
            out.foreign_keys.add(
                (
                    tuple(fk.column_keys),
                    fk.referred_table.name,
                    tuple(e.column.name for e in fk.elements),
                    fk.ondelete.upper() if fk.ondelete else None,
                )
            )
        for index in table.indexes:
            assert index.name is not None, f"{table.name}: declare index names"
            names = tuple(c.name for c in index.columns)
            out.indexes[str(index.name)] = (names, bool(index.unique))
    return tables


def _sqlite_on_delete(conn: sa.Connection, table: str) -> dict[tuple[str, ...], str | None]:
    """``ON DELETE`` per foreign key, from SQLite itself.

    SQLAlchemy finds SQLite's ``ON DELETE`` by parsing the ``CREATE TABLE``
    text, and misses it in the migrations' spelling (``REFERENCES t (id) ON
    DELETE CASCADE``); ``PRAGMA foreign_key_list`` reports what SQLite enforces.
    """
    rows = conn.exec_driver_sql(f'PRAGMA foreign_key_list("{table}")').all()
    columns: dict[int, list[str]] = {}
    actions: dict[int, str] = {}
    for row in rows:  # id, seq, table, from, to, on_update, on_delete, match
        columns.setdefault(row[0], []).append(row[3])
        actions[row[0]] = row[6]
    return {
        tuple(cols): None if actions[fk_id] == "NO ACTION" else actions[fk_id]
        for fk_id, cols in columns.items()
    }


def _migrated(conn: sa.Connection) -> dict[str, Table]:
    """What the database holds, read back through ``sqlalchemy.inspect``."""
    inspector = sa.inspect(conn)
    dialect = conn.dialect
    tables: dict[str, Table] = {}
    for name in inspector.get_table_names():
        if RECORDS_TABLE.match(name):
            continue
        out = tables[name] = Table()
        primary_key = inspector.get_pk_constraint(name)["constrained_columns"]
        out.primary_key = tuple(primary_key)
        for col in inspector.get_columns(name):
            nullable = bool(col["nullable"])
            if dialect.name == "sqlite" and col["name"] in primary_key:
                nullable = False  # compared as the primary key, see the module docstring
            out.columns[col["name"]] = Column(
                family=_family(col["type"]),
                nullable=nullable,
                default=_default(col["default"]),
                timezone=_timezone(col["type"], dialect),
                generated=("identity" in col) if dialect.name == "postgresql" else None,
            )
        out.uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)}
        cascades = _sqlite_on_delete(conn, name) if dialect.name == "sqlite" else {}
        for fk in inspector.get_foreign_keys(name):
            ondelete = cascades.get(tuple(fk["constrained_columns"]), fk["options"].get("ondelete"))
            out.foreign_keys.add(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    ondelete.upper() if ondelete else None,
                )
            )
        for index in inspector.get_indexes(name):
            if index.get("duplicates_constraint"):
                continue  # PostgreSQL's index behind a UNIQUE constraint, compared above
            columns = tuple(str(c) for c in index["column_names"])
            out.indexes[str(index["name"])] = (columns, bool(index["unique"]))
    return tables


@dataclass
class Pair:
    dialect: str
    migrated: dict[str, Table]
    declared: dict[str, Table]

    def common_tables(self) -> list[str]:
        return sorted(self.migrated.keys() & self.declared.keys())


@pytest.fixture
def pair(db_url: str) -> Iterator[Pair]:
    """A database migrated from nothing, and the metadata for its dialect."""
    database = Database(db_url)
    try:
        upgrade(database)
        with database.read() as conn:
            migrated = _migrated(conn)
            yield Pair(conn.dialect.name, migrated, _declared(conn.dialect))
    finally:
        database.dispose()


def _differences(
    pair: Pair, what: str, migrated: dict[str, Any], declared: dict[str, Any]
) -> list[str]:
    out = []
    for key in sorted(migrated.keys() | declared.keys()):
        have, want = migrated.get(key), declared.get(key)
        if have != want:
            out.append(f"{pair.dialect}: {what}{key}: migrations {have}, schema.py {want}")
    return out


def test_records_tables_are_left_out_by_name() -> None:
    assert RECORDS_TABLE.match(table_name(1)) and RECORDS_TABLE.match(table_name(40213))
    assert not any(RECORDS_TABLE.match(name) for name in schema.metadata.tables)


def test_same_tables(pair: Pair) -> None:
    assert sorted(pair.migrated) == sorted(pair.declared)


def test_same_columns(pair: Pair) -> None:
    problems: list[str] = []
    for name in pair.common_tables():
        have, want = pair.migrated[name].columns, pair.declared[name].columns
        problems += _differences(pair, f"column {name}.", have, want)
    assert not problems, "\n".join(problems)


def test_same_keys(pair: Pair) -> None:
    problems: list[str] = []
    for name in pair.common_tables():
        have, want = pair.migrated[name], pair.declared[name]
        where = f"{pair.dialect}: {name}"
        if have.primary_key != want.primary_key:
            problems.append(f"{where} primary key {have.primary_key} != {want.primary_key}")
        if have.uniques != want.uniques:
            problems.append(f"{where} unique {sorted(have.uniques)} != {sorted(want.uniques)}")
        if have.foreign_keys != want.foreign_keys:
            problems.append(
                f"{where} foreign keys {sorted(have.foreign_keys, key=str)}"
                f" != {sorted(want.foreign_keys, key=str)}"
            )
    assert not problems, "\n".join(problems)


def test_same_indexes(pair: Pair) -> None:
    problems: list[str] = []
    for name in pair.common_tables():
        problems += _differences(
            pair, f"index on {name}: ", pair.migrated[name].indexes, pair.declared[name].indexes
        )
    assert not problems, "\n".join(problems)
