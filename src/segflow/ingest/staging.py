"""Staging: the temporary tables one import fills before it applies anything,
and the log of the rows it rejects.

The staged rows are raw text, numbered densely in file order (``n``); the
apply step compares them with the stored records in SQL.

Arrow's batches are bulk loaded (:meth:`Staging.load_arrow`): on PostgreSQL
by COPY on the import's own connection, into its temporary table; on SQLite
by ADBC's bulk ingest, which needs a connection of its own, so the rows go to
a scratch database file of the import's own, attached to the import's
connection before its transaction starts (SQLite attaches only outside one)
and removed afterwards; a killed import's file is removed by the next import.
Only the staged copy lives there: the apply step writes the dataset in the
import's one transaction on the main database, as before.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import stat
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.engine import create_private_file
from segflow.db.records import ident
from segflow.errors import SegflowError
from segflow.ingest.csvreader import Reject, is_empty_key_reason
from segflow.progress import ProgressFn


class RejectLog:
    """The rows an import rejected: all counted, the first ``limit`` with their reason."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        #: Rows rejected for an empty key, all counted (a preview shows them).
        self.empty_keys = 0
        self.details: list[Reject] = []

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if is_empty_key_reason(reason):
            self.empty_keys += 1
        if len(self.details) < self.limit:
            self.details.append(Reject(line, reason))


class Reading(Protocol):
    """The import a row source reads for: where it logs rejects and reports progress."""

    rejects: RejectLog
    report: ProgressFn
    total_bytes: int | None


T = TypeVar("T")


class Loader(Generic[T]):
    """Stages batches on a second thread while the importing thread reads and
    checks the next ones: ``load`` consumes, in order, what ``put`` is given.

    The databases and Arrow release the GIL while they work, so reading and
    storing overlap on two cores. At most two batches wait. An error in
    ``load`` is raised on the importing thread, at its next ``put`` or at
    the end.
    """

    def __init__(self, load: Callable[[Iterator[T]], None]) -> None:
        self._queue: queue.Queue[tuple[T] | None] = queue.Queue(2)
        self._error: BaseException | None = None
        # A daemon, as the stager it replaced was: a loader stuck on a lost
        # database connection must not keep a server from exiting.
        self._thread = threading.Thread(
            target=self._run, args=(load,), name="segflow-stage", daemon=True
        )

    def __enter__(self) -> Loader[T]:
        self._thread.start()
        return self

    def _items(self) -> Iterator[T]:
        while (item := self._queue.get()) is not None:
            yield item[0]

    def _run(self, load: Callable[[Iterator[T]], None]) -> None:
        try:
            load(self._items())
        except BaseException as exc:  # re-raised on the importing thread
            self._error = exc
            while self._queue.get() is not None:
                pass  # drain, so the importing thread never blocks on a dead loader

    def put(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((item,))

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc is None:
            raise self._error


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
        #: Whether an empty cell is staged as NULL (Arrow's batches), else as ''.
        self.nulls = False
        #: Whether ``remove_duplicates`` ran, and what it removed.
        self.deduped = False
        self.duplicates: list[tuple[int, str, int]] = []
        #: Where the staged rows are when not a temporary table (SQLite's
        #: scratch file, once ``load_arrow`` has put them there).
        self.schema: str | None = None
        self.file: Path | None = None
        if self.dialect == "sqlite":
            self.file = _scratch_file(_scratch_dir(conn.engine.url.database))
            # A full copy of the file's rows: readable by its owner only.
            create_private_file(str(self.file))
            weakref.finalize(self, _remove, self.file)
            # On the driver's connection: outside the transaction SQLAlchemy
            # would begin, as ATTACH and these pragmas must be.
            raw: Any = conn.connection.driver_connection
            raw.execute(f"ATTACH DATABASE ? AS {_SCRATCH}", (str(self.file),))
            raw.execute(f"PRAGMA {_SCRATCH}.journal_mode=MEMORY")
            raw.execute(f"PRAGMA {_SCRATCH}.synchronous=OFF")

    def key_col(self) -> str:
        return f"s{self.key_index}"

    def cell(self, index: int) -> str:
        """SQL for a staged cell (of the staged rows as ``s``) as records
        store it: NULL when empty."""
        if self.nulls:
            # A NULLIF a cell was a third of comparing a large file with stored records.
            return f"s.s{int(index)}"
        return f"NULLIF(s.s{int(index)}, '')"

    def create(self) -> None:
        if self.dialect == "sqlite":
            # The comparison with stored records reads the whole table; through
            # the memory map that reads for scans, those pages would count as
            # the import's memory. The connection is closed after the import.
            self.conn.exec_driver_sql("PRAGMA mmap_size=0")
        collate = ' COLLATE "C"' if self.dialect == "postgresql" else ""
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE {ident(self.rows)} ({self._columns()})")
        self.conn.exec_driver_sql(f"CREATE TEMP TABLE {ident(self.keep)} (key TEXT{collate})")

    def _columns(self) -> str:
        collate = ' COLLATE "C"' if self.dialect == "postgresql" else ""
        cols = ", ".join(
            f"s{i} TEXT{collate if i == self.key_index else ''}" for i in range(self.ncols)
        )
        # n numbers staged rows densely in file order; an insert's sequence
        # number is derived from it without a window over the whole file.
        n = (
            "n INTEGER PRIMARY KEY"
            if self.dialect == "sqlite"
            else "n BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        )
        return f"{n}, line BIGINT NOT NULL, {cols}"

    def load_arrow(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
        """Stage record batches of (n, line, s0, s1, ...), in file order, in bulk."""
        counted = self._counted(batches)
        self.nulls = True
        if self.dialect == "postgresql":
            self._copy_arrow(counted)
            return
        import adbc_driver_sqlite.dbapi as adbc

        assert self.file is not None
        # The empty temporary table would hide the scratch file's one.
        self.conn.exec_driver_sql(f"DROP TABLE temp.{ident(self.rows)}")
        self.schema = _SCRATCH
        with adbc.connect(str(self.file)) as scratch, scratch.cursor() as cur:
            cur.execute(f"CREATE TABLE {ident(self.rows)} ({self._columns()})")
            cur.adbc_ingest(self.rows, pa.RecordBatchReader.from_batches(schema, counted), "append")
            scratch.commit()

    def _counted(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.count += batch.num_rows
            yield batch

    def _copy_arrow(self, batches: Iterator[pa.RecordBatch]) -> None:
        raw = self.conn.connection.driver_connection
        assert raw is not None
        names = ", ".join(["n", "line", *(f"s{i}" for i in range(self.ncols))])
        # CSV, written by Arrow in C++: an empty cell (NULL) unquoted, read as NULL.
        copy = (
            f"COPY {ident(self.rows)} ({names}) FROM STDIN "
            # Arrow writes UTF-8, whatever the connection's client encoding is.
            "(FORMAT csv, ENCODING 'UTF8')"
        )
        options = pacsv.WriteOptions(include_header=False)
        with raw.cursor() as cur, cur.copy(copy) as cp:
            for batch in batches:
                out = io.BytesIO()
                pacsv.write_csv(batch, out, options)
                cp.write(out.getbuffer())

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

    def max_n(self) -> int:
        return int(
            self.conn.exec_driver_sql(
                f"SELECT COALESCE(MAX(n), 0) FROM {ident(self.rows)}"  # noqa: S608
            ).scalar_one()
        )

    def remove_duplicates(self) -> None:
        """Drop later rows whose key an earlier row of the file already has,
        kept in ``duplicates`` as (line, key, line first seen)."""
        self.deduped = True
        self.duplicates = self._remove_duplicates()

    def _remove_duplicates(self) -> list[tuple[int, str, int]]:
        t = ident(self.rows)
        k = self.key_col()
        # SQLite puts an index whose name is not qualified in the main database.
        index = (f"{self.schema}." if self.schema else "") + ident(self.rows + "_key")
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


#: The name the import's scratch database file is attached under (SQLite).
_SCRATCH = "sf_scratch"


def _scratch_dir(database: str | None) -> Path:
    """The private folder (mode 0700, this user's) that holds a SQLite database's
    scratch files: beside a database file, so that they take its disk and its
    owner's rights, else this user's own folder in the temporary directory."""
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).resolve()
        folder = path.with_name(path.name + "-staging")
    else:
        folder = Path(tempfile.gettempdir()) / f"segflow-staging-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    found = folder.lstat()
    # Another local user's folder (or a link to one) would receive the rows.
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise SegflowError(
            f"{folder} is not a folder of this user's: segflow stages imports there; "
            "remove it or fix its owner"
        )
    if stat.S_IMODE(found.st_mode) & 0o077:
        folder.chmod(0o700)
    return folder


def _scratch_file(folder: Path) -> Path:
    """A new scratch file's name in ``folder``; removes files of imports that were killed."""
    for old in folder.glob("*.db*"):
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(old)
    return folder / f"{os.getpid()}-{uuid.uuid4().hex}.db"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    for name in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(OSError):
            name.unlink()
