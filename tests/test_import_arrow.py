"""Arrow reading a clean file gives exactly what segflow's reader gives.

A file read from disk or an upload is parsed by Apache Arrow when it is clean
(``segflow.ingest.arrowcsv``); anything else is read again with segflow's
reader. These tests import each file twice, once through Arrow and once
through segflow's reader (a stream that cannot be read again, like standard
input, always goes there), and compare summaries, stored records and typed
values. They also check which way each file went, so a fast path that
silently never runs fails them.
"""

from __future__ import annotations

import gc
import io
import itertools
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow import datasets, demo, ingest
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import upgrade
from segflow.db.records import ident, typed_col
from segflow.errors import ImportFailed
from segflow.ingest import arrowcsv, checks, staging
from segflow.ingest.options import BATCH_ROWS
from segflow.progress import Progress
from tests.helpers import FIXTURES, NOW, all_rows, do_import, live, snapshot
from tests.sync_helpers import csv_bytes
from tests.test_csv_fixtures import BAD_FILES, GOOD_FILES, SEED

#: The fixtures' field limit (see test_csv_fixtures).
LIMITS = Settings(max_field_chars=100)
VARYING = ("dataset", "duration_s", "first_seq", "last_seq", "created", "source")

#: Fixtures Arrow reads: UTF-8, one record a line, well-formed quotes, no
#: blank line, no rejected row but an empty key.
CLEAN = {
    "bom_crlf.csv",
    "crm_trailing_semicolons.csv",
    "header_only.csv",
    "no_final_newline.csv",
    "semicolon.csv",
    "tab.tsv",
    "unicode.csv",
}


class _Pipe(io.RawIOBase):
    """Bytes that can be read once, from the start: what standard input is."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._data.readinto(buffer)


def unseekable(data: bytes) -> BinaryIO:
    """A stream of ``data`` that cannot seek: the import reads it with segflow's reader."""
    return cast(BinaryIO, io.BufferedReader(_Pipe(data)))


@pytest.fixture
def ways(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each import Arrow could have read went: 'arrow', or why not."""
    seen: list[str] = []
    real = arrowcsv.ArrowRows.stage

    def stage(self: arrowcsv.ArrowRows, *args: Any) -> None:
        try:
            real(self, *args)
        except arrowcsv.NotClean as exc:
            seen.append(f"not clean: {exc}")
            raise
        seen.append("arrow")

    monkeypatch.setattr(arrowcsv.ArrowRows, "stage", stage)
    return seen


def _import(
    db: Database, data: bytes | Path, dataset: str, arrow: bool, **options: Any
) -> dict[str, Any]:
    raw = data.read_bytes() if isinstance(data, Path) else data
    with open(_write(raw), "rb") as file:
        return ingest.import_csv(
            db,
            file if arrow else unseekable(raw),
            ingest.ImportOptions(dataset=dataset, **options),
            source="file.csv",
            now=NOW,
            settings=LIMITS,
        )


_TMP: list[Path] = []
# Not random: Hypothesis seeds the random module alike for every example.
_NUMBERS = itertools.count()


def _write(raw: bytes) -> Path:
    path = _TMP[0] / f"f{next(_NUMBERS)}.csv"
    path.write_bytes(raw)
    return path


@pytest.fixture(autouse=True)
def _files(tmp_path: Path) -> Any:
    _TMP[:] = [tmp_path]
    yield


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Any:
    """A database on SQLite only, for the many small imports of the property test."""
    database = Database(f"sqlite:///{tmp_path / 'sqlite-only.db'}")
    upgrade(database)
    yield database
    database.dispose()


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in VARYING}


def _typed(db: Database, dataset: str) -> list[tuple[Any, ...]]:
    """Every record's typed values, by key: what rules compare."""
    found = datasets.get_dataset(db, dataset)
    cols = [typed_col(c.position) for c in found.columns if c.type not in ("text", "empty")]
    if not cols:
        return []
    with db.read() as conn:
        select = ", ".join(["key", *map(ident, cols)])
        query = f"SELECT {select} FROM {ident(found.records_table)} ORDER BY key"
        return [tuple(r) for r in conn.exec_driver_sql(query)]


def _same(db: Database, fast: dict[str, Any], alone: dict[str, Any], a: str, b: str) -> None:
    assert _comparable(fast) == _comparable(alone)
    assert live(db, a) == live(db, b)
    assert _typed(db, a) == _typed(db, b)


@pytest.mark.parametrize(("fixture", "options"), [(n, o) for n, o, _ in GOOD_FILES])
def test_fixtures_import_alike_and_clean_ones_are_read_by_arrow(
    db: Database, fixture: str, options: dict[str, Any], ways: list[str]
) -> None:
    path = FIXTURES / fixture
    alone = _import(db, path, "alone", False, **options)
    assert ways == []
    fast = _import(db, path, "fast", True, **options)
    _same(db, fast, alone, "fast", "alone")
    if fixture in CLEAN:
        assert ways == ["arrow"]
    else:
        assert ways == [] or (len(ways) == 1 and ways[0].startswith("not clean")), ways


@pytest.mark.parametrize(("fixture", "options", "message"), BAD_FILES)
def test_bad_files_fail_alike_and_store_nothing(
    db: Database, fixture: str, options: dict[str, Any], message: str
) -> None:
    path = FIXTURES / fixture
    do_import(db, SEED)
    # Into an existing dataset, the fixture's own error, the same either way.
    before = snapshot(db, "people")
    errors = []
    for arrow in (False, True):
        with pytest.raises(ImportFailed) as caught:
            _import(db, path, "people", arrow, **options)
        errors.append(str(caught.value))
    assert errors[0] == errors[1] and message in errors[0]
    assert snapshot(db, "people") == before
    # Into a new dataset (some fixtures are only bad for an existing one).
    outcomes = []
    for name, arrow in (("alone", False), ("fast", True)):
        try:
            outcomes.append(_comparable(_import(db, path, name, arrow, **options)))
        except ImportFailed as exc:
            outcomes.append({"error": str(exc)})
            assert datasets.find_dataset(db, name) is None
    assert outcomes[0] == outcomes[1]


def test_a_changing_import_into_an_existing_dataset_is_read_by_arrow(
    db: Database, ways: list[str]
) -> None:
    rows = list(demo.rows(3_000, seed=8))
    first = csv_bytes(rows)
    for dataset, arrow in (("alone", False), ("fast", True)):
        _import(db, first, dataset, arrow, key="id")
    # Changed values, new rows, a dropped row, a new column, a widened type.
    changed = [(*r[:8], f"{float(r[8]) + 1:.2f}", *r[9:], "7") for r in rows[1:]]
    changed[5] = (*changed[5][:8], "12.5", *changed[5][9:])
    changed += [(str(90_000 + i), *rows[i][1:], "x") for i in range(40)]
    second = csv_bytes(changed, (*demo.HEADER, "visits"))
    ways.clear()
    alone = _import(db, second, "alone", False, key="id", mode="replace")
    fast = _import(db, second, "fast", True, key="id", mode="replace")
    _same(db, fast, alone, "fast", "alone")
    assert fast["deleted"] == 1 and fast["inserted"] == 40 and fast["schema_changes"]
    assert ways == ["arrow"]
    # The same file again changes nothing.
    before = snapshot(db, "fast")
    again = _import(db, second, "fast", True, key="id", mode="replace")
    assert (again["unchanged"], again["updated"], again["inserted"]) == (3_039, 0, 0)
    assert snapshot(db, "fast")[1:] == before[1:]


def _wide_file(first_rows: int, later: dict[str, str]) -> bytes:
    """More rows than one batch; after ``first_rows`` rows, columns change type."""
    header = ("id", "late", "count", "day", "flag", "note")
    rows = []
    for i in range(BATCH_ROWS + 500):
        row = {"id": str(i + 1), "late": "", "count": str(i % 97), "day": "2026-01-02"}
        row |= {"flag": "yes" if i % 2 else "no", "note": f"n{i}"}
        if i >= first_rows:
            row |= {k: v.format(i=i) for k, v in later.items()}
        rows.append(tuple(row[h] for h in header))
    return csv_bytes(rows, header)


@pytest.mark.parametrize(
    "later",
    [
        {},  # the first rows' types hold
        {"late": "{i}"},  # empty at first, then integers
        {"count": "{i}.5"},  # integers, then numbers
        {"day": "2026-01-02T10:00:00Z"},  # dates, then datetimes
        {"flag": "maybe", "count": "many"},  # typed, then text
    ],
)
def test_a_new_dataset_gets_the_whole_files_types_not_its_first_rows(
    db: Database, later: dict[str, str], ways: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arrowcsv, "BLOCK_BYTES", 1 << 16)  # many batches
    data = _wide_file(BATCH_ROWS + 100, later)
    alone = _import(db, data, "alone", False)
    fast = _import(db, data, "fast", True)
    _same(db, fast, alone, "fast", "alone")
    assert ways == ["arrow"]


def test_duplicate_and_empty_keys_are_reported_by_line(db: Database, ways: list[str]) -> None:
    rows = list(demo.rows(500, seed=3))
    rows.insert(300, rows[7])
    rows.insert(400, ("  ", *rows[9][1:]))
    data = csv_bytes(rows)
    alone = _import(db, data, "alone", False)
    fast = _import(db, data, "fast", True)
    _same(db, fast, alone, "fast", "alone")
    assert fast["rejects"] == [
        {"line": 302, "reason": f"duplicate key {rows[7][0]!r} (first seen on line 9)"},
        {"line": 402, "reason": "the key column 'id' is empty"},
    ]
    assert ways == ["arrow"]


def test_progress_is_reported_and_an_interrupt_stores_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch, ways: list[str]
) -> None:
    monkeypatch.setattr(arrowcsv, "BLOCK_BYTES", 1 << 14)

    def run(data: bytes, progress: Callable[[Progress], None]) -> None:
        with open(_write(data), "rb") as stream:
            ingest.import_csv(
                db,
                stream,
                ingest.ImportOptions(dataset="people"),
                source="file.csv",
                now=NOW,
                progress=progress,
            )

    seen: list[Progress] = []
    data = csv_bytes(list(demo.rows(1_000, seed=2)))
    run(data, seen.append)
    reading = [p for p in seen if p.phase == "reading"]
    assert len(reading) > 3 and reading[-1].rows == 1_000
    assert [p.rows for p in reading] == sorted(p.rows for p in reading)
    assert reading[-1].bytes_read == len(data)

    before = snapshot(db, "people")

    def interrupt(progress: Progress) -> None:
        if progress.phase == "reading" and progress.rows >= 300:
            raise KeyboardInterrupt

    changed = csv_bytes([(*r[:3], "Changed", *r[4:]) for r in demo.rows(1_000, seed=2)])
    with pytest.raises(KeyboardInterrupt):
        run(changed, interrupt)
    assert snapshot(db, "people") == before
    assert ways == ["arrow"]


# Fields drawn to sit on every edge of "clean": delimiters, quotes, CRs,
# spaces, empty values, short and long rows, blank lines, duplicate keys.
_FIELD = st.sampled_from(
    ["", " ", "a", "b c", "1", "-2", "3.5", "2026-01-02", "yes", "é", "x", '"q"', '"a,b"', '""']
)
_ODD = st.sampled_from(['"', "\r", ",", ";", "\t", "  ", "\n", '"x"y', "\x00"])


@st.composite
def _csv_files(draw: st.DrawFn) -> tuple[bytes, str]:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    ncols = draw(st.integers(2, 4))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [delimiter.join(["id", *(f"c{i}" for i in range(1, ncols))])]
    for n in range(draw(st.integers(0, 30))):
        fields = [str(draw(st.integers(1, 25)) if draw(st.booleans()) else n + 1)]
        fields += [draw(_FIELD) for _ in range(ncols - 1)]
        if draw(st.integers(0, 9)) == 0:
            fields[draw(st.integers(0, ncols - 1))] += draw(_ODD)
        if draw(st.integers(0, 14)) == 0:
            fields = fields[: draw(st.integers(0, ncols + 1))] or [""]
        lines.append(delimiter.join(fields))
    text = end.join(lines) + (end if draw(st.booleans()) else "")
    return text.encode(), delimiter


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_csv_files())
def test_any_file_imports_alike_read_by_arrow_or_by_segflow(
    sqlite_db: Database, case: tuple[bytes, str]
) -> None:
    db = sqlite_db
    data, delimiter = case
    name = f"f{next(_NUMBERS)}"
    outcomes = []
    for arrow in (False, True):
        try:
            summary = _import(db, data, f"{name}{arrow}", arrow, delimiter=delimiter, key="id")
            outcomes.append(("ok", _comparable(summary)))
        except Exception as exc:  # the same refusal either way
            outcomes.append(("failed", str(exc)))
    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] == "ok":
        a, b = f"{name}False", f"{name}True"
        assert all_rows_without_ids(db, a) == all_rows_without_ids(db, b)
        assert _typed(db, a) == _typed(db, b)


def all_rows_without_ids(db: Database, dataset: str) -> list[tuple[Any, ...]]:
    """Stored rows (tombstones too) without the row id and sequence number."""
    return [row[1:2] + row[3:] for row in all_rows(db, dataset)]


def test_a_file_with_every_field_quoted_is_read_by_arrow(db: Database, ways: list[str]) -> None:
    rows = list(demo.rows(2_000, seed=5))
    rows[10] = (rows[10][0], 'say "hi", then', *rows[10][2:])
    data = b"".join(
        b",".join(b'"' + str(v).replace('"', '""').encode() + b'"' for v in row) + b"\r\n"
        for row in [demo.HEADER, *rows]
    )
    alone = _import(db, data, "alone", False)
    fast = _import(db, data, "fast", True)
    _same(db, fast, alone, "fast", "alone")
    assert live(db, "fast")[rows[10][0]]["email"] == 'say "hi", then'
    assert ways == ["arrow"]


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        (b'90001,"two\nlines",x,Ann,Lee,CA,US,90210,1.5,2026-01-02,yes\r\n', "quoted line"),
        (b'90001,"x"y,x,Ann,Lee,CA,US,90210,1.5,2026-01-02,yes\n', "quotes not around"),
        (b"90001,short\n", "Expected 11 columns"),
        (b"\n90001,a,x,Ann,Lee,CA,US,90210,1.5,2026-01-02,yes\n", "blank lines"),
        (b"90001,a\rb,x,Ann,Lee,CA,US,90210,1.5,2026-01-02,yes\n", "line ends"),
    ],
    ids=["quoted-newline", "stray-quote", "short-row", "blank-line", "bare-cr"],
)
def test_a_problem_after_the_first_blocks_is_read_exactly(
    db: Database, ways: list[str], tail: bytes, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Clean for several of Arrow's blocks, then not: segflow's reader reads
    # the whole file again, keeping what it keeps and refusing what it refuses.
    monkeypatch.setattr(arrowcsv, "BLOCK_BYTES", 1 << 18)
    body = csv_bytes(list(demo.rows(12_000, seed=12)))
    assert len(body) > 2 * arrowcsv.BLOCK_BYTES
    data = body + tail + b"90002,b,x,Bo,Ng,CA,US,90210,2.5,2026-01-03,no\n"
    outcomes = []
    for name, arrow in (("alone", False), ("fast", True)):
        try:
            outcomes.append(_comparable(_import(db, data, name, arrow)))
        except ImportFailed as exc:
            outcomes.append({"error": str(exc)})
    assert outcomes[0] == outcomes[1]
    assert len(ways) == 1 and ways[0].startswith("not clean") and why in ways[0], ways
    if "error" not in outcomes[0]:
        assert live(db, "fast") == live(db, "alone")


def test_a_problem_in_the_first_block_is_read_exactly(db: Database, ways: list[str]) -> None:
    data = b'id,name\n1,"x"y\n2,b\n'
    with pytest.raises(ImportFailed, match=r"line 2: a closing quote is followed by"):
        _import(db, data, "people", True)
    assert len(ways) == 1 and ways[0].startswith("not clean")
    assert datasets.find_dataset(db, "people") is None


def test_the_scratch_file_is_removed_and_a_killed_imports_one_too(
    db: Database, tmp_path: Path
) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL stages into the import's temporary table")
    folder = staging._scratch_dir(db.engine.url.database)
    # Beside the database file, private to its user.
    assert folder.parent == Path(str(db.engine.url.database)).resolve().parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # A process that is gone left a scratch file behind.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    left = folder / f"{int(dead.stdout)}-leftover.db"
    left.write_bytes(b"x")
    before = {p.name for p in folder.iterdir()}
    _import(db, csv_bytes(list(demo.rows(300, seed=1))), "people", True)
    after = {p.name for p in folder.iterdir()}
    assert not left.exists()
    assert after <= before - {left.name}


def test_imports_open_their_own_connection_whatever_the_pool_holds(
    db: Database, ways: list[str]
) -> None:
    # The pool holds connections that have used temporary tables (the
    # engine's evaluations do; PostgreSQL then refuses to size an import's
    # temporary memory).
    with db.connect() as one, db.connect() as two:
        for conn in (one, two):
            conn.exec_driver_sql("CREATE TEMP TABLE sf_used (x INTEGER)")
            conn.commit()
    rows = list(demo.rows(60, seed=3))
    first = _import(db, csv_bytes(rows), "people", True)
    again = _import(db, csv_bytes([(*r[:8], "5.00", *r[9:]) for r in rows]), "people", True)
    assert (first["inserted"], again["updated"]) == (60, 60)
    assert ways == ["arrow", "arrow"]


def test_statements_repeated_elsewhere_survive_an_import_that_changes_columns(
    db: Database,
) -> None:
    # An import adds and retypes columns from a connection of its own; a
    # pooled connection that ran a query many times (PostgreSQL drivers
    # prepare those) must not fail afterwards on the changed table.
    do_import(db, b"id,spend\n1,5\n2,6\n", "people", key="id")
    table = datasets.find_dataset(db, "people")
    assert table is not None
    query = f"SELECT * FROM {ident(table.records_table)} ORDER BY key"

    def read() -> list[Any]:
        with db.read() as conn:
            return list(conn.exec_driver_sql(query))

    for _ in range(8):
        read()
    do_import(db, b"id,spend,tier\n1,5.5,gold\n2,6,silver\n", "people")
    assert len(read()) == 2 and len(read()[0]) > 6


def test_imports_at_once_share_one_heap_freeze() -> None:
    """A server's imports run on threads: the last to end thaws the heap, not the first."""
    with checks.frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with checks.frozen_heap():
            pass
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == 0


def test_the_scratch_file_is_private_to_its_owner(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL stages into the import's temporary table")
    with db.import_connection() as conn:
        staged = staging.Staging(conn, 2, 0)
        assert staged.file is not None and staged.file.exists()
        # A full copy of the file's rows: no other local user may read it.
        assert stat.S_IMODE(staged.file.stat().st_mode) == 0o600
        assert stat.S_IMODE(staged.file.parent.stat().st_mode) == 0o700


def _verdict(data: bytes, read_size: int, delimiter: str = ",") -> str | None:
    """Why the clean check refuses ``data`` read ``read_size`` bytes at a time, or None."""
    checked = arrowcsv._CheckedFile(io.BytesIO(data), delimiter, 1 << 20)
    try:
        while checked.read(read_size):
            pass
    except arrowcsv.NotClean as exc:
        return str(exc)
    return None


@given(_csv_files(), st.integers(1, 40))
def test_the_clean_check_does_not_depend_on_where_reads_split_the_file(
    drawn: tuple[bytes, str], read_size: int
) -> None:
    # Arrow reads a file in blocks; a blank line, a lone CR or a NUL must be
    # found whether it straddles two reads or not.
    data, delimiter = drawn
    whole = _verdict(data, len(data) + 1, delimiter)
    assert (_verdict(data, read_size, delimiter) is None) == (whole is None)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"id,a\n1,x\n\n2,y\n", "blank lines"),
        (b"id,a\r\n1,x\r\n\r\n2,y\r\n", "blank lines"),
        (b"id,a\n1,x\r2,y\n", "line ends other than LF and CRLF"),
        (b"id,a\n1,x\x00\n", "NUL byte"),
        (b'id,a\n1,"x\n', "quoted line breaks"),
    ],
)
def test_the_clean_check_finds_each_problem_at_every_split(data: bytes, why: str) -> None:
    for size in range(1, len(data) + 2):
        found = _verdict(data, size)
        assert found is not None and why in found, (size, found)


def test_the_checked_file_is_a_file_arrow_can_close() -> None:
    checked = arrowcsv._CheckedFile(io.BytesIO(b"id\n1\n"), ",", 1 << 20)
    wrapped = pa.PythonFile(checked, mode="r")
    assert wrapped.read(5) == b"id\n1\n"
    wrapped.close()
    assert checked.closed and checked.readable() and not checked.seekable()
