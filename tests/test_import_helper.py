"""The column checks on a second process give exactly what one process gives.

Large files have their types and identifier quality worked out by a helper
process that reads the same file (``segflow.ingest.checks``). These tests force the
helper for small files and compare every result with an import that checks
in-process: summaries, stored records, errors; and that an answer the
importer cannot trust is never used.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from segflow import demo, ingest
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import ImportFailed
from segflow.ingest import checks, csvreader
from tests.helpers import FIXTURES, NOW, do_import, live
from tests.sync_helpers import csv_bytes
from tests.test_csv_fixtures import BAD_FILES, GOOD_FILES, SEED

#: The helper with segflow's reader in the importing process too (see
#: test_import_sqlite_reads for SQLite reading the file instead).
HELPER = Settings(checks_process_bytes=0, max_field_chars=100, sqlite_reads_csv=False)
ALONE = Settings(checks_process_bytes=1 << 62, max_field_chars=100)
#: What may differ between two imports of one file into two datasets.
VARYING = ("dataset", "duration_s", "first_seq", "last_seq", "created")


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any] | None]:
    """The helper's answers, as the importer received them."""
    seen: list[dict[str, Any] | None] = []
    real = checks.Helper.answer

    def spy(self: checks.Helper, bytes_read: int, crc: int) -> dict[str, Any] | None:
        answer = real(self, bytes_read, crc)
        seen.append(answer)
        return answer

    monkeypatch.setattr(checks.Helper, "answer", spy)
    return seen


def _import(db: Database, path: Path, dataset: str, settings: Settings, **options: Any) -> Any:
    with path.open("rb") as stream:
        return ingest.import_csv(
            db,
            stream,
            ingest.ImportOptions(dataset=dataset, **options),
            source=str(path),
            now=NOW,
            settings=settings,
        )


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in VARYING}


def _customers_file(tmp_path: Path) -> Path:
    rows = list(demo.rows(2_500, seed=5))
    rows[10] = ("", *rows[10][1:])  # an empty key
    rows.append(rows[3])  # a duplicate key
    rows[20] = (*rows[20][:8], "lots", *rows[20][9:])  # spend becomes text
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_bytes(rows) + b"9999,short,row\n")
    return path


CASES = [(name, options) for name, options, _ in GOOD_FILES] + [("row_rejects.csv", {})]


@pytest.mark.parametrize(("fixture", "options"), CASES)
def test_the_helper_gives_the_same_summary_and_records(
    db: Database, fixture: str, options: dict[str, Any], answers: list[Any]
) -> None:
    path = FIXTURES / fixture
    alone = _import(db, path, "alone", ALONE, **options)
    assert answers == []
    helped = _import(db, path, "helped", HELPER, **options)
    assert len(answers) == 1 and answers[0] is not None, "the helper's answer was not used"
    assert _comparable(helped) == _comparable(alone)
    assert live(db, "helped") == live(db, "alone")


def test_the_helper_types_and_counts_a_customer_file_like_one_process(
    db: Database, tmp_path: Path, answers: list[Any]
) -> None:
    path = _customers_file(tmp_path)
    alone = _import(db, path, "alone", ALONE)
    helped = _import(db, path, "helped", HELPER)
    assert answers and answers[0] is not None
    assert _comparable(helped) == _comparable(alone)
    types = {c["name"]: c["type"] for c in helped["columns"]}
    assert (types["id"], types["lifetime_spend"], types["signup_date"]) == (
        "integer",
        "text",
        "date",
    )
    assert {i["kind"] for i in helped["identifiers"]} >= {"email", "phone", "postal_code"}
    # A second, changing import into the same dataset agrees too.
    again = _import(db, path, "alone", ALONE, mode="replace")
    again_helped = _import(db, path, "helped", HELPER, mode="replace")
    assert _comparable(again_helped) == _comparable(again)


@pytest.mark.parametrize(("fixture", "options", "message"), BAD_FILES)
def test_bad_files_fail_the_same_way_with_the_helper(
    db: Database, fixture: str, options: dict[str, Any], message: str
) -> None:
    path = FIXTURES / fixture
    do_import(db, SEED)
    errors = []
    for settings in (ALONE, HELPER):
        with pytest.raises(ImportFailed) as caught:
            _import(db, path, "people", settings, **options)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert message in errors[1]


def test_an_answer_for_other_bytes_is_not_used(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _customers_file(tmp_path)
    alone = _import(db, path, "alone", ALONE)
    real = checks.Helper.answer
    seen: list[Any] = []

    def other_bytes(self: checks.Helper, bytes_read: int, crc: int) -> Any:
        # As if the file had changed between the two readers: the importer
        # must refuse the answer and check the columns itself.
        answer = real(self, bytes_read, crc ^ 1)
        seen.append(answer)
        return answer

    monkeypatch.setattr(checks.Helper, "answer", other_bytes)
    helped = _import(db, path, "helped", HELPER)
    assert seen == [None]
    assert _comparable(helped) == _comparable(alone)


def test_a_stream_that_cannot_be_reopened_is_checked_in_process(
    db: Database, answers: list[Any]
) -> None:
    import io

    data = (FIXTURES / "quoting.csv").read_bytes()
    summary = ingest.import_csv(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(dataset="people"),
        source="memory",
        now=NOW,
        settings=HELPER,
    )
    assert answers == []
    assert summary["inserted"] == 5


@pytest.mark.parametrize(
    "fixture", ["bom_crlf.csv", "unicode.csv", "row_rejects.csv", "blank_lines.csv", "tab.tsv"]
)
def test_the_halves_of_a_file_merge_into_the_answer_for_the_whole(
    fixture: str, tmp_path: Path
) -> None:
    header, _, body = (FIXTURES / fixture).read_bytes().partition(b"\n")
    path = tmp_path / fixture
    path.write_bytes(header + b"\n" + body * 7)  # long enough to have a middle
    with path.open("rb") as stream:
        reader = csvreader.CsvReader(stream, source="x")
        job = checks.Job(0, "utf-8", reader.delimiter, 100, 0)
        whole = checks.check(job, stream)
        parts = job.split(stream.fileno(), path.stat().st_size, reader.header)
        merged = checks.merge([checks.check(part, stream) for part in parts])
    assert len(parts) == 2 and parts[0].end == parts[1].offset
    assert path.read_bytes()[parts[1].offset - 1] == ord("\n")  # a line start
    assert {k: v for k, v in whole.items() if k != "crc"} == merged


def test_halves_cut_inside_a_quoted_line_break_are_never_taken_for_plain(
    tmp_path: Path,
) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes(b'id,note\n1,a\n2,"first\nsecond\nthird"\n3,b\n')
    with path.open("rb") as stream:
        job = checks.Job(0, "utf-8", ",", 100, 0)
        parts = job.split(stream.fileno(), path.stat().st_size, ["id", "note"])
        answers = []
        for part in parts:
            try:
                answers.append(checks.check(part, stream))
            except ImportFailed:
                answers.append(None)  # the helper process fails; no answer
    data = path.read_bytes()
    assert len(parts) == 2 and data.index(b'"') < parts[1].offset < data.rindex(b'"')
    merged = checks.merge(answers)
    assert merged is None or merged["plain"] is False


def test_a_file_without_a_line_start_past_its_middle_is_not_split(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_bytes(b"id,name\n1," + b"x" * 5_000)
    with path.open("rb") as stream:
        job = checks.Job(0, "utf-8", ",", 10_000, 0)
        assert job.split(stream.fileno(), path.stat().st_size, ["id", "name"]) == [job]


_PIECES = ["a", "b", " ", ",", ",", '"', "\r\n", "\n", "\n", "\r", "\u00e9", "abcdefghijklm"]
_anything = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)
# Lines of fields, mostly the header's three, ending in LF or CRLF.
_field = st.sampled_from(["a", "b", "", " ", "\u00e9", "a", "abcdefghijklm"])
_line = st.one_of(
    *[st.lists(_field, min_size=3, max_size=3).map(",".join)] * 4,
    st.lists(_field, max_size=4).map(",".join),
)
_lines = st.tuples(st.lists(_line, max_size=12), st.sampled_from(["\n", "\r\n"])).map(
    lambda lines_end: "".join(line + lines_end[1] for line in lines_end[0])
)


@given(
    header=st.sampled_from(["id,name,x", "id"]),
    body=st.one_of(_anything, _lines, st.tuples(_lines, _anything).map("".join)),
    chunk=st.sampled_from([5, 16, 1 << 20]),
    size=st.integers(1, 4),
)
@example(header="id,name,x", body="a,b,c\r\nd,e,f\r\n", chunk=1 << 20, size=2)
@example(header="id,name,x", body="a,b,c\nd,e,abcdefghijklm\n", chunk=1 << 20, size=2)
@example(header="id", body="a\n\nb\r\n \r\n", chunk=1 << 20, size=4)
def test_the_checks_read_the_rows_the_import_accepts(
    header: str, body: str, chunk: int, size: int
) -> None:
    # ``accepted`` splits plain lines itself and hands the rest to the csv
    # module; it must see exactly the rows ``batches`` accepts, with the same
    # rejects and lines, also when the file turns from plain to quoted in the
    # middle (small chunks) and with fields over the limit (12 characters).
    data = (header + "\n" + body).encode()

    def reader() -> csvreader.CsvReader:
        return csvreader.CsvReader(io.BytesIO(data), source="x", max_field_chars=12)

    with mock.patch.object(csvreader, "CHUNK_BYTES", chunk):
        expected: Any
        try:
            one = reader()
            rows, rejected = [], 0
            for batch, rejects, _kept in one.batches(size, 0):
                rows += [list(row[1:]) for row in batch]
                rejected += len(rejects)
            expected = (rows, rejected, one.lines_read)
        except ImportFailed:
            expected = ImportFailed
        got: Any
        try:
            other = reader()
            rows, rejected = [], 0
            for columns, count, bad in other.accepted(size, 0):
                assert all(len(column) == count for column in columns)
                rows += [list(row) for row in zip(*columns, strict=True)]
                rejected += bad
            got = (rows, rejected, other.lines_read)
        except ImportFailed:
            got = ImportFailed
    assert got == expected
