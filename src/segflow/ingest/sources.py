"""Where an import's rows come from when Arrow cannot read them: segflow's reader.

:class:`PythonRows` parses the file in this process (a background thread
stores each batch while the next is parsed and checked). A clean file's rows
come from Arrow instead (``segflow.ingest.arrowcsv``); any other file, and
standard input, is read here, which also words every error exactly.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from segflow.ingest.arrowcsv import ArrowRows
from segflow.ingest.checks import ColumnChecks, frozen_heap
from segflow.ingest.csvreader import CsvReader
from segflow.ingest.options import BATCH_ROWS
from segflow.ingest.staging import Reading, Staging
from segflow.progress import READING, Progress


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


class PythonRows:
    """The file's rows as segflow's reader parses them, in this process."""

    def __init__(
        self,
        reader: CsvReader,
        header: list[str],
        phone_region: str,
        consent_columns: Mapping[str, str] | None = None,
    ) -> None:
        self.reader = reader
        self.delimiter = reader.delimiter
        self.notes = reader.notes
        self.checks = ColumnChecks(header, phone_region, consent_columns)

    @property
    def bytes_read(self) -> int:
        return self.reader.bytes_read

    def stage(self, staging: Staging, run: Reading) -> None:
        with _BackgroundWriter(staging) as writer, frozen_heap():
            for batch, bad, kept in self.reader.batches(BATCH_ROWS, staging.key_index):
                for reject in bad:
                    run.rejects.add(reject.line, reject.reason)
                if batch:
                    columns = list(zip(*batch, strict=True))[1:]
                    self.checks.add([pa.array(c, pa.string()) for c in columns], len(batch))
                writer.put(batch, kept)
                run.report(Progress(READING, self.reader.bytes_read, run.total_bytes, writer.rows))

    def finish_checks(self) -> ColumnChecks:
        return self.checks


#: Either source of an import's rows.
Rows = PythonRows | ArrowRows
