"""Where an import's rows come from: segflow's reader, or SQLite reading the file.

:class:`PythonRows` parses the file in this process (a background thread
stores each batch while the next is parsed); the column checks run here or,
for a large file, on a helper process (``segflow.ingest.checks``).
:class:`SqliteRows` lets SQLite read a file that may be plain
(``segflow.ingest.csvtable``) while helpers check it; when they find it was
not plain it raises :class:`NotPlain` and the import starts again from
:class:`PythonRows`.
"""

from __future__ import annotations

import codecs
import queue
import threading
from typing import Any, BinaryIO, Protocol

from sqlalchemy.engine import Connection

from segflow import coltypes
from segflow.ingest import csvtable
from segflow.ingest.checks import ColumnChecks, Helper, Job
from segflow.ingest.checks import merge as checks_merge
from segflow.ingest.csvreader import CsvReader
from segflow.ingest.options import BATCH_ROWS
from segflow.ingest.staging import RejectLog, Staging
from segflow.progress import READING, Progress, ProgressFn


class Reading(Protocol):
    """The import a row source reads for: where it logs rejects and reports progress."""

    rejects: RejectLog
    report: ProgressFn
    total_bytes: int | None


class _BackgroundWriter:
    """Writes staged batches on a second thread while the next batch is parsed.

    SQLite and psycopg release the GIL while the database does its work, so
    parsing and storing overlap on two cores. At most two batches wait.
    """

    def __init__(self, staging: Staging) -> None:
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


class NotPlain(Exception):
    """The rows SQLite staged cannot be used; the import stages them from Python."""


class PythonRows:
    """The file's rows as segflow's reader parses them, in this process."""

    def __init__(
        self,
        reader: CsvReader,
        helper: Helper | None,
        header: list[str],
        phone_region: str,
        consent_columns: dict[str, str] | None = None,
    ) -> None:
        self.reader = reader
        self.delimiter = reader.delimiter
        self.notes = reader.notes
        self.helper = helper
        self.checks = ColumnChecks(header, phone_region, consent_columns)
        self._checked = helper is None  # checked while staging
        self.guessed_types: list[str] | None = None

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    def stage(self, staging: Staging, run: Reading) -> None:
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

    def finish_checks(self, staging: Staging) -> ColumnChecks:
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


class SqliteRows:
    """The file's rows as SQLite reads them (``segflow.ingest.csvtable``), used only
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
        self.notes = reader.notes
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
    ) -> SqliteRows | None:
        """SQLite's reading of a file that may be plain, with helper processes
        checking its two halves; None if it cannot be plain or read so."""
        if codecs.lookup(reader.encoding).name != "utf-8" or not reader.plain:
            return None
        if reader.delimiter not in csvtable.DELIMITERS:
            return None
        if reader.trailing or reader.header_line != 1:
            return None  # SQLite takes the first line for the header and every field
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

    def stage(self, staging: Staging, run: Reading) -> None:
        fields = [f"c{i}" for i in range(staging.ncols)]
        staging.nulls = True
        staging.count = self.copy(
            staging.conn,
            run,
            into=staging.rows,
            # n is left to SQLite, as when a new dataset is loaded straight
            # from the file: the same 1, 2, ...
            columns=["line", *(f"s{i}" for i in range(staging.ncols))],
            values=["rowid + 1", *fields],
            nulls=True,
        )

    def copy(
        self,
        conn: Connection,
        run: Reading,
        *,
        into: str,
        columns: list[str],
        values: list[str],
        params: tuple[Any, ...] = (),
        nulls: bool = False,
    ) -> int:
        """Copy the file's lines into a table (see ``csvtable.copy``); return how many."""
        if not csvtable.available(conn):
            raise NotPlain("this SQLite cannot read CSV files")
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

    def finish_checks(self, staging: Staging | None = None) -> ColumnChecks:
        if self._checked:
            return self.checks
        answer = checks_merge([helper.report() for helper in self.helpers])
        after = csvtable.file_state(self.fd)
        reason = csvtable.usable(answer, staged=self._staged, before=self._before, after=after)
        if reason is not None:
            raise NotPlain(reason)
        assert answer is not None
        self.checks.load(answer)
        self._checked = True
        return self.checks


#: Either source of an import's rows.
Rows = PythonRows | SqliteRows
