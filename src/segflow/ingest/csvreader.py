"""Streaming CSV reading with errors that say where.

Owns decoding (so an undecodable byte is reported with its line and byte
offset), telling files that are not CSV by their first bytes, delimiter
detection (and Excel's ``sep=`` first line), header validation (unnamed
empty columns at its end are dropped), and the split between
whole-file errors (:class:`~segflow.errors.ImportFailed`, nothing stored) and
per-row rejects (reported, the rest imported). Memory is bounded by the chunk
size and one batch of rows, whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from segflow.errors import ImportFailed

CHUNK_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
#: Excel's first line naming the delimiter, as in ``sep=;``.
_SEP_LINE = re.compile(r"sep=([^\"\r\n])", re.IGNORECASE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SAVE_AS_CSV = "save it as CSV (in Excel: File > Save As > CSV UTF-8) and import that file"


def identify(first: bytes) -> str | None:
    """What a file that is not CSV is, told by its first bytes; None if it may be CSV."""
    if first.startswith(b"PK\x03\x04") or first.startswith(b"PK\x05\x06"):
        # An Office file is a ZIP archive; the names of its first entries say which.
        if b"mimetypeapplication/vnd.oasis.opendocument.spreadsheet" in first:
            return f"an OpenDocument spreadsheet (.ods), not a CSV file: {_SAVE_AS_CSV}"
        if b"xl/" in first:
            return f"an Excel workbook (.xlsx), not a CSV file: {_SAVE_AS_CSV}"
        if b"word/" in first:
            return "a Word document (.docx), not a CSV file"
        return "a ZIP archive, not a CSV file: extract the CSV file from it and import that"
    if first.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return f"an Excel 97-2003 workbook (.xls) or another old Office file: {_SAVE_AS_CSV}"
    if first.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file: decompress it (gunzip) and import the CSV file inside"
    if first.startswith(b"%PDF-"):
        return "a PDF document, not a CSV file: export the data as CSV where it came from"
    for magic, kind in ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF")):
        if first.startswith(magic):
            return f"a {kind} image, not a CSV file"
    return None


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "reason": self.reason}


def empty_key_reason(key_name: str) -> str:
    """Why a row whose key cell is empty is rejected (both row sources say it so)."""
    return f"the key column {key_name!r} is empty"


def is_empty_key_reason(reason: str) -> bool:
    return reason.startswith("the key column ") and reason.endswith(" is empty")


class _Lines:
    """Decoded physical lines of a binary stream, tracking bytes and line numbers."""

    def __init__(self, stream: BinaryIO, encoding: str, source: str, *, at_start: bool) -> None:
        self.stream = stream
        #: Whether the stream starts at the file's start, where the file's
        #: kind and a UTF-16 byte order mark are told from its first bytes.
        self._at_start = at_start
        self.notes: list[str] = []
        self.source = source
        self.bytes_read = 0
        self._newlines_before = 0  # b"\n" seen in fully decoded chunks
        self.lines_out = 0  # lines split off so far
        try:
            codec = codecs.lookup(encoding)
        except LookupError:
            raise ImportFailed(f"unknown encoding {encoding!r}", file=source) from None
        if not getattr(codec, "_is_text_encoding", True):
            # zlib, base64, hex, ...: codecs Python has that turn bytes into
            # bytes, not text (zlib would inflate each chunk in memory first).
            raise ImportFailed(
                f"{encoding!r} is not a text encoding (try utf-8, cp1252 or latin-1)",
                file=source,
            )
        name = "utf-8-sig" if codec.name == "utf-8" else codec.name
        self.encoding = codec.name
        self._decoder = codecs.getincrementaldecoder(name)(errors="strict")
        self._separator: str | None = None
        #: No quote character and no line end but LF or CRLF so far: a file in
        #: which every line is one record, its fields split at the delimiter.
        self.plain = True

    def _decode(self, chunk: bytes, final: bool) -> str:
        buffered = len(self._decoder.getstate()[0])
        try:
            text: str = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            start = max(0, exc.start - buffered)
            offset = self.bytes_read - len(chunk) - buffered + exc.start
            line = self._newlines_before + chunk[:start].count(b"\n") + 1
            bad = exc.object[exc.start : exc.end]
            raise ImportFailed(
                f"byte {bad.hex(' ')!s} at byte offset {offset} is not valid {self.encoding} "
                "(choose the file's encoding, --encoding or the upload's encoding field: "
                "most likely cp1252, "
                "Windows-1252, which Excel on Windows writes; else latin-1)",
                file=self.source,
                line=line,
            ) from None
        self._newlines_before += chunk.count(b"\n")
        return text

    def _first_bytes(self, chunk: bytes) -> None:
        kind = identify(chunk)
        if kind is not None:
            raise ImportFailed(f"this is {kind}", file=self.source)
        if self.encoding == "utf-8" and chunk.startswith(_UTF16_BOMS):
            # Excel's "Unicode text": UTF-16 with a byte order mark, which is
            # never valid UTF-8, so reading it so cannot change any UTF-8 file.
            self.encoding = "utf-16"
            self._decoder = codecs.getincrementaldecoder("utf-16")(errors="strict")
            self.notes.append("read as UTF-16 (the file starts with a UTF-16 byte order mark)")

    def _judge_plain(self, text: str, sep: str) -> None:
        if sep != "\n" or '"' in text:
            self.plain = False
        elif "\r" in text and text.count("\r") != text.count("\r\n"):
            self.plain = False

    def chunks(self) -> Iterator[list[str]]:
        """Lists of whole lines, one list per decoded chunk (cheap to chain in C).

        Lines keep their line end, except while the file is plain so far.
        """
        remainder = ""
        while True:
            chunk = self.stream.read(CHUNK_BYTES)
            if self._at_start:
                self._at_start = False
                self._first_bytes(chunk)
            self.bytes_read += len(chunk)
            text = self._decode(chunk, final=not chunk)
            if "\x00" in text:
                before = remainder + text[: text.index("\x00")]
                raise ImportFailed(
                    "contains a NUL byte (is this a binary or UTF-16 file? try the encoding "
                    "utf-16)",
                    file=self.source,
                    line=self.lines_out + before.count(self._separator or "\n") + 1,
                )
            if self._separator is None and text:
                # Old Mac files end lines with a bare CR; everything else has LF.
                self._separator = "\r" if "\n" not in text and "\r" in text else "\n"
            text = remainder + text
            if not chunk:
                if self.plain:
                    self._judge_plain(text, self._separator or "\n")
                if text:
                    self.lines_out += 1
                    yield [text]
                return
            sep = self._separator or "\n"
            parts = text.split(sep)
            remainder = parts.pop()
            if self.plain:
                # The remainder is looked at with the next chunk, so that a CR
                # there is judged with the character after it.
                self._judge_plain(text[: len(text) - len(remainder)], sep)
            if parts:
                self.lines_out += len(parts)
                # The csv module needs line ends only inside quoted fields,
                # and no field can be quoted while no quote has been seen.
                yield parts if self.plain else [part + sep for part in parts]


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvReader:
    """Reads a CSV stream: ``header`` first, then ``rows()`` of (line, fields)."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        source: str,
        encoding: str = "utf-8",
        delimiter: str | None = None,
        max_field_chars: int = 1_048_576,
    ) -> None:
        if delimiter is not None and len(delimiter) != 1:
            raise ImportFailed(f"delimiter must be one character, got {delimiter!r}", file=source)
        if delimiter in ('"', "\n", "\r"):
            raise ImportFailed(f"{delimiter!r} cannot be the delimiter", file=source)
        self.source = source
        self.max_field_chars = max_field_chars
        self._lines = _Lines(stream, encoding, source, at_start=True)
        #: Unnamed columns dropped from the end of the header (their cells
        #: must be empty), and the header's line (2 after a ``sep=`` line).
        self.trailing = 0
        self.header_line = 1
        self._line_iter = itertools.chain.from_iterable(self._lines.chunks())
        csv.field_size_limit(max_field_chars)
        first = next(self._line_iter, None)
        if first is None:
            raise ImportFailed("the file is empty (expected a header line)", file=source)
        lines: tuple[str, ...] = (first,)
        sep_line = _SEP_LINE.fullmatch(first.rstrip("\r\n").lstrip("\ufeff"))
        if sep_line is not None:
            following = next(self._line_iter, None)
            if following is None:
                raise ImportFailed(
                    "the file has only a 'sep=' line (expected the header line after it)",
                    file=source,
                )
            self.header_line = 2
            lines = (first, following)
            delimiter = delimiter or sep_line.group(1)
            self._lines.notes.append(
                f"the first line {first.rstrip(chr(13) + chr(10))!r} named the delimiter; "
                "the header is line 2"
            )
        if not lines[-1].strip("\r\n\ufeff \t"):
            which = "first line" if sep_line is None else "line after 'sep='"
            raise ImportFailed(
                f"the {which} is blank; it must be the header naming the columns",
                file=source,
                line=self.header_line,
            )
        self.delimiter = delimiter or _sniff_delimiter(lines[-1])
        self._reader = self._csv(itertools.chain(lines, self._line_iter))
        self._next_start = 1
        if sep_line is not None:
            self._next_record()  # the sep= line, parsed so that line numbers stay the file's
        record = self._next_record()
        if record is None:  # pragma: no cover - the header line was not blank
            raise ImportFailed("the file is empty (expected a header line)", file=source)
        names = _header_names(record[1])
        while len(names) > 1 and not names[-1]:
            names.pop()
            self.trailing += 1
        if self.trailing:
            first_dropped = len(names) + 1
            span = (
                f"column {first_dropped}"
                if self.trailing == 1
                else f"columns {first_dropped}-{first_dropped + self.trailing - 1}"
            )
            self._lines.notes.append(
                f"dropped {self.trailing} unnamed empty column{'s' if self.trailing > 1 else ''} "
                f"at the end of the header ({span}): the lines end with a delimiter"
            )
        self.header = _validate_header(names, source, self.header_line)

    def _csv(self, lines: Iterator[str]) -> Any:
        return csv.reader(
            lines, delimiter=self.delimiter, quotechar='"', doublequote=True, strict=True
        )

    @property
    def bytes_read(self) -> int:
        return self._lines.bytes_read

    @property
    def notes(self) -> list[str]:
        """What the reader did that the import summary should say."""
        return self._lines.notes

    @property
    def encoding(self) -> str:
        """The name of the codec the stream is decoded with."""
        return self._lines.encoding

    def _next_record(self) -> tuple[int, list[str]] | None:
        start = self._next_start
        try:
            row = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise self._csv_error(str(exc), start) from None
        self._next_start = self._reader.line_num + 1
        return start, row

    def _csv_error(self, message: str, start: int) -> ImportFailed:
        if "field larger than field limit" in message:
            return ImportFailed(
                f"a field in the record starting here is longer than {self.max_field_chars} "
                "characters, the limit (an unterminated quote causes this too)",
                file=self.source,
                line=start,
            )
        if "unexpected end of data" in message:
            return ImportFailed(
                "a quoted field starting in this record is never closed (unterminated quote)",
                file=self.source,
                line=start,
            )
        if "expected after" in message:
            return ImportFailed(
                f"a closing quote is followed by other characters instead of "
                f"{self.delimiter!r} or a line end (quotes inside a quoted field must be "
                "doubled)",
                file=self.source,
                line=self._reader.line_num,
            )
        return ImportFailed(f"malformed CSV: {message}", file=self.source, line=start)

    def batches(
        self, size: int, key_index: int
    ) -> Iterator[tuple[list[tuple[Any, ...]], list[Reject], list[str]]]:
        """Batches of accepted rows as (line, *fields), with the batch's rejects.

        The third list holds keys of rejected rows that had one, so that a
        replace import does not delete a record only because its row was bad.
        The loop is the import's hot path: one iteration per CSV record.
        """
        ncols = len(self.header)
        trailing = self.trailing
        key_name = self.header[key_index]
        reader = self._reader
        start = self._next_start
        batch: list[tuple[Any, ...]] = []
        rejects: list[Reject] = []
        kept: list[str] = []
        try:
            for row in reader:
                line, start = start, reader.line_num + 1
                if trailing and ncols < len(row) <= ncols + trailing:
                    unnamed = next((i for i in range(ncols, len(row)) if row[i].strip()), None)
                    if unnamed is not None:
                        why = f"has the value {row[unnamed]!r} in column {unnamed + 1}, "
                        rejects.append(Reject(line, why + "which the header does not name"))
                        if row[key_index].strip():
                            kept.append(row[key_index])
                        continue
                    row = row[:ncols]
                if len(row) == ncols:
                    if row[key_index].strip():
                        batch.append((line, *row))
                        if len(batch) >= size:
                            yield batch, rejects, kept
                            batch, rejects, kept = [], [], []
                        continue
                    rejects.append(Reject(line, empty_key_reason(key_name)))
                elif row:
                    rejects.append(Reject(line, f"expected {ncols} fields, found {len(row)}"))
                    if len(row) > key_index and row[key_index].strip():
                        kept.append(row[key_index])
        except csv.Error as exc:
            raise self._csv_error(str(exc), start) from None
        yield batch, rejects, kept


def _header_names(fields: list[str]) -> list[str]:
    return [f.strip().lstrip("\ufeff").strip() for f in fields]


def _validate_header(names: list[str], source: str, line: int) -> list[str]:
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name:
            raise ImportFailed(
                f"header column {position} has no name (every column needs one)",
                file=source,
                line=line,
            )
        folded = name.casefold()
        if folded in seen:
            raise ImportFailed(
                f"header names column {name!r} twice (columns {seen[folded]} and {position}; "
                "names are compared ignoring case)",
                file=source,
                line=line,
                column=name,
            )
        seen[folded] = position
    return names
