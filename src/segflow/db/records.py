"""The typed layout of a dataset's records: one table per dataset.

Each record row holds ``rid`` (a compact integer id), ``key`` (the dataset's
key value), ``seq`` (the change sequence number of its last insert, change or
delete), ``deleted`` (a tombstone, kept so the engine can see deletes by
sequence), and for every CSV column at position ``p``:

* ``r{p}``: the raw text exactly as imported (empty cells as NULL), for
  display, export and change detection;
* ``t{p}``: the typed value, only for columns whose type is not text, so that
  numbers compare as numbers and dates as dates on both engines.

Every identifier in this module's SQL is generated here from integers, never
taken from user input; column names users see live in ``sf_dataset_columns``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import colformats, coltypes

# fullmatch: "$" would also accept a trailing newline.
_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def ident(name: str) -> str:
    """Quote a generated identifier, refusing anything that was not generated."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"refusing unsafe SQL identifier {name!r}")
    return f'"{name}"'


def table_name(dataset_id: int) -> str:
    return f"sf_rec_{int(dataset_id)}"


def raw_col(position: int) -> str:
    return f"r{int(position)}"


def typed_col(position: int) -> str:
    return f"t{int(position)}"


def has_typed(kind: str) -> bool:
    return kind not in (coltypes.TEXT, coltypes.EMPTY)


def value_col(position: int, kind: str) -> str:
    """The column a rule reads: the typed one when there is one."""
    return typed_col(position) if has_typed(kind) else raw_col(position)


def sql_type(dialect: str, kind: str) -> str:
    sqlite = dialect == "sqlite"
    return {
        coltypes.INTEGER: "BIGINT",
        coltypes.NUMBER: "DOUBLE PRECISION",
        coltypes.BOOLEAN: "BOOLEAN",
        coltypes.DATE: "TEXT" if sqlite else "DATE",
        coltypes.DATETIME: "TEXT" if sqlite else "TIMESTAMPTZ",
    }[kind]


def convert(
    dialect: str,
    kind: str,
    raw_sql: str,
    *,
    guarded: bool = False,
    fmt: str | None = None,
    plain: bool = False,
) -> str:
    """SQL turning a raw text expression into ``kind``; empty-like cells give NULL.

    The cells must have been checked by inference to fit ``kind``, unless
    ``guarded``: then a cell that does not fit gives NULL too (a stored
    typed column keeps its type when a file has such cells), at the cost of
    a function call a cell (:func:`install_fits`, on the same connection).
    ``plain``: every cell is NULL or the type's plain form, unpadded
    (``ingest.checks`` says so), and is cast as it is.

    SQLite keeps dates as ``YYYY-MM-DD`` and datetimes as UTC
    ``YYYY-MM-DD HH:MM:SS.SSS`` text, which compare correctly as strings.
    """
    if plain and fmt is None and not guarded:
        return _convert(dialect, kind, raw_sql, plain=True)
    if fmt is None:
        converted = _convert(dialect, kind, raw_sql)
    else:
        # Written as a country writes it: rewritten plainly first.
        rewritten = _plain(dialect, colformats.FORMATS[fmt], raw_sql)
        converted = (
            f"CASE WHEN {is_empty_like_sql(raw_sql)} THEN NULL "
            f"ELSE {_convert(dialect, kind, rewritten)} END"
        )
    if guarded:
        return f"CASE WHEN {fits_sql(dialect, kind, raw_sql, fmt)} THEN {converted} END"
    return converted


def _plain(
    dialect: str, shape: colformats.NumberFormat | colformats.DateFormat, raw_sql: str
) -> str:
    """SQL rewriting a formatted cell plainly: ``1.234,56`` to ``1234.56``, dates to ISO."""
    trimmed = f"TRIM({raw_sql})"
    if isinstance(shape, colformats.NumberFormat):
        out = trimmed
        for group in shape.groups:
            out = f"REPLACE({out}, '{group}', '')"
        return f"REPLACE({out}, '{shape.decimal}', '.')"
    sep = shape.separator
    if dialect == "postgresql":
        part = {p: f"split_part({trimmed}, '{sep}', {i + 1})" for i, p in enumerate(shape.order)}
        return (
            f"{part['Y']} || '-' || lpad({part['M']}, 2, '0') || '-' || lpad({part['D']}, 2, '0')"
        )
    first = f"substr({trimmed}, 1, instr({trimmed}, '{sep}') - 1)"
    rest = f"substr({trimmed}, instr({trimmed}, '{sep}') + 1)"
    parts = [first, f"substr({rest}, 1, instr({rest}, '{sep}') - 1)"]
    parts.append(f"substr({rest}, instr({rest}, '{sep}') + 1)")
    named = dict(zip(shape.order, parts, strict=True))
    numbers = ", ".join(f"CAST({named[p]} AS INTEGER)" for p in "YMD")
    return f"printf('%04d-%02d-%02d', {numbers})"


def fits_sql(dialect: str, kind: str, raw_sql: str, fmt: str | None = None) -> str:
    """SQL true when a non-empty raw cell fits ``kind`` (``coltypes.fits``), in ``fmt`` if given."""
    function = "sf_fits" if dialect == "sqlite" else "pg_temp.sf_fits"
    which = kind if fmt is None else f"{kind}|{fmt}"
    return f"{function}('{which}', {raw_sql})"


def _fits(which: str, raw: str | None) -> bool:
    kind, _, fmt = which.partition("|")
    return coltypes.fits(kind, raw, fmt or None)


def install_fits(conn: Connection) -> None:
    """Make ``fits_sql`` callable on this connection (until it closes).

    SQLite calls :func:`coltypes.fits` itself. PostgreSQL gets a function in
    the session's temporary schema: the same patterns, then a cast whose
    failure (30 February) means "does not fit".
    """
    if conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.create_function("sf_fits", 2, _fits, deterministic=True)
        return
    formats = []
    for name, shape in colformats.FORMATS.items():
        pattern = f"v ~ '^(?:{shape.pattern})$'"
        if isinstance(shape, colformats.NumberFormat):
            whole_part = f"split_part(v, '{shape.decimal}', 1)"
            pattern += (
                f" AND length(regexp_replace({whole_part}, '[^0-9]', '', 'g'))"
                f" <= {colformats.MAX_DIGITS}"
            )
            formats.append(f"IF kind = 'number|{name}' THEN RETURN {pattern}; END IF; ")
            whole = f"strpos(v, '{shape.decimal}') = 0"
            formats.append(
                f"IF kind = 'integer|{name}' THEN RETURN {pattern} AND {whole}; END IF; "
            )
        else:
            check = _plain("postgresql", shape, "v")
            formats.append(
                f"IF kind = 'date|{name}' THEN IF NOT {pattern} THEN RETURN false; END IF; "
                f"PERFORM ({check})::date; RETURN true; END IF; "
            )
    patterns = coltypes.VALUE_PATTERNS
    words = ", ".join(f"'{w}'" for w in (*coltypes.TRUE_WORDS, *coltypes.FALSE_WORDS))
    conn.exec_driver_sql(
        "CREATE OR REPLACE FUNCTION pg_temp.sf_fits(kind text, raw text) RETURNS boolean "
        "LANGUAGE plpgsql IMMUTABLE AS $body$ DECLARE v text := btrim(raw, ' '); BEGIN "
        f"IF kind = 'integer' THEN RETURN v ~ '^(?:{patterns[coltypes.INTEGER]})$'; END IF; "
        f"IF kind = 'number' THEN RETURN v ~ '^(?:{patterns[coltypes.NUMBER]})$'; END IF; "
        f"IF kind = 'boolean' THEN RETURN lower(v) IN ({words}); END IF; "
        f"IF kind = 'date' THEN IF v !~ '^(?:{patterns[coltypes.DATE]})$' THEN RETURN false; "
        "END IF; PERFORM v::date; RETURN true; END IF; "
        f"IF kind = 'datetime' THEN IF v !~ '^(?:{patterns[coltypes.DATETIME]})$' "
        "THEN RETURN false; END IF; PERFORM v::timestamptz; RETURN true; END IF; "
        + "".join(formats)
        + "RETURN kind = 'text'; "
        "EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow "
        "OR invalid_text_representation THEN RETURN false; END $body$"
    )


def empty_like_list() -> str:
    """``coltypes.EMPTY_LIKE`` (as the process has it now) as the items of an SQL
    ``IN`` list; its words hold no quote (``coltypes.empty_like_words``)."""
    return _sql_list(coltypes.EMPTY_LIKE)


@functools.lru_cache(maxsize=4)
def _sql_list(words: frozenset[str]) -> str:
    return ", ".join(f"'{word}'" for word in sorted(words))


def is_empty_like_sql(raw_sql: str) -> str:
    """SQL true when a raw cell holds no value (``coltypes.is_empty_like``; NULL included)."""
    return f"COALESCE(LOWER(TRIM({raw_sql})) IN ('', {empty_like_list()}), TRUE)"


def _convert(dialect: str, kind: str, raw_sql: str, *, plain: bool = False) -> str:
    # No empty-like word holds a digit, and every number and date does: a
    # cell with a digit skips the word test (its LOWER and IN list cost as
    # much as the conversion itself, on every typed cell of an import).
    digit = f"{raw_sql} GLOB '*[0-9]*'" if dialect == "sqlite" else f"{raw_sql} ~ '[0-9]'"
    value = (
        raw_sql
        if plain
        else f"CASE WHEN {digit} THEN NULLIF(TRIM({raw_sql}), '') "
        f"WHEN LOWER(TRIM({raw_sql})) IN ({empty_like_list()}) THEN NULL "
        f"ELSE NULLIF(TRIM({raw_sql}), '') END"
    )
    if kind == coltypes.INTEGER:
        return f"CAST({value} AS BIGINT)"
    if kind == coltypes.NUMBER:
        return f"CAST({value} AS DOUBLE PRECISION)"
    if kind == coltypes.BOOLEAN:
        # One LOWER(TRIM()) a value, and no IN list: in a statement run once
        # a row (SQLite's executemany), an IN list is rebuilt for every row.
        # Pairs in turn (true, false, yes, no, ...): a false value is found
        # after two comparisons instead of five.
        words = [
            (word, flag)
            for pair in zip(coltypes.TRUE_WORDS, coltypes.FALSE_WORDS, strict=True)
            for word, flag in zip(pair, ("TRUE", "FALSE"), strict=True)
        ]
        whens = " ".join(f"WHEN '{w}' THEN {b}" for w, b in words)
        word = raw_sql if plain else f"TRIM({raw_sql})"
        return f"CASE LOWER({word}) {whens} END"
    if kind == coltypes.DATE:
        return value if dialect == "sqlite" else f"CAST({value} AS DATE)"
    if kind == coltypes.DATETIME:
        if dialect == "sqlite":
            return f"strftime('%Y-%m-%d %H:%M:%f', {value})"
        return f"CAST({value} AS TIMESTAMPTZ)"
    raise ValueError(f"no conversion for {kind!r}")


class ColumnInfo(Protocol):
    @property
    def position(self) -> int: ...

    @property
    def type(self) -> str: ...


def table(name: str, columns: Iterable[ColumnInfo]) -> sa.TableClause:
    """A Core view of a records table, or of a copy of its rows under another name."""
    cols: list[sa.ColumnClause[Any]] = [
        sa.column("rid", sa.BigInteger),
        sa.column("key", sa.Text),
        sa.column("seq", sa.BigInteger),
        sa.column("deleted", sa.Boolean),
    ]
    for c in columns:
        cols.append(sa.column(raw_col(c.position), sa.Text))
        if has_typed(c.type):
            cols.append(sa.column(typed_col(c.position), _CORE_TYPES.get(c.type, sa.Text)))
    return sa.table(name, *cols)


_CORE_TYPES: dict[str, Any] = {
    coltypes.INTEGER: sa.BigInteger,
    coltypes.NUMBER: sa.Float,
    coltypes.BOOLEAN: sa.Boolean,
}


def create_table(conn: Connection, dialect: str, table: str, *, indexes: bool = True) -> None:
    """Create a dataset's records table; ``indexes=False`` defers its indexes.

    A first import loads faster into a bare table and builds the key and
    sequence indexes afterwards with :func:`create_indexes`.
    """
    t = ident(table)
    if dialect == "sqlite":
        conn.exec_driver_sql(
            f"CREATE TABLE {t} (rid INTEGER PRIMARY KEY, key TEXT NOT NULL, "
            "seq INTEGER NOT NULL, deleted BOOLEAN NOT NULL DEFAULT FALSE)"
        )
    else:
        # The primary key comes with the other indexes: maintained row by row,
        # it took 3.5 s of a first import's 6 s insert of 1M rows.
        conn.exec_driver_sql(
            f"CREATE TABLE {t} (rid BIGINT GENERATED BY DEFAULT AS IDENTITY, "
            'key TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, '
            "deleted BOOLEAN NOT NULL DEFAULT FALSE)"
        )
    if indexes:
        create_indexes(conn, table)


def create_indexes(conn: Connection, table: str) -> None:
    """A new records table's indexes (on PostgreSQL its primary key too)."""
    t = ident(table)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ALTER TABLE {t} ADD PRIMARY KEY (rid)")
    conn.exec_driver_sql(f"CREATE UNIQUE INDEX {ident(table + '_key')} ON {t} (key)")
    create_seq_index(conn, table)


def column_index(table: str, column: str) -> str:
    """The name of the index segflow puts on one column (for time windows)."""
    return f"{table}_{column}"


def create_seq_index(conn: Connection, table: str) -> None:
    conn.exec_driver_sql(f"CREATE INDEX {ident(table + '_seq')} ON {ident(table)} (seq)")


def index_column(conn: Connection, table: str, column: str) -> None:
    name = ident(column_index(table, column))
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {ident(table)} ({ident(column)})")


def drop_table(conn: Connection, table: str) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {ident(table)}")


def add_column(conn: Connection, dialect: str, table: str, position: int, kind: str) -> None:
    conn.exec_driver_sql(f"ALTER TABLE {ident(table)} ADD COLUMN {ident(raw_col(position))} TEXT")
    if has_typed(kind):
        add_typed_column(conn, dialect, table, position, kind)


def add_typed_column(conn: Connection, dialect: str, table: str, position: int, kind: str) -> None:
    """Give a column whose stored cells are all empty a typed column (empty too)."""
    conn.exec_driver_sql(
        f"ALTER TABLE {ident(table)} ADD COLUMN {ident(typed_col(position))} "
        f"{sql_type(dialect, kind)}"
    )


def fill_typed_column(
    conn: Connection, dialect: str, table: str, position: int, kind: str, fmt: str | None = None
) -> None:
    """Give a text column whose values all convert to ``kind`` (in ``fmt``) its typed column."""
    add_typed_column(conn, dialect, table, position, kind)
    raw = ident(raw_col(position))
    conn.exec_driver_sql(
        f"UPDATE {ident(table)} SET {ident(typed_col(position))} = "  # noqa: S608 - generated
        f"{convert(dialect, kind, raw, fmt=fmt)} WHERE {raw} IS NOT NULL"
    )


def has_values(conn: Connection, table: str, position: int) -> bool:
    """Whether any record (tombstones hold none) has a value in this column."""
    column = ident(raw_col(position))
    found = conn.exec_driver_sql(
        f"SELECT 1 FROM {ident(table)} WHERE {column} IS NOT NULL LIMIT 1"  # noqa: S608
    ).first()
    return found is not None


def retype_column(
    conn: Connection, dialect: str, table: str, position: int, new: str, fmt: str | None = None
) -> None:
    """Widen a column's stored typed values to the type ``new``, for every row.

    Types only widen (see ``coltypes.widen``), so the column already has a
    typed column and every stored raw value with a typed value converts to
    ``new``. A cell kept without one (it did not fit the column's type, see
    ``segflow.ingest.columns``) stays without: converting its raw text would
    read ``abc`` as 0 on SQLite and fail on PostgreSQL.
    """
    t = ident(table)
    raw = ident(raw_col(position))
    typed = ident(typed_col(position))
    if not has_typed(new):
        # SQLite cannot drop an indexed column; the index served time windows
        # that a text column no longer has.
        conn.exec_driver_sql(
            f"DROP INDEX IF EXISTS {ident(column_index(table, typed_col(position)))}"
        )
        conn.exec_driver_sql(f"ALTER TABLE {t} DROP COLUMN {typed}")
        return
    converted = (
        f"CASE WHEN {typed} IS NULL THEN NULL ELSE {convert(dialect, new, raw, fmt=fmt)} END"
    )
    refill = f"UPDATE {t} SET {typed} = {converted}"  # noqa: S608 - generated
    if dialect == "sqlite":
        # SQLite's column affinity accepts the wider values as they are.
        conn.exec_driver_sql(refill)
    else:
        conn.exec_driver_sql(
            f"ALTER TABLE {t} ALTER COLUMN {typed} TYPE {sql_type(dialect, new)} USING {converted}"
        )


def replace_typed_column(
    conn: Connection, dialect: str, table: str, position: int, new: str, fmt: str | None = None
) -> None:
    """Give a typed column a typed column of another kind, converted from the raw values.

    For the user's explicit retype (``segflow.retype``), which may narrow:
    the old typed column and its index go, and every stored raw value must
    fit ``new`` (empty-like ones become NULL).
    """
    typed = ident(typed_col(position))
    conn.exec_driver_sql(f"DROP INDEX IF EXISTS {ident(column_index(table, typed_col(position)))}")
    conn.exec_driver_sql(f"ALTER TABLE {ident(table)} DROP COLUMN {typed}")
    fill_typed_column(conn, dialect, table, position, new, fmt)


def tombstone(
    conn: Connection,
    table: str,
    columns: Iterable[ColumnInfo],
    *,
    seq: str,
    where: str,
    params: tuple[Any, ...],
    key: str | None = None,
) -> None:
    """Make records tombstones: deleted, every value emptied, with a new sequence number.

    The row stays (with its rid) so that the engine sees the delete by its
    sequence number. ``seq`` is the SQL of that number, ``where`` the clause
    choosing the records (``FROM ... WHERE ...`` or ``WHERE ...``) and ``key``,
    if given, the SQL of a key replacing the record's; ``params`` fill their
    placeholders in that order.
    """
    sets = [f"seq = {seq}", "deleted = TRUE"]
    if key is not None:
        sets.append(f"key = {key}")
    for column in columns:
        sets.append(f"{ident(raw_col(column.position))} = NULL")
        if has_typed(column.type):
            sets.append(f"{ident(typed_col(column.position))} = NULL")
    conn.exec_driver_sql(
        f"UPDATE {ident(table)} SET {', '.join(sets)} {where}",  # noqa: S608 - generated
        params,
    )
