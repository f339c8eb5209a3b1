"""Staging: the temporary tables one import fills before it applies anything,
and the log of the rows it rejects.

The staged rows are raw text, numbered densely in file order (``n``); the
apply step compares them with the stored records in SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.records import ident
from segflow.ingest.csvreader import Reject


class RejectLog:
    """The rows an import rejected: all counted, the first ``limit`` with their reason."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.details: list[Reject] = []

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.details) < self.limit:
            self.details.append(Reject(line, reason))


class Staging:
    """The temporary tables of one import, on the import's own connection."""

    def __init__(self, conn: Connection, ncols: int, key_index: int) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.ncols = ncols
        self.key_index = key_index
        suffix = uuid.uuid4().hex[:12]
        self.rows = f"sf_stage_{suffix}"
        self.keep = f"sf_keep_{suffix}"
        self.changes = f"sf_chg_{suffix}"
        self.deletes = f"sf_del_{suffix}"
        self.count = 0
        #: Whether empty cells were staged as NULL (SQLite's reading) rather
        #: than as '' (segflow's reader).
        self.nulls = False

    def key_col(self) -> str:
        return f"s{self.key_index}"

    def cell(self, index: int) -> str:
        """SQL for a staged cell (of the staged rows as ``s``) as records
        store it: NULL when empty."""
        column = f"s.s{int(index)}"
        # A NULLIF a cell is a third of comparing a large file with stored records.
        return column if self.nulls else f"NULLIF({column}, '')"

    def create(self) -> None:
        if self.dialect == "sqlite":
            # The comparison with stored records reads the whole table; through
            # the memory map that reads for scans, those pages would count as
            # the import's memory. The connection is closed after the import.
            self.conn.exec_driver_sql("PRAGMA mmap_size=0")
        collate = ' COLLATE "C"' if self.dialect == "postgresql" else ""
        cols = ", ".join(
            f"s{i} TEXT{collate if i == self.key_index else ''}" for i in range(self.ncols)
        )
        # n numbers staged rows densely in file order; an insert's sequence
        # number is derived from it without a window over the whole file.
        n = (
            "n INTEGER PRIMARY KEY"
            if self.dialect == "sqlite"
            else "n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
        )
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE {ident(self.rows)} ({n}, line BIGINT NOT NULL, {cols})"
        )
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE {ident(self.keep)} (key TEXT{collate})")

    def insert(self, batch: list[tuple[Any, ...]]) -> None:
        self.count += len(batch)
        self._load(self.rows, ["line", *(f"s{i}" for i in range(self.ncols))], batch)

    def insert_kept_keys(self, keys: list[tuple[str]]) -> None:
        if keys:
            self._load(self.keep, ["key"], keys)

    def _load(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        if self.dialect == "postgresql":
            raw = self.conn.connection.driver_connection
            assert raw is not None
            names = ", ".join(columns)
            with raw.cursor() as cur, cur.copy(f"COPY {ident(table)} ({names}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        else:
            marks = ", ".join("?" * len(columns))
            self.conn.exec_driver_sql(
                f"INSERT INTO {ident(table)} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                rows,
            )

    def staged_rows(self, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The staged rows again, as (line, *fields), in batches in file order."""
        names = ", ".join(["line", *(f"s{i}" for i in range(self.ncols))])
        result = self.conn.exec_driver_sql(
            f"SELECT {names} FROM {ident(self.rows)} ORDER BY n",  # noqa: S608 - generated
            execution_options={"stream_results": True},  # a server-side cursor on PostgreSQL
        )
        while batch := result.fetchmany(size):
            yield [tuple(row) for row in batch]

    def max_n(self) -> int:
        return int(
            self.conn.exec_driver_sql(
                f"SELECT COALESCE(MAX(n), 0) FROM {ident(self.rows)}"  # noqa: S608
            ).scalar_one()
        )

    def remove_duplicates(self) -> list[tuple[int, str, int]]:
        """Drop later rows whose key an earlier row of the file already has."""
        t = ident(self.rows)
        k = self.key_col()
        index = ident(self.rows + "_key")
        try:
            # Usually there are none, which the index alone shows.
            with self.conn.begin_nested():
                self.conn.exec_driver_sql(f"CREATE UNIQUE INDEX {index} ON {t} ({k})")
            if self.dialect == "postgresql":
                self.conn.exec_driver_sql(f"ANALYZE {t}")
            return []
        except sa.exc.IntegrityError:
            pass
        self.conn.exec_driver_sql(f"CREATE INDEX {index} ON {t} ({k}, line)")
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f"ANALYZE {t}")
        dups = [
            (int(line), str(key), int(first))
            for line, key, first in self.conn.exec_driver_sql(
                f"SELECT s.line, s.{k}, f.line FROM {t} s JOIN ("  # noqa: S608
                f"SELECT {k} AS k, MIN(n) AS first FROM {t} GROUP BY {k} "
                f"HAVING COUNT(*) > 1) d ON s.{k} = d.k JOIN {t} f ON f.n = d.first "
                "WHERE s.n > d.first ORDER BY s.n"
            )
        ]
        if dups:
            mark = "?" if self.dialect == "sqlite" else "%s"
            self.conn.exec_driver_sql(
                f"DELETE FROM {t} WHERE line = {mark}",  # noqa: S608
                [(line,) for line, _, _ in dups],
            )
            self.count -= len(dups)
        return dups
