"""Where an import's rows come from when Arrow cannot read them: segflow's reader.

:class:`PythonRows` parses the file in this process (a background thread
stores each batch while the next is parsed and checked). A clean file's rows
come from Arrow instead (``segflow.ingest.arrowcsv``); any other file, and
standard input, is read here, which also words every error exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from segflow.ingest.arrowcsv import ArrowRows
from segflow.ingest.checks import ColumnChecks, frozen_heap
from segflow.ingest.csvreader import CsvReader
from segflow.ingest.options import BATCH_ROWS
from segflow.ingest.staging import Loader, Reading, Staging
from segflow.progress import READING, Progress


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
        def load(items: Iterator[tuple[list[tuple[Any, ...]], list[str]]]) -> None:
            for batch, kept in items:
                if batch:
                    staging.insert(batch)
                if kept:
                    staging.insert_kept_keys([(k,) for k in kept])

        rows = 0
        with Loader(load) as loader, frozen_heap():
            for batch, bad, kept in self.reader.batches(BATCH_ROWS, staging.key_index):
                for reject in bad:
                    run.rejects.add(reject.line, reject.reason)
                if batch:
                    columns = list(zip(*batch, strict=True))[1:]
                    watched = self.checks.watched
                    arrays = [
                        pa.array(c, pa.string()) if watched(i) else None
                        for i, c in enumerate(columns)
                    ]
                    self.checks.add(arrays, len(batch))
                loader.put((batch, kept))
                rows += len(batch)
                run.report(Progress(READING, self.reader.bytes_read, run.total_bytes, rows))

    def finish_checks(self) -> ColumnChecks:
        return self.checks


#: Either source of an import's rows.
Rows = PythonRows | ArrowRows
