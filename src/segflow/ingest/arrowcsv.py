"""Apache Arrow reading a CSV file: the import's row source for clean files.

``pyarrow.csv`` parses the file in C++ on its own threads, as a stream of
record batches, every column as text (raw values exactly as written). Its
parser is laxer than segflow's reader: it takes ``1,"x"y,3``, and an
unterminated quote swallows the rest of the file. So Arrow's rows are used
only for a *clean* file, where both parsers provably agree: UTF-8, every
physical line one record with the header's fields, no blank line, no NUL,
no line end but LF or CRLF, and every quote part of a well-formed quoted
field (checked line by line with one RE2 expression, in C++, only on the
lines that have a quote). The bytes are checked as Arrow reads them
(:class:`_CheckedFile`), so it is the bytes Arrow parsed that were checked.

A file that is not clean raises :class:`NotClean` before anything is
applied; the import then reads it again with segflow's reader
(``sources.PythonRows``), which stores the same rows a clean file would
give and words every error and reject exactly (file, line, column, reason).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from segflow.ingest.checks import ColumnChecks, frozen_heap
from segflow.ingest.csvreader import CsvReader, empty_key_reason
from segflow.ingest.staging import Loader, Reading, Staging
from segflow.progress import READING, Progress

#: Bytes Arrow reads (and this module checks) at a time; about one batch.
#: 4 MB took no less time and 150 MB more memory at the peak.
BLOCK_BYTES = 1 << 20


class NotClean(Exception):
    """The file is not one whose Arrow parse is segflow's; read it with segflow's reader."""


def _line_pattern(delimiter: str) -> str:
    """RE2: one physical line made of well-formed fields, quoted or not."""
    d = f"\\x{{{ord(delimiter):X}}}"
    field = f'(?:"(?:[^"\\r\\n]|"")*"|[^"{d}\\r\\n]*)'
    return f"^{field}(?:{d}{field})*\\r?$"


class _CheckedFile:
    """The file as Arrow reads it, each stretch of whole lines checked for cleanness.

    Raises :class:`NotClean` from ``read`` at the first stretch that is not
    clean; Arrow passes it on from its reader.
    """

    def __init__(self, stream: BinaryIO, delimiter: str, max_line: int) -> None:
        self.stream = stream
        self.pattern = _line_pattern(delimiter)
        self.max_line = max_line
        self.bytes_read = 0
        self.closed = False
        self._carry = b""  # the last, unfinished line of what was read

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.bytes_read += len(data)
        if not data:
            if self._carry:
                self._check(self._carry, 0, len(self._carry))
                self._carry = b""
            return data
        end = data.rfind(b"\n") + 1
        if end:
            # The line begun in the last read, whole; then the rest in place
            # (copying a megabyte a read cost a third of the checks).
            first = data.find(b"\n") + 1
            line = self._carry + data[:first]
            self._check(line, 0, len(line))
            self._check(data, first, end)
            self._carry = data[end:]
        else:
            self._carry += data
            if len(self._carry) > self.max_line:
                raise NotClean("a line is longer than a field may be")
        return data

    def _check(self, data: bytes, start: int, end: int) -> None:
        """Check the whole lines ``data[start:end]`` (``start`` begins a line)."""
        if data.find(b"\x00", start, end) >= 0:
            raise NotClean("the file has a NUL byte")
        if data.startswith((b"\n", b"\r\n"), start, end) or data.find(b"\n\n", start, end) >= 0:
            raise NotClean("the file has blank lines")
        returns = data.count(b"\r", start, end)
        if returns:
            if returns != data.count(b"\r\n", start, end):
                raise NotClean("the file has line ends other than LF and CRLF")
            if data.find(b"\n\r\n", start, end) >= 0:
                raise NotClean("the file has blank lines")
        quoted = _quoted_lines(data, start, end)
        if quoted is None:  # many: every line, split by Arrow (a line without quotes matches)
            quoted = pc.split_pattern(pa.array([data[start:end]], pa.binary()), b"\n").flatten()
        elif not quoted:
            return
        if not pc.all(pc.match_substring_regex(quoted, self.pattern)).as_py():
            raise NotClean("the file has quoted line breaks or quotes not around a whole field")

    # What Arrow asks of a file object besides ``read``.
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _quoted_lines(data: bytes, start: int, end: int) -> pa.Array | None:
    """The lines of ``data[start:end]`` that hold a quote, if they are few
    (fewer quotes than a quarter of the lines), else None.

    An export quotes a field here and there (a company "Initech, Inc."):
    finding those lines is cheaper than splitting a read into all its lines.
    """
    quotes = data.count(b'"', start, end)
    if not quotes:
        return pa.array([], pa.binary())
    if quotes * 4 > data.count(b"\n", start, end):
        return None
    lines: list[bytes] = []
    at = data.find(b'"', start, end)
    while at >= 0:
        begin = max(start, data.rfind(b"\n", start, at) + 1)
        stop = data.find(b"\n", at, end)
        stop = end if stop < 0 else stop
        lines.append(data[begin:stop])
        at = data.find(b'"', stop, end)
    return pa.array(lines, pa.binary())


def _empty_keys(keys: pa.Array) -> list[int]:
    """Rows (in the batch) whose key is empty or only white space, as
    ``str.strip`` has it: the few keys with no ASCII letter or digit are
    looked at in Python."""
    doubtful = pc.invert(pc.fill_null(pc.match_substring_regex(keys, "[0-9A-Za-z]"), False))
    at = pc.indices_nonzero(doubtful).to_pylist()
    cells = keys.take(pa.array(at, pa.int64())).to_pylist() if at else []
    return [i for i, key in zip(at, cells, strict=True) if not (key or "").strip()]


class ArrowRows:
    """A clean file's rows as Arrow parses them (see the module's docstring)."""

    def __init__(
        self,
        stream: BinaryIO,
        offset: int,
        reader: CsvReader,
        header: list[str],
        key_index: int,
        phone_region: str,
        consent_columns: Mapping[str, str] | None,
    ) -> None:
        self.stream = stream
        self.offset = offset
        self.delimiter = reader.delimiter
        self.notes = reader.notes
        self.header_line = reader.header_line
        self.trailing = reader.trailing
        self.max_field_chars = reader.max_field_chars
        self.header = header
        self.key_index = key_index
        self.checks = ColumnChecks(header, phone_region, consent_columns)
        self._file: _CheckedFile | None = None

    @classmethod
    def start(
        cls,
        stream: BinaryIO,
        offset: int | None,
        reader: CsvReader,
        key_index: int,
        phone_region: str,
        consent_columns: Mapping[str, str] | None,
    ) -> ArrowRows | None:
        """Arrow's reading of ``stream`` from ``offset`` (the file's start), or
        None where it cannot be clean: not UTF-8, not seekable, or split by a
        delimiter that is not ASCII."""
        if offset is None or codecs.lookup(reader.encoding).name != "utf-8":
            return None
        if not reader.delimiter.isascii():  # Arrow splits on one byte only
            return None
        return cls(stream, offset, reader, reader.header, key_index, phone_region, consent_columns)

    @property
    def bytes_read(self) -> int:
        return self._file.bytes_read if self._file else 0

    def _open(self) -> Any:
        ncols = len(self.header) + self.trailing
        names = [f"c{i}" for i in range(ncols)]
        self.stream.seek(self.offset)
        self._file = _CheckedFile(self.stream, self.delimiter, 4 * self.max_field_chars + 4096)
        return pacsv.open_csv(
            self._file,
            read_options=pacsv.ReadOptions(
                block_size=BLOCK_BYTES, skip_rows=self.header_line, column_names=names
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter, newlines_in_values=False, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                # An empty cell is NULL, as records store it.
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
            # mimalloc, Arrow's default, keeps what a batch freed for the next
            # ones: 20 MB more at the peak than the C library's allocator.
            memory_pool=pa.system_memory_pool(),
        )

    def stage(self, staging: Staging, run: Reading) -> None:
        ncols = len(self.header)
        schema = pa.schema(
            [
                ("n", pa.int64()),
                ("line", pa.int64()),
                *((f"s{i}", pa.string()) for i in range(ncols)),
            ]
        )
        line, rows = self.header_line + 1, 0

        def load(batches: Iterator[pa.RecordBatch]) -> None:
            staging.load_arrow(schema, batches)

        with Loader(load) as loader, frozen_heap():
            try:
                for batch in self._open():
                    columns = self._accept(batch, line, rows, run)
                    loader.put(columns)
                    line += batch.num_rows
                    rows += columns.num_rows
                    run.report(Progress(READING, self.bytes_read, run.total_bytes, rows))
            except pa.ArrowException as exc:
                # Arrow's parse only: the loader's own errors are the import's.
                raise NotClean(f"Arrow could not read it as segflow does: {exc}") from None

    def _accept(
        self, batch: pa.RecordBatch, first_line: int, rows_before: int, run: Reading
    ) -> pa.RecordBatch:
        """The batch's accepted rows for staging, (n, line, s0, s1, ...), numbered
        after the ``rows_before`` accepted so far; checks them too."""
        ncols = len(self.header)
        rows = batch.num_rows
        for column in batch.columns[ncols:]:  # cells under the dropped unnamed columns
            if any(v and v.strip() for v in column.to_pylist()):
                raise NotClean("a row has a value in a column the header does not name")
        arrays = list(batch.columns[:ncols])
        for array in arrays:
            # Bytes first (read off the offsets): characters are never more.
            longest = pc.max(pc.binary_length(array)).as_py()
            if longest is not None and longest >= self.max_field_chars:
                longest = pc.max(pc.utf8_length(array)).as_py()
                if longest >= self.max_field_chars:
                    raise NotClean("a field is as long as the limit or longer")
        lines = pa.array(range(first_line, first_line + rows), pa.int64())
        empty = _empty_keys(arrays[self.key_index])
        if empty:
            key_name = self.header[self.key_index]
            for i in empty:
                run.rejects.add(first_line + i, empty_key_reason(key_name))
            keep = pc.invert(pc.is_in(pa.array(range(rows)), pa.array(empty)))
            lines = lines.filter(keep)
            arrays = [array.filter(keep) for array in arrays]
        self.checks.add(arrays, len(lines))
        return pa.RecordBatch.from_arrays(
            # n numbered here: a database numbering them costs a sequence call a row.
            [
                pa.array(range(rows_before + 1, rows_before + len(lines) + 1), pa.int64()),
                lines,
                *arrays,
            ],
            names=["n", "line", *(f"s{i}" for i in range(ncols))],
        )

    def finish_checks(self) -> ColumnChecks:
        return self.checks
