"""The column checks of an import: type inference and identifier quality.

They are pure functions of the accepted rows and cost about as much CPU as
parsing the file. For a large file they run on a second process, which reads
the same bytes with the same reader while the importing process stages the
rows, so an import uses two cores instead of waiting on one GIL.

The helper process is an optimisation that can never change a result: it
reads the file through its own file description, and the importer compares
the length and CRC-32 of the bytes both processes read before it trusts the
answer. On any doubt (a different digest, a crash) the importer runs the
checks itself over the rows it staged, which are what it will store; where
the file cannot be reopened (standard input from a pipe, a stream in memory)
it checks the rows as it reads them.

    python -m segflow.ingest.checks   (started by the importer; reads its job from stdin)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, cast

from segflow import coltypes
from segflow.ingest import phones
from segflow.ingest.consent import ConsentColumn
from segflow.ingest.csvreader import CsvReader
from segflow.ingest.quality import QualityCounter

BATCH_ROWS = 10_000
#: Niceness of the helpers that check the halves of a file SQLite copies.
HALF_NICENESS = 10


class ColumnChecks:
    """Column types and identifier counts, accumulated batch by batch."""

    def __init__(
        self,
        header: Sequence[str],
        phone_region: str = phones.DEFAULT_REGION,
        consent_columns: Mapping[str, str] | None = None,
    ) -> None:
        self.types = [coltypes.EMPTY] * len(header)
        self.quality = QualityCounter(header, phone_region, consent_columns=consent_columns)
        #: Accepted rows checked, and rows the reader rejected meanwhile (``scan``).
        self.rows = 0
        self.rejected = 0

    def add(self, batch: Sequence[Sequence[Any]]) -> None:
        """Check one batch of accepted rows, each ``(line, *fields)``."""
        if batch:
            self.add_columns(list(zip(*batch, strict=True))[1:], len(batch))

    def add_columns(self, columns: Sequence[Sequence[str]], rows: int) -> None:
        """Check one batch of ``rows`` accepted rows given as its columns."""
        if not rows:
            return
        self.rows += rows
        for i, values in enumerate(columns):
            self.types[i] = coltypes.batch_type(self.types[i], values)
            self.quality.add(i, values)
        self.quality.add_members(columns)

    def as_dict(self) -> dict[str, Any]:
        return {
            "types": self.types,
            "quality": {i: [c.non_empty, c.valid] for i, c in self.quality.columns.items()},
            "consent": {i: c.as_dict() for i, c in self.quality.consent.items()},
            "several": dict(self.quality.several),
        }

    def load(self, answer: dict[str, Any]) -> None:
        self.types = list(answer["types"])
        for index, (non_empty, valid) in answer["quality"].items():
            column = self.quality.columns[int(index)]
            column.non_empty, column.valid = non_empty, valid
        # The answer says which columns it counted as consent.
        self.quality.consent = {}
        for index, counted in answer.get("consent", {}).items():
            signal = ConsentColumn(str(counted["column"]), str(counted["kind"]))
            signal.merge(counted)
            self.quality.consent[int(index)] = signal
        self.quality.several.update(answer.get("several", {}))


@dataclass(frozen=True)
class Job:
    """What the helper process needs to read the file exactly as the importer does."""

    offset: int
    encoding: str
    delimiter: str
    max_field_chars: int
    key_index: int
    #: Where to stop reading (a line start), and the header of a stretch
    #: that starts after it (see ``split``); None for the whole file.
    end: int | None = None
    header: list[str] | None = None
    #: Added to the helper's niceness: helpers that share the cores with an
    #: importer copying in SQLite should not slow it down.
    nice: int = 0
    #: Region the quality summary assumes for phones without a country code.
    phone_region: str = phones.DEFAULT_REGION
    #: Consent columns a stored mapping names, by mapping entry (None: detect).
    consent_columns: dict[str, str] | None = None
    #: The importer's empty-like words (``coltypes.EMPTY_LIKE``), which typing here must share.
    empty_like: list[str] | None = None

    def reader(self, stream: BinaryIO, source: str) -> CsvReader:
        stream.seek(self.offset)
        source_stream: BinaryIO = stream
        if self.end is not None:
            source_stream = cast(BinaryIO, _Stretch(stream, self.end - self.offset))
        return CsvReader(
            source_stream,
            source=source,
            encoding=self.encoding,
            delimiter=self.delimiter,
            max_field_chars=self.max_field_chars,
            header=self.header,
        )

    def split(self, fd: int, size: int, header: list[str]) -> list[Job]:
        """Jobs for the two halves of a file whose lines are all records.

        The second half starts at the line start nearest the middle and is
        read without a header. Only for a file that may be plain (see
        ``CsvReader.plain``): in a file with quoted line breaks, a line start
        is not a record start, which the halves' answers then show.
        """
        middle = size // 2
        tail = os.pread(fd, 1 << 16, middle)
        newline = tail.find(b"\n")
        if size < 2 or newline < 0 or middle + newline + 1 >= size:
            return [self]
        cut = middle + newline + 1
        return [
            replace(self, end=cut, nice=HALF_NICENESS),
            replace(self, offset=cut, header=header, nice=HALF_NICENESS),
        ]


class _Stretch:
    """The first ``length`` bytes of a binary stream, from where it stands."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self.stream = stream
        self.left = length

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.stream.read(size)
        self.left -= len(data)
        return data


def merge(answers: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """One answer for a file from the answers for its stretches, in order."""
    if not answers or any(a is None for a in answers):
        return None
    whole: dict[str, Any] = {}
    for answer in answers:
        assert answer is not None
        if not whole:
            whole = {k: v for k, v in answer.items() if k not in ("crc", "peak_rss_kb")}
            whole["quality"] = {i: list(pair) for i, pair in answer["quality"].items()}
            whole["consent"] = {i: dict(c) for i, c in answer.get("consent", {}).items()}
            whole["several"] = dict(answer.get("several", {}))
            continue
        whole["types"] = [
            coltypes.widen(a, b) for a, b in zip(whole["types"], answer["types"], strict=True)
        ]
        for index, (non_empty, valid) in answer["quality"].items():
            whole["quality"][index][0] += non_empty
            whole["quality"][index][1] += valid
        for index, counted in answer.get("consent", {}).items():
            column = ConsentColumn(counted["column"], counted["kind"])
            column.merge(whole["consent"][index])
            column.merge(counted)
            whole["consent"][index] = column.as_dict()
        for kind, several in answer.get("several", {}).items():
            whole["several"][kind] = whole["several"].get(kind, 0) + several
        for count in ("bytes", "rows", "rejected", "lines"):
            whole[count] += answer[count]
        whole["plain"] = whole["plain"] and answer["plain"]
    return whole


def scan(
    reader: CsvReader,
    key_index: int,
    keep_going: Callable[[], bool] = lambda: True,
    phone_region: str = phones.DEFAULT_REGION,
    consent_columns: Mapping[str, str] | None = None,
) -> ColumnChecks:
    """Run the checks over every accepted row still to come from ``reader``."""
    checks = ColumnChecks(reader.header, phone_region, consent_columns)
    for columns, rows, rejected in reader.accepted(BATCH_ROWS, key_index):
        if not keep_going():
            raise SystemExit(1)
        checks.add_columns(columns, rows)
        checks.rejected += rejected
    return checks


def _reopen(stream: BinaryIO) -> int | None:
    """A new file description of the stream's file (own offset), or None."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    for path in (f"/proc/self/fd/{fd}", getattr(stream, "name", None)):
        if isinstance(path, str) and os.path.exists(path):
            try:
                return os.open(path, os.O_RDONLY)
            except OSError:
                continue
    return None


class Helper:
    """The checks running on a second process over the same file."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._report: dict[str, Any] | None = None
        self._reported = False

    @classmethod
    def start(cls, stream: BinaryIO, job: Job) -> Helper | None:
        """Start the helper, or None where the file cannot be shared with it."""
        fd = _reopen(stream)
        if fd is None:
            return None
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "segflow.ingest.checks", str(fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
            )
        except OSError:
            return None
        finally:
            os.close(fd)
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(job.__dict__).encode())
            process.stdin.close()
        except OSError:  # it died at once; its answer will say so and not be used
            pass
        return cls(process)

    def answer(self, bytes_read: int, crc: int) -> dict[str, Any] | None:
        """The helper's checks if it read exactly the bytes the importer read."""
        answer = self.report()
        if answer is None or answer.get("bytes") != bytes_read or answer.get("crc") != crc:
            return None
        return answer

    def report(self) -> dict[str, Any] | None:
        """Whatever the helper answered, unchecked; None if it failed.

        Waits for the helper the first time; later calls give the same answer.
        """
        if not self._reported:
            self._reported = True
            self._report = self._read_report()
        return self._report

    def _read_report(self) -> dict[str, Any] | None:
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self.process.stdout.close()
        if self.process.wait() != 0:
            return None
        try:
            answer: dict[str, Any] = json.loads(out)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()


def _peak_rss_kb() -> int | None:
    """This process's own peak RSS (Linux), for the import benchmark to report.

    Not ``getrusage``: its figure carries over the parent's memory from
    before this process replaced itself with a new Python.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def check(
    job: Job, stream: BinaryIO, keep_going: Callable[[], bool] = lambda: True
) -> dict[str, Any]:
    """The helper's answer for its job: the checks and what its reader saw."""
    reader = job.reader(stream, "helper")
    checks = scan(reader, job.key_index, keep_going, job.phone_region, job.consent_columns)
    answer = checks.as_dict()
    answer.update(
        bytes=reader.bytes_read,
        crc=reader.crc,
        rows=checks.rows,
        rejected=checks.rejected,
        lines=reader.lines_read,
        plain=reader.plain,
    )
    return answer


def main() -> int:
    fd = int(sys.argv[1])
    job = Job(**json.loads(sys.stdin.buffer.read()))
    coltypes.use_empty_like(job.empty_like)
    if job.nice and hasattr(os, "nice"):
        os.nice(job.nice)
    parent = os.getppid()
    with os.fdopen(fd, "rb") as stream:
        try:
            # An importer that was killed leaves no one to answer: stop reading.
            answer = check(job, stream, lambda: os.getppid() == parent)
        except Exception as exc:  # the importer reads the file itself and reports errors
            print(json.dumps({"error": type(exc).__name__}))
            return 1
    answer["peak_rss_kb"] = _peak_rss_kb()
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
