"""The apply step: staged rows into a dataset, in one write transaction.

Under the write lock the step takes the change sequence, finds or creates the
dataset, compares staged rows with stored records in SQL, fits the dataset's
columns to the file, and writes inserts, real changes and (in replace mode)
deletes, each with its own next sequence number. Changed records are numbered
in record order and new ones after them in key order, so the writes walk the
records table and its key index front to back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.datasets import Column, load_dataset
from segflow.db import records, sequence
from segflow.db.records import ident
from segflow.db.schema import datasets
from segflow.errors import ImportFailed
from segflow.ingest import columns, guard
from segflow.ingest.checks import ColumnChecks
from segflow.ingest.options import REPLACE, ImportOptions
from segflow.ingest.staging import Staging


@dataclass
class Outcome:
    """What an import wrote into its dataset."""

    dataset_id: int
    created: bool
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    #: Columns that kept their type while this file had cells not fitting it:
    #: column, type, count and the first few as examples (line, value).
    misfits: list[dict[str, Any]] = field(default_factory=list)
    #: Things the user should know about how columns were read.
    notes: list[str] = field(default_factory=list)


def apply(
    conn: Connection,
    staging: Staging,
    options: ImportOptions,
    header: list[str],
    checks: ColumnChecks,
    now: dt.datetime,
    *,
    delete_limit: int | None = None,
    source: str | None = None,
) -> Outcome:
    """Write the staged rows into the dataset, under the write lock.

    ``checks`` are the file's column checks (its types, and which columns
    hold only plain values).

    In replace mode the records to delete are found before anything is
    written, and with a ``delete_limit`` (percent) the import is refused
    there when they are too many (``guard.check``).
    """
    numbers = sequence.take(conn)
    target = _target(conn, options.dataset, header[staging.key_index], now)
    write = _Writes(conn, staging, target.table, numbers.base)
    outcome = Outcome(dataset_id=target.dataset_id, created=target.created)

    empty = write.records_empty()
    if not (empty or staging.deduped):
        # Records arrived since the import began: the comparison needs one
        # staged row a key, found outside this transaction.
        raise NotDeduped
    missing = 0
    if options.mode == REPLACE and not empty:
        missing = write.find_missing()
        if delete_limit is not None:
            guard.check(
                conn,
                deletes_table=staging.deletes,
                dataset_id=target.dataset_id,
                live=target.record_count,
                deleted=missing,
                limit=delete_limit,
                source=source,
            )
    total = fresh = revived = 0
    if not empty:
        total, fresh, revived = write.compare(header, target.existing)

    misfits: set[int] = set()
    mapping = columns.fit_columns(
        conn,
        target.dataset_id,
        target.table,
        header,
        checks.types,
        target.existing,
        created=target.created,
        changes=outcome.schema_changes,
        misfits=misfits,
        notes=outcome.notes,
    )
    write.plain = {i for i, plain in enumerate(checks.plain) if plain} - misfits
    if misfits:
        records.install_fits(conn)
        write.guarded = misfits
        counted = (write.misfits(i, mapping[i]) for i in sorted(misfits))
        outcome.misfits = [m for m in counted if m["count"]]
    outcome.columns = sorted(target.existing.values(), key=lambda c: c.position)

    if empty:
        # A new or emptied dataset: every staged row is an insert, no comparison needed.
        numbered = write.insert_all_once(mapping, created=target.created)
        total = fresh = staging.count  # after any repeated keys were dropped
        revived = 0
    else:
        numbered = total
        write.write_compared(mapping, fresh=fresh, total=total)
    outcome.inserted = fresh + revived
    outcome.updated = total - fresh - revived
    outcome.unchanged = staging.count - total

    if missing:
        write.delete_missing(outcome.columns, after=numbered)
        outcome.deleted = missing

    used = numbered + outcome.deleted
    if used:
        outcome.first_seq, outcome.last_seq = numbers.base + 1, numbers.use(used)
    if used or target.created or outcome.schema_changes:
        conn.execute(
            sa.update(datasets)
            .where(datasets.c.id == target.dataset_id)
            .values(
                record_count=target.record_count + outcome.inserted - outcome.deleted,
                updated_at=now,
            )
        )
    return outcome


class NotDeduped(Exception):
    """Raised before any write: the dataset has records and the staged rows
    were not yet checked for repeated keys (``Staging.remove_duplicates``)."""


@dataclass
class _Target:
    """The dataset an import writes into, as its write transaction found or made it."""

    dataset_id: int
    table: str
    record_count: int
    created: bool
    #: Its columns by folded name, which the file's columns then add to.
    existing: dict[str, Column]


def _target(conn: Connection, name: str, key_name: str, now: dt.datetime) -> _Target:
    """The dataset, locked; created (with no columns yet) if it does not exist."""
    dataset = load_dataset(conn, name, lock=True)
    if dataset is None:
        dataset_id, table = columns.create_dataset(conn, name, key_name, now)
        return _Target(dataset_id, table, 0, created=True, existing={})
    if dataset.key_column.casefold() != key_name.casefold():
        raise ImportFailed(
            f"dataset {dataset.name!r} was created meanwhile with key "
            f"{dataset.key_column!r}; import again",
            file=None,
        )
    existing = {c.name.casefold(): c for c in dataset.columns}
    return _Target(dataset.id, dataset.records_table, dataset.record_count, False, existing)


class _Writes:
    """The statements of one apply step, over the records table (``rec``) and
    the staged rows (``s``); sequence numbers are ``base`` + a row number."""

    def __init__(self, conn: Connection, staging: Staging, table: str, base: int) -> None:
        self.conn = conn
        self.staging = staging
        self.table = table
        self.base = base
        self.dialect = conn.dialect.name
        self.mark = "?" if self.dialect == "sqlite" else "%s"
        self.r, self.s, self.k = ident(table), ident(staging.rows), staging.key_col()
        #: File columns whose cells may not fit their column's type.
        self.guarded: set[int] = set()
        #: File columns whose every cell is empty or its type's plain form.
        self.plain: set[int] = set()

    def misfits(self, index: int, column: Column, examples: int = 3) -> dict[str, Any]:
        """How many of the file's cells in column ``index`` do not fit its stored type."""
        cell = f"s.s{int(index)}"
        misfit = (
            f"{cell} IS NOT NULL AND NOT ({records.is_empty_like_sql(cell)}) "
            f"AND NOT {records.fits_sql(self.dialect, column.type, cell, column.format)}"
        )
        count = int(
            self.conn.exec_driver_sql(
                f"SELECT COUNT(*) FROM {self.s} s WHERE {misfit}"  # noqa: S608 - generated
            ).scalar_one()
        )
        shown = self.conn.exec_driver_sql(
            f"SELECT s.line, {cell} FROM {self.s} s WHERE {misfit} "  # noqa: S608 - generated
            f"ORDER BY s.n LIMIT {int(examples)}"
        ).all()
        return {
            "column": column.name,
            "type": column.type,
            "count": count,
            "examples": [{"line": int(line), "value": value} for line, value in shown],
        }

    def records_empty(self) -> bool:
        found = self.conn.exec_driver_sql(f"SELECT 1 FROM {self.r} LIMIT 1").first()  # noqa: S608
        return found is None

    def compare(self, header: list[str], existing: dict[str, Column]) -> tuple[int, int, int]:
        """Number the staged rows that differ from their stored records (new,
        changed or revived) into ``staging.changes``; (all, new, revived)."""
        r, s, k = self.r, self.s, self.k
        staged = self.staging.cell
        differs = []
        for i, name in enumerate(header):
            stored = existing.get(name.casefold())
            if i == self.staging.key_index:
                continue
            if stored is None:  # a new column: stored records have no value in it
                differs.append(f"{staged(i)} IS NOT NULL")
            else:
                raw = ident(records.raw_col(stored.position))
                differs.append(f"rec.{raw} IS DISTINCT FROM {staged(i)}")
        changed = " OR ".join(["rec.rid IS NULL", "rec.deleted", *differs])
        chg = ident(self.staging.changes)
        # Changed records are numbered in record order, so the update walks
        # the records table front to back; new ones after them in key order,
        # which keeps their writes into the key index local.
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE {chg} AS SELECT s.n AS sn, rec.rid AS rid, "  # noqa: S608
            "CASE WHEN rec.deleted THEN 1 ELSE 0 END AS revived, "
            f"ROW_NUMBER() OVER (ORDER BY rec.rid IS NULL, rec.rid, s.{k}) AS n "
            f"FROM {s} s LEFT JOIN {r} rec ON rec.key = s.{k} WHERE {changed}"
        )
        total, fresh, revived = (
            int(v)
            for v in self.conn.exec_driver_sql(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN rid IS NULL THEN 1 ELSE 0 END), 0), "  # noqa: S608
                f"COALESCE(SUM(revived), 0) FROM {chg}"
            ).one()
        )
        return total, fresh, revived

    def _record_values(self, mapping: list[Column]) -> tuple[list[str], list[str], list[str]]:
        """A record's columns, their values from a staged row (``seq``'s left
        empty) and the same as assignments, for the dataset's columns ``mapping``."""
        staged = self.staging.cell
        names, values, sets = ["key", "seq", "deleted"], [f"s.{self.k}", "", "FALSE"], []
        for i, col in enumerate(mapping):
            raw = ident(records.raw_col(col.position))
            names.append(raw)
            values.append(staged(i))
            sets.append(f"{raw} = {staged(i)}")
            if records.has_typed(col.type):
                typed = ident(records.typed_col(col.position))
                plain = i in self.plain
                conversion = records.convert(
                    self.dialect,
                    col.type,
                    # A plain cast needs NULL for an empty cell, not ''.
                    staged(i) if plain else f"s.s{i}",
                    guarded=i in self.guarded,
                    fmt=col.format,
                    plain=plain,
                )
                names.append(typed)
                values.append(conversion)
                sets.append(f"{typed} = {conversion}")
        return names, values, sets

    def _insert(self, mapping: list[Column], seq: str, source: str) -> None:
        names, values, _sets = self._record_values(mapping)
        values[1] = seq
        self.conn.exec_driver_sql(
            f"INSERT INTO {self.r} ({', '.join(names)}) SELECT {', '.join(values)} {source}",
            (self.base,),
        )

    def insert_all(self, mapping: list[Column]) -> int:
        """Insert every staged row; the sequence numbers this used.

        Numbers of duplicate rows dropped from the file stay unused.
        """
        if not self.staging.count:
            return 0
        self._insert(mapping, f"{self.mark} + s.n", f"FROM {self.s} s")
        return self.staging.max_n()

    def insert_all_once(self, mapping: list[Column], *, created: bool) -> int:
        """Insert every staged row into an empty dataset, each key once (a new
        dataset's indexes built afterwards); the sequence numbers this used.

        Where the file's keys were not checked for repeats yet, the records'
        own unique key index does it: a file without repeats (nearly every
        one) costs no index on the staged rows. Only when it finds one are
        the staged repeats removed and the rows written again.
        """
        if self.staging.deduped:
            return self._insert_with_indexes(mapping, created)
        try:
            with self.conn.begin_nested():
                return self._insert_with_indexes(mapping, created)
        except sa.exc.IntegrityError:
            if created and self.dialect == "postgresql":
                # The rolled-back rows stay in the new table as dead tuples
                # (twice its size); a table made in this transaction can be
                # emptied for good.
                self.conn.exec_driver_sql(f"TRUNCATE {self.r} RESTART IDENTITY")
            self.staging.remove_duplicates()
            return self._insert_with_indexes(mapping, created)

    def _insert_with_indexes(self, mapping: list[Column], created: bool) -> int:
        numbered = self.insert_all(mapping)
        if created:
            records.create_indexes(self.conn, self.table)
        return numbered

    def write_compared(self, mapping: list[Column], *, fresh: int, total: int) -> None:
        """Write the compared rows: ``fresh`` inserts, the rest of ``total`` updates."""
        r, s, mark, chg = self.r, self.s, self.mark, ident(self.staging.changes)
        if fresh:
            self._insert(
                mapping,
                f"{mark} + c.n",
                f"FROM {chg} c JOIN {s} s ON s.n = c.sn WHERE c.rid IS NULL ORDER BY c.n",
            )
        if total - fresh:
            _names, _values, sets = self._record_values(mapping)
            self.conn.exec_driver_sql(
                f"UPDATE {r} SET seq = {mark} + c.n, deleted = FALSE, {', '.join(sets)} "  # noqa: S608
                f"FROM {chg} c JOIN {s} s ON s.n = c.sn WHERE {r}.rid = c.rid",
                (self.base,),
            )

    def find_missing(self) -> int:
        """Replace mode: number the live records the file does not have into
        ``staging.deletes``, before any write; how many.

        Writing the file's rows changes none of them: a record the file has
        is not among them, and one the file does not have is not written.
        """
        r, s, k = self.r, self.s, self.k
        keep, dels = ident(self.staging.keep), ident(self.staging.deletes)
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE {dels} AS SELECT rec.rid AS rid, "  # noqa: S608
            f"ROW_NUMBER() OVER (ORDER BY rec.key) AS n FROM {r} rec "
            f"WHERE NOT rec.deleted AND NOT EXISTS (SELECT 1 FROM {s} s WHERE s.{k} = rec.key) "
            f"AND NOT EXISTS (SELECT 1 FROM {keep} kk WHERE kk.key = rec.key)"
        )
        return int(self.conn.exec_driver_sql(f"SELECT COUNT(*) FROM {dels}").scalar_one())  # noqa: S608

    def delete_missing(self, dataset_columns: list[Column], *, after: int) -> None:
        """Tombstone the records ``find_missing`` found, numbered after the
        ``after`` numbers already used."""
        r, dels = self.r, ident(self.staging.deletes)
        records.tombstone(
            self.conn,
            self.table,
            dataset_columns,
            seq=f"{self.mark} + d.n",
            where=f"FROM {dels} d WHERE {r}.rid = d.rid",
            params=(self.base + after,),
        )
