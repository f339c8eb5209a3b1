"""Datasets: CSV import (parse, infer types, upsert by key, change sequence) and queries.

An import runs in two phases on one connection of its own:

1. *Staging*: the CSV streams into a temporary table, raw text only, while
   column types and identifier quality are worked out. No lock on segflow's
   own tables is held, so other work carries on.
2. *Apply*: one write transaction takes the change-sequence row (so sequence
   order is commit order), compares staged rows with stored ones, creates or
   widens the dataset's columns, and writes inserts, real changes and (in
   replace mode) deletes, each with its own next sequence number.

The rows come from segflow's reader (``_PythonRows``), or on SQLite, for a
file that may be plain, from SQLite reading the file itself
(``_SqliteRows``, ``segflow.csvtable``) while helper processes check it. A
new dataset then skips staging: its records are copied from the file inside
the write transaction. When the helpers find the file was not plain, that
work is rolled back and the import starts again with segflow's reader.

Either the whole file is applied or nothing is: a failure or a kill at any
point leaves the dataset exactly as it was.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import coltypes
from segflow.activation.links import refuse_if_linked
from segflow.config import Settings
from segflow.db import records
from segflow.db.engine import Database
from segflow.db.records import ident
from segflow.db.schema import change_sequence, dataset_columns, datasets, imports, segments
from segflow.db.scope import owned, workspace_of
from segflow.errors import ImportFailed, InvalidInput, NotFound
from segflow.ingest import csvtable
from segflow.ingest.checks import ColumnChecks, Helper, Job
from segflow.ingest.checks import merge as checks_merge
from segflow.ingest.csvreader import CsvReader, Reject
from segflow.ingest.quality import QualityCounter
from segflow.progress import APPLYING, DONE, READING, Progress, ProgressFn

UPSERT = "upsert"
REPLACE = "replace"
MODES = (UPSERT, REPLACE)
DEFAULT_KEYS = ("id", "customer_id", "email")
BATCH_ROWS = 10_000
#: Rejects kept in the stored import history (the returned summary keeps more).
STORED_REJECTS = 1_000

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Column:
    position: int
    name: str
    type: str


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


@dataclass(frozen=True)
class ImportOptions:
    dataset: str
    key: str | None = None
    mode: str = UPSERT
    delimiter: str | None = None
    encoding: str = "utf-8"


def validate_dataset_name(name: str) -> str:
    if not _NAME.match(name):
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
        sa.select(dataset_columns.c.position, dataset_columns.c.name, dataset_columns.c.type)
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
        columns=tuple(Column(p, n, t) for p, n, t in cols),
    )


def find_dataset(db: Database, name: str) -> Dataset | None:
    with db.read() as conn:
        return load_dataset(conn, name)


def get_dataset(db: Database, name: str) -> Dataset:
    with db.read() as conn:
        return require(conn, name)


def require(conn: Connection, name: str, *, lock: bool = False) -> Dataset:
    """The dataset of this name in the connection's workspace, or NotFound naming the others."""
    dataset = load_dataset(conn, name, lock=lock)
    if dataset is None:
        names = (
            conn.execute(
                sa.select(datasets.c.name).where(owned(conn, datasets)).order_by(datasets.c.name)
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
        dataset = load_dataset(conn, name)
        if dataset is None:
            raise NotFound(f"no dataset named {name!r}")
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
            {"name": c.name, "type": c.type, "non_empty": int(n)}
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
    with db.write() as conn:
        dataset = load_dataset(conn, name, lock=True)
        if dataset is None:
            raise NotFound(f"no dataset named {name!r}")
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
        dataset = load_dataset(conn, name)
        if dataset is None:
            raise NotFound(f"no dataset named {name!r}")
        table = records.table(dataset.records_table, dataset.columns)
        raw = [table.c[records.raw_col(c.position)] for c in dataset.columns]
        rows = conn.execute(
            sa.select(*raw).where(table.c.deleted == sa.false()).order_by(table.c.key).limit(limit)
        ).all()
    return [dict(zip((c.name for c in dataset.columns), row, strict=True)) for row in rows]


# ---------------------------------------------------------------------- import


class _RejectLog:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.details: list[Reject] = []

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.details) < self.limit:
            self.details.append(Reject(line, reason))


class _Staging:
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


class _BackgroundWriter:
    """Writes staged batches on a second thread while the next batch is parsed.

    SQLite and psycopg release the GIL while the database does its work, so
    parsing and storing overlap on two cores. At most two batches wait.
    """

    def __init__(self, staging: _Staging) -> None:
        self.staging = staging
        self.rows = 0
        self._queue: queue.Queue[tuple[list[tuple[Any, ...]], list[str]] | None] = queue.Queue(2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="segflow-stage", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def put(self, batch: list[tuple[Any, ...]], kept: list[str]) -> None:
        if self._error is not None:
            raise self._error
        self.rows += len(batch)
        self._queue.put((batch, kept))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so the producer never blocks on a dead writer
            try:
                batch, kept = item
                if batch:
                    self.staging.insert(batch)
                if kept:
                    self.staging.insert_kept_keys([(k,) for k in kept])
            except BaseException as exc:  # re-raised on the importing thread
                self._error = exc

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc is None:
            raise self._error


def _resolve_key(header: list[str], existing: Dataset | None, key: str | None, source: str) -> int:
    folded = [h.casefold() for h in header]
    if existing is not None:
        if key is not None and key.casefold() != existing.key_column.casefold():
            raise ImportFailed(
                f"dataset {existing.name!r} is keyed by {existing.key_column!r}; its key "
                f"cannot change to {key!r}",
                file=source,
            )
        wanted = existing.key_column
    elif key is not None:
        wanted = key
    else:
        found = next((k for k in DEFAULT_KEYS if k in folded), None)
        if found is None:
            raise ImportFailed(
                "no key column given and none of " + ", ".join(DEFAULT_KEYS) + " is present; "
                "choose one with --key (columns: " + ", ".join(header) + ")",
                file=source,
            )
        wanted = found
    if wanted.casefold() not in folded:
        raise ImportFailed(
            f"the key column {wanted!r} is not in the file (columns: {', '.join(header)})",
            file=source,
            line=1,
        )
    return folded.index(wanted.casefold())


def import_csv(
    db: Database,
    stream: BinaryIO,
    options: ImportOptions,
    *,
    source: str,
    now: dt.datetime,
    total_bytes: int | None = None,
    progress: ProgressFn | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Import one CSV stream into a dataset; return the import summary.

    Raises :class:`ImportFailed` for a file that cannot be imported at all,
    in which case nothing was stored.
    """
    settings = settings or Settings()
    started = time.monotonic()
    validate_dataset_name(options.dataset)
    if options.mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    offset = _position(stream)
    reader = _open_reader(stream, options, source, settings)
    header = reader.header
    key_index = _resolve_key(header, find_dataset(db, options.dataset), options.key, source)
    run = _Run(db, options, source, now, header, key_index, settings, started, total_bytes)
    run.report = progress or run.report
    job = Job(offset or 0, options.encoding, reader.delimiter, settings.max_field_chars, key_index)
    helper = plain = None
    if offset is not None and _worth_a_helper(stream, total_bytes, settings):
        if offset == 0 and db.is_sqlite and settings.sqlite_reads_csv:
            plain = _SqliteRows.start(stream, reader, job, header)
        if plain is None:
            helper = Helper.start(stream, job)
    try:
        if plain is not None:
            try:
                return run.execute(plain)
            except _NotPlain as exc:
                log.debug("%s: staging from Python: %s", source, exc)
            finally:
                plain.cancel()
            stream.seek(0)  # SQLite reads only files it is given from their start
            reader = _open_reader(stream, options, source, settings)
            helper = Helper.start(stream, job)
        return run.execute(_PythonRows(reader, helper, header))
    finally:
        if helper is not None:
            helper.cancel()


def _open_reader(
    stream: BinaryIO, options: ImportOptions, source: str, settings: Settings
) -> CsvReader:
    return CsvReader(
        stream,
        source=source,
        encoding=options.encoding,
        delimiter=options.delimiter,
        max_field_chars=settings.max_field_chars,
    )


class _NotPlain(Exception):
    """The rows SQLite staged cannot be used; the import stages them from Python."""


class _PythonRows:
    """The file's rows as segflow's reader parses them, in this process."""

    def __init__(self, reader: CsvReader, helper: Helper | None, header: list[str]) -> None:
        self.reader = reader
        self.delimiter = reader.delimiter
        self.helper = helper
        self.checks = ColumnChecks(header)
        self._checked = helper is None  # checked while staging
        self.guessed_types: list[str] | None = None

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    def stage(self, staging: _Staging, run: _Run) -> None:
        with _BackgroundWriter(staging) as writer:
            for batch, bad, kept in self.reader.batches(BATCH_ROWS, staging.key_index):
                for reject in bad:
                    run.rejects.add(reject.line, reject.reason)
                if self.helper is None:
                    self.checks.add(batch)
                writer.put(batch, kept)
                run.report(Progress(READING, self.reader.bytes_read, run.total_bytes, writer.rows))
        # Now, while duplicate rows are still staged: they were checked too.
        self.finish_checks(staging)

    def finish_checks(self, staging: _Staging) -> ColumnChecks:
        if not self._checked:
            self._checked = True
            assert self.helper is not None
            answer = self.helper.answer(self.reader.bytes_read, self.reader.crc)
            if answer is not None:
                self.checks.load(answer)
            else:
                # The helper failed, or read other bytes than this reader
                # (the file changed meanwhile): check what was staged, which
                # is what will be stored.
                for batch in staging.staged_rows(BATCH_ROWS):
                    self.checks.add(batch)
        return self.checks


class _SqliteRows:
    """The file's rows as SQLite reads them (``segflow.csvtable``), used only
    when the helper finds the file plain."""

    def __init__(
        self,
        fd: int,
        reader: CsvReader,
        helpers: list[Helper],
        guessed_types: list[str],
        before: csvtable.FileState,
    ) -> None:
        self.fd = fd
        self.delimiter = reader.delimiter
        self.helpers = helpers
        self.checks = ColumnChecks(reader.header)
        #: The first rows' types, with which a new dataset's records are
        #: written before the helpers have the whole file's.
        self.guessed_types: list[str] | None = guessed_types
        # Bytes per row in what the reader has read so far, for progress.
        self._row_bytes = max(1, reader.bytes_read // max(1, reader.lines_split))
        #: The file as the helpers started reading it; it must be the same
        #: file, unchanged, when they have answered and SQLite has read it.
        self._before = before
        self._size = before.size
        self._staged = 0
        self._checked = False

    @classmethod
    def start(
        cls, stream: BinaryIO, reader: CsvReader, job: Job, header: list[str]
    ) -> _SqliteRows | None:
        """SQLite's reading of a file that may be plain, with helper processes
        checking its two halves; None if it cannot be plain or read so."""
        if codecs.lookup(reader.encoding).name != "utf-8" or not reader.plain:
            return None
        if reader.delimiter not in csvtable.DELIMITERS:
            return None
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        if csvtable.path_of(fd) is None:
            return None
        # Before any helper starts: a bad first row raises the import's error.
        first_batch, _rejects, _kept = next(reader.batches(BATCH_ROWS, job.key_index))
        guesses = [coltypes.EMPTY] * len(header)
        for column, values in enumerate(zip(*first_batch, strict=True)):
            if column:  # not the line numbers
                guesses[column - 1] = coltypes.batch_type(coltypes.EMPTY, values)
        before = csvtable.file_state(fd)
        helpers: list[Helper] = []
        for part in job.split(fd, before.size, header):
            helper = Helper.start(stream, part)
            if helper is None:
                for started in helpers:
                    started.cancel()
                return None
            helpers.append(helper)
        return cls(fd, reader, helpers, guesses, before)

    def cancel(self) -> None:
        for helper in self.helpers:
            helper.cancel()

    @property
    def bytes_read(self) -> int:
        return self._size

    def stage(self, staging: _Staging, run: _Run) -> None:
        fields = [f"c{i}" for i in range(staging.ncols)]
        staging.nulls = True
        staging.count = self.copy(
            staging.conn,
            run,
            into=staging.rows,
            # n is left to SQLite (see ``_Run._load_new``): the same 1, 2, ...
            columns=["line", *(f"s{i}" for i in range(staging.ncols))],
            values=["rowid + 1", *fields],
            nulls=True,
        )

    def copy(
        self,
        conn: Connection,
        run: _Run,
        *,
        into: str,
        columns: list[str],
        values: list[str],
        params: tuple[Any, ...] = (),
        nulls: bool = False,
    ) -> int:
        """Copy the file's lines into a table (see ``csvtable.copy``); return how many."""
        if not csvtable.available(conn):
            raise _NotPlain("this SQLite cannot read CSV files")
        total = run.total_bytes

        def on_rows(rows: int) -> None:
            done = rows * self._row_bytes
            run.report(Progress(READING, min(done, total) if total else done, total, rows))

        self._checked = False  # the helpers' answer is to be held against this copy
        self._staged = csvtable.copy(
            conn,
            self.fd,
            ncols=len(self.checks.types),
            delimiter=self.delimiter,
            into=into,
            columns=columns,
            values=values,
            params=params,
            nulls=nulls,
            on_rows=on_rows,
        )
        return self._staged

    def finish_checks(self, staging: _Staging | None = None) -> ColumnChecks:
        if self._checked:
            return self.checks
        answer = checks_merge([helper.report() for helper in self.helpers])
        after = csvtable.file_state(self.fd)
        reason = csvtable.usable(answer, staged=self._staged, before=self._before, after=after)
        if reason is not None:
            raise _NotPlain(reason)
        assert answer is not None
        self.checks.load(answer)
        self._checked = True
        return self.checks


_Rows = _PythonRows | _SqliteRows


class _Run:
    """One import of one file, whichever way its rows are read."""

    def __init__(
        self,
        db: Database,
        options: ImportOptions,
        source: str,
        now: dt.datetime,
        header: list[str],
        key_index: int,
        settings: Settings,
        started: float,
        total_bytes: int | None,
    ) -> None:
        self.db = db
        self.options = options
        self.source = source
        self.now = now
        self.header = header
        self.key_index = key_index
        self.settings = settings
        self.started = started
        self.total_bytes = total_bytes
        self.rejects = _RejectLog(settings.max_reject_details)
        self.report: ProgressFn = lambda _p: None

    def execute(self, rows: _Rows) -> dict[str, Any]:
        if isinstance(rows, _SqliteRows) and find_dataset(self.db, self.options.dataset) is None:
            try:
                return self._load_new(rows)
            except _Retry as exc:
                log.debug("%s: staging the file: %s", self.source, exc)
        return self._stage_and_apply(rows)

    def _stage_and_apply(self, rows: _Rows) -> dict[str, Any]:
        self.rejects = _RejectLog(self.settings.max_reject_details)
        # The connection is closed afterwards, which drops the temporary
        # tables at once (much faster than dropping a large one page by page).
        with self.db.import_connection() as conn:
            staging = _Staging(conn, len(self.header), self.key_index)
            with conn.begin():
                staging.create()
                rows.stage(staging, self)
                duplicates = staging.remove_duplicates()
                for line, key, first in duplicates:
                    why = f"duplicate key {key!r} (first seen on line {first})"
                    self.rejects.add(line, why)
            self.report(Progress(APPLYING, rows.bytes_read, self.total_bytes, staging.count))
            with self.db.writing(conn):
                outcome = _apply(
                    conn,
                    staging,
                    self.options,
                    self.header,
                    lambda: rows.finish_checks(staging).types,
                    self.now,
                    rows.guessed_types,
                )
                quality = rows.finish_checks(staging).quality
                summary = self._record(conn, rows, outcome, quality, len(duplicates))
        self.report(Progress(DONE, rows.bytes_read, self.total_bytes, staging.count))
        return summary

    def _load_new(self, rows: _SqliteRows) -> dict[str, Any]:
        """Load a new dataset's records straight from the file, with no staging.

        Raises ``_Retry`` (nothing written) where the file has duplicate
        keys, which staging reports line by line, or the dataset appeared
        meanwhile; ``_NotPlain`` where SQLite's reading cannot be used.
        """
        self.rejects = _RejectLog(self.settings.max_reject_details)
        options, header = self.options, self.header
        assert rows.guessed_types is not None
        with self.db.import_connection() as conn, self.db.writing(conn):
            dialect = conn.dialect.name
            if load_dataset(conn, options.dataset, lock=True) is not None:
                raise _Retry("the dataset was created meanwhile")
            base = _sequence_value(conn)
            dataset_id, table = _create_dataset(conn, options, header[self.key_index], self.now)
            mapping: list[Column] = []
            # No rid: SQLite numbers the rows of the new table 1, 2, ... itself,
            # appending without the seek that a given rowid costs (a third of
            # the copy's time). Empty fields come as NULL (``nulls``), which is
            # how raw cells store them, saving a NULLIF a cell.
            names, values = ["key", "seq"], [f"IFNULL(c{self.key_index}, '')", "? + rowid"]
            for index, name in enumerate(header):
                guess = rows.guessed_types[index]
                column = Column(index, name, coltypes.column_type(guess))
                _add_column(conn, dataset_id, table, column)
                mapping.append(column)
                names.append(records.raw_col(index))
                values.append(f"c{index}")
                if records.has_typed(column.type):
                    names.append(records.typed_col(index))
                    values.append(records.convert(dialect, column.type, f"c{index}"))
            count = rows.copy(
                conn, self, into=table, columns=names, values=values, params=(base,), nulls=True
            )
            self.report(Progress(APPLYING, rows.bytes_read, self.total_bytes, count))
            try:
                records.create_indexes(conn, table)
            except sa.exc.IntegrityError:
                rows.finish_checks()  # first, whether SQLite's rows can be used at all
                raise _Retry("the file has duplicate keys") from None
            checks = rows.finish_checks()
            _correct_guesses(conn, dataset_id, table, mapping, checks.types)
            outcome = _Outcome(dataset_id=dataset_id, created=True, inserted=count)
            outcome.columns = mapping
            if count:
                outcome.first_seq, outcome.last_seq = base + 1, base + count
                _set_sequence(conn, base + count)
            conn.execute(
                sa.update(datasets).where(datasets.c.id == dataset_id).values(record_count=count)
            )
            summary = self._record(conn, rows, outcome, checks.quality, 0)
        self.report(Progress(DONE, rows.bytes_read, self.total_bytes, count))
        return summary

    def _record(
        self,
        conn: Connection,
        rows: _Rows,
        outcome: _Outcome,
        quality: QualityCounter,
        duplicates: int,
    ) -> dict[str, Any]:
        """The import's summary, also kept in the dataset's import history."""
        summary = _summary(
            self.options,
            self.source,
            rows,
            self.header,
            outcome,
            self.rejects,
            quality,
            self.key_index,
            duplicates,
            self.started,
        )
        conn.execute(
            imports.insert().values(
                dataset_id=outcome.dataset_id,
                source=self.source,
                mode=self.options.mode,
                started_at=self.now,
                finished_at=self.now + dt.timedelta(seconds=summary["duration_s"]),
                summary=dict(summary, rejects=summary["rejects"][:STORED_REJECTS]),
            )
        )
        return summary


class _Retry(Exception):
    """Loading straight into a new dataset did not work out; stage the file instead."""


def _position(stream: BinaryIO) -> int | None:
    """Where a seekable stream stands (the import reads from there), else None."""
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _worth_a_helper(stream: BinaryIO, total_bytes: int | None, settings: Settings) -> bool:
    """Whether the column checks should run on a second process."""
    if total_bytes is None:
        try:
            total_bytes = os.fstat(stream.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            return False
    if total_bytes < settings.checks_process_bytes:
        return False
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) > 1
    return (os.cpu_count() or 1) > 1


@dataclass
class _Outcome:
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


def _apply(
    conn: Connection,
    staging: _Staging,
    options: ImportOptions,
    header: list[str],
    file_types: Callable[[], list[str]],
    now: dt.datetime,
    guessed_types: list[str] | None = None,
) -> _Outcome:
    """Write the staged rows into the dataset, under the write lock.

    ``file_types`` may wait for the helper process, so it is asked as late as
    possible: after staged rows are compared with stored ones, and for a new
    dataset with ``guessed_types`` (from the file's first rows) after its
    records are written with those, which are then corrected where the whole
    file says otherwise.
    """
    dialect = conn.dialect.name
    base = _sequence_value(conn)
    dataset = load_dataset(conn, options.dataset, lock=True)
    key_name = header[staging.key_index]
    created = dataset is None
    if dataset is None:
        dataset_id, table = _create_dataset(conn, options, key_name, now)
        existing: dict[str, Column] = {}
        record_count = 0
    else:
        if dataset.key_column.casefold() != key_name.casefold():
            raise ImportFailed(
                f"dataset {dataset.name!r} was created meanwhile with key "
                f"{dataset.key_column!r}; import again",
                file=None,
            )
        dataset_id, table, record_count = dataset.id, dataset.records_table, dataset.record_count
        existing = {c.name.casefold(): c for c in dataset.columns}
    outcome = _Outcome(dataset_id=dataset_id, created=created)

    r, s, k = ident(table), ident(staging.rows), staging.key_col()
    chg, dels = ident(staging.changes), ident(staging.deletes)

    staged = staging.cell

    empty = conn.exec_driver_sql(f"SELECT 1 FROM {r} LIMIT 1").first() is None  # noqa: S608
    total = fresh = revived = 0
    if not empty:
        differs = []
        for i, name in enumerate(header):
            stored = existing.get(name.casefold())
            if i == staging.key_index:
                continue
            if stored is None:  # a new column: stored records have no value in it
                differs.append(f"{staged(i)} IS NOT NULL")
            else:
                raw = ident(records.raw_col(stored.position))
                differs.append(f"rec.{raw} IS DISTINCT FROM {staged(i)}")
        changed = " OR ".join(["rec.rid IS NULL", "rec.deleted", *differs])
        # Changed records are numbered in record order, so the update walks
        # the records table front to back; new ones after them in key order,
        # which keeps their writes into the key index local.
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {chg} AS SELECT s.n AS sn, rec.rid AS rid, "  # noqa: S608
            "CASE WHEN rec.deleted THEN 1 ELSE 0 END AS revived, "
            f"ROW_NUMBER() OVER (ORDER BY rec.rid IS NULL, rec.rid, s.{k}) AS n "
            f"FROM {s} s LEFT JOIN {r} rec ON rec.key = s.{k} WHERE {changed}"
        )
        total, fresh, revived = (
            int(v)
            for v in conn.exec_driver_sql(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN rid IS NULL THEN 1 ELSE 0 END), 0), "  # noqa: S608
                f"COALESCE(SUM(revived), 0) FROM {chg}"
            ).one()
        )

    # Columns: add new ones, widen the type of existing ones where needed.
    guessing = created and guessed_types is not None
    types = guessed_types if guessed_types is not None and guessing else file_types()
    next_position = max((c.position for c in existing.values()), default=-1) + 1
    mapping: list[Column] = []  # file column index -> dataset column
    for index, name in enumerate(header):
        file_type = types[index]
        column = existing.get(name.casefold())
        if column is None:
            kind = coltypes.column_type(file_type)
            column = Column(next_position, name, kind)
            next_position += 1
            _add_column(conn, dataset_id, table, column)
            if not created:
                outcome.schema_changes.append({"column": name, "change": "added", "type": kind})
            existing[name.casefold()] = column
        else:
            kind = coltypes.widen(column.type, file_type)
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
            if kind != column.type:
                _set_column_type(conn, dataset_id, column.position, kind)
                outcome.schema_changes.append(
                    {"column": column.name, "change": "retyped", "from": column.type, "to": kind}
                )
                column = Column(column.position, column.name, kind)
                existing[name.casefold()] = column
        mapping.append(column)
    outcome.columns = sorted(existing.values(), key=lambda c: c.position)

    mark = "?" if dialect == "sqlite" else "%s"
    names, values, sets = ["key", "seq", "deleted"], [f"s.{k}", "", "FALSE"], []
    for i, col in enumerate(mapping):
        raw = ident(records.raw_col(col.position))
        names.append(raw)
        values.append(staged(i))
        sets.append(f"{raw} = {staged(i)}")
        if records.has_typed(col.type):
            typed = ident(records.typed_col(col.position))
            conversion = records.convert(dialect, col.type, f"s.s{i}")
            names.append(typed)
            values.append(conversion)
            sets.append(f"{typed} = {conversion}")

    def insert(seq: str, source: str) -> None:
        values[1] = seq
        conn.exec_driver_sql(
            f"INSERT INTO {r} ({', '.join(names)}) SELECT {', '.join(values)} {source}",
            (base,),
        )

    if empty:
        # A new or emptied dataset: every staged row is an insert, no comparison needed.
        # Numbers of duplicate rows dropped from the file stay unused.
        total = fresh = staging.count
        revived = numbers = 0
        if total:
            insert(f"{mark} + s.n", f"FROM {s} s")
            numbers = staging.max_n()
        if created:
            records.create_indexes(conn, table)
        if guessing:
            _correct_guesses(conn, dataset_id, table, mapping, file_types())
            outcome.columns = sorted(mapping, key=lambda c: c.position)
    else:
        numbers = total
        if fresh:
            insert(
                f"{mark} + c.n",
                f"FROM {chg} c JOIN {s} s ON s.n = c.sn WHERE c.rid IS NULL ORDER BY c.n",
            )
        if total - fresh:
            conn.exec_driver_sql(
                f"UPDATE {r} SET seq = {mark} + c.n, deleted = FALSE, {', '.join(sets)} "  # noqa: S608
                f"FROM {chg} c JOIN {s} s ON s.n = c.sn WHERE {r}.rid = c.rid",
                (base,),
            )
    outcome.inserted = fresh + revived
    outcome.updated = total - fresh - revived
    outcome.unchanged = staging.count - total

    deleted = 0
    if options.mode == REPLACE:
        keep = ident(staging.keep)
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE {dels} AS SELECT rec.rid AS rid, "  # noqa: S608
            f"ROW_NUMBER() OVER (ORDER BY rec.key) AS n FROM {r} rec "
            f"WHERE NOT rec.deleted AND NOT EXISTS (SELECT 1 FROM {s} s WHERE s.{k} = rec.key) "
            f"AND NOT EXISTS (SELECT 1 FROM {keep} kk WHERE kk.key = rec.key)"
        )
        deleted = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {dels}").scalar_one())  # noqa: S608
        if deleted:
            blank = []
            for col in outcome.columns:
                blank.append(f"{ident(records.raw_col(col.position))} = NULL")
                if records.has_typed(col.type):
                    blank.append(f"{ident(records.typed_col(col.position))} = NULL")
            conn.exec_driver_sql(
                f"UPDATE {r} SET seq = {mark} + d.n, deleted = TRUE, {', '.join(blank)} "  # noqa: S608
                f"FROM {dels} d WHERE {r}.rid = d.rid",
                (base + numbers,),
            )
    outcome.deleted = deleted

    used = numbers + deleted
    if used:
        outcome.first_seq, outcome.last_seq = base + 1, base + used
        _set_sequence(conn, base + used)
    if used or created or outcome.schema_changes:
        conn.execute(
            sa.update(datasets)
            .where(datasets.c.id == dataset_id)
            .values(record_count=record_count + outcome.inserted - deleted, updated_at=now)
        )
    return outcome


def _sequence_value(conn: Connection) -> int:
    """The change sequence's last number, taken for this write transaction."""
    query = sa.select(change_sequence.c.value).where(change_sequence.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # SQLite's write lock is the whole database's
    return int(conn.execute(query).scalar_one())


def _set_sequence(conn: Connection, value: int) -> None:
    conn.execute(sa.update(change_sequence).where(change_sequence.c.id == 1).values(value=value))


def _create_dataset(
    conn: Connection, options: ImportOptions, key_name: str, now: dt.datetime
) -> tuple[int, str]:
    """A new dataset's row and its records table, still without columns or indexes."""
    dataset_id = int(
        conn.execute(
            datasets.insert()
            .values(
                workspace_id=workspace_of(conn),
                name=options.dataset,
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


def _add_column(conn: Connection, dataset_id: int, table: str, column: Column) -> None:
    records.add_column(conn, conn.dialect.name, table, column.position, column.type)
    conn.execute(
        dataset_columns.insert().values(
            dataset_id=dataset_id, position=column.position, name=column.name, type=column.type
        )
    )


def _set_column_type(conn: Connection, dataset_id: int, position: int, kind: str) -> None:
    conn.execute(
        sa.update(dataset_columns)
        .where(dataset_columns.c.dataset_id == dataset_id, dataset_columns.c.position == position)
        .values(type=kind)
    )


def _correct_guesses(
    conn: Connection, dataset_id: int, table: str, mapping: list[Column], types: list[str]
) -> None:
    """Give a new dataset's columns the types of the whole file.

    They were created with the types of the first rows, which the rest of
    the file can only widen (an empty guess can become anything). ``mapping``
    is corrected in place.
    """
    dialect = conn.dialect.name
    for index, column in enumerate(mapping):
        kind = coltypes.column_type(types[index])
        if kind == column.type:
            continue
        if column.type == coltypes.TEXT:  # only empty values in the first rows
            records.fill_typed_column(conn, dialect, table, column.position, kind)
        else:
            records.retype_column(conn, dialect, table, column.position, kind)
        _set_column_type(conn, dataset_id, column.position, kind)
        mapping[index] = Column(column.position, column.name, kind)


def _summary(
    options: ImportOptions,
    source: str,
    reader: _Rows,
    header: list[str],
    outcome: _Outcome,
    rejects: _RejectLog,
    quality: QualityCounter,
    key_index: int,
    duplicates: int,
    started: float,
) -> dict[str, Any]:
    by_name = {c.name.casefold(): c for c in outcome.columns}
    details = sorted(rejects.details, key=lambda r: r.line)
    return {
        "dataset": options.dataset,
        "source": source,
        "mode": options.mode,
        "created": outcome.created,
        "key": header[key_index],
        "delimiter": reader.delimiter,
        "rows": outcome.inserted + outcome.updated + outcome.unchanged + rejects.count,
        "inserted": outcome.inserted,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "deleted": outcome.deleted,
        "rejected": rejects.count,
        "rejects": [r.as_dict() for r in details],
        "rejects_truncated": rejects.count > len(details),
        "columns": [{"name": name, "type": by_name[name.casefold()].type} for name in header],
        "schema_changes": outcome.schema_changes,
        "identifiers": quality.summary(),
        "duplicate_keys": duplicates,
        "first_seq": outcome.first_seq,
        "last_seq": outcome.last_seq,
        "bytes": reader.bytes_read,
        "duration_s": round(time.monotonic() - started, 3),
    }


def page_records(
    db: Database, name: str, *, limit: int = 100, after: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of live records in storage order, raw text as imported; and the next cursor."""
    with db.read() as conn:
        dataset = load_dataset(conn, name)
        if dataset is None:
            raise NotFound(f"no dataset named {name!r}")
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
