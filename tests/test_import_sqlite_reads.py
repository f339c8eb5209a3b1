"""SQLite reading a plain file itself gives exactly what segflow's reader gives.

On SQLite a file that the helper process finds plain is read by SQLite
(``segflow.ingest.csvtable``): straight into a new dataset's records, or into the
staging table of an existing one. These tests import each file twice, once
with SQLite reading it and once checked in one process with segflow's reader,
and compare summaries, stored records and typed values. They also check which
way each file went, so a fast path that silently never runs fails them.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow import datasets, demo, ingest
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import upgrade
from segflow.db.records import ident, typed_col
from segflow.errors import ImportFailed
from segflow.ingest import checks, csvtable
from segflow.ingest.options import BATCH_ROWS
from segflow.progress import Progress
from tests.helpers import FIXTURES, NOW, all_rows, do_import, live, snapshot
from tests.sync_helpers import csv_bytes
from tests.test_csv_fixtures import BAD_FILES, GOOD_FILES, SEED

SQLITE_READS = Settings(checks_process_bytes=0, max_field_chars=100)
ALONE = Settings(checks_process_bytes=1 << 62, max_field_chars=100)
VARYING = ("dataset", "duration_s", "first_seq", "last_seq", "created", "source")

#: Fixtures whose bytes SQLite may read: no quotes, LF or CRLF, no blank
#: lines, no rejected rows, UTF-8.
PLAIN = {
    "bom_crlf.csv",
    "header_only.csv",
    "no_final_newline.csv",
    "semicolon.csv",
    "tab.tsv",
    "unicode.csv",
}


@pytest.fixture
def ways(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each import that SQLite could have read went: 'direct' (straight
    into a new dataset), 'staged' (into staging), or why it was not used."""
    seen: list[str] = []
    real_usable = csvtable.usable
    real_copy = csvtable.copy

    def copy(*args: Any, **kwargs: Any) -> int:
        seen.append("direct" if not kwargs["into"].startswith("sf_stage_") else "staged")
        return real_copy(*args, **kwargs)

    def usable(answer: Any, **kwargs: Any) -> str | None:
        reason = real_usable(answer, **kwargs)
        if reason is not None:
            seen.append(f"not used: {reason}")
        return reason

    monkeypatch.setattr(csvtable, "copy", copy)
    monkeypatch.setattr(csvtable, "usable", usable)
    return seen


def _import(
    db: Database, data: bytes | Path, dataset: str, settings: Settings, **options: Any
) -> dict[str, Any]:
    raw = data.read_bytes() if isinstance(data, Path) else data
    # A real file: SQLite reads it by its descriptor, as it does an upload.
    with open(_write(raw), "rb") as stream:
        return ingest.import_csv(
            db,
            stream,
            ingest.ImportOptions(dataset=dataset, **options),
            source="file.csv",
            now=NOW,
            settings=settings,
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
    """A database on SQLite only: the behaviour under test is SQLite's own."""
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
def test_fixtures_import_alike_and_plain_ones_are_read_by_sqlite(
    db: Database, fixture: str, options: dict[str, Any], ways: list[str]
) -> None:
    path = FIXTURES / fixture
    alone = _import(db, path, "alone", ALONE, **options)
    assert ways == []
    fast = _import(db, path, "fast", SQLITE_READS, **options)
    _same(db, fast, alone, "fast", "alone")
    if db.is_postgres:
        assert ways == []  # PostgreSQL always reads with segflow's reader
    elif fixture in PLAIN:
        assert ways == ["direct"]
    elif ways:
        # Read by SQLite only if the start looked plain; then refused.
        assert ways[0] == "direct" and ways[1].startswith("not used"), ways


@pytest.mark.parametrize(("fixture", "options", "message"), BAD_FILES)
def test_bad_files_fail_alike_and_store_nothing(
    db: Database, fixture: str, options: dict[str, Any], message: str
) -> None:
    path = FIXTURES / fixture
    do_import(db, SEED)
    # Into an existing dataset, the fixture's own error, the same either way.
    before = snapshot(db, "people")
    errors = []
    for how in (ALONE, SQLITE_READS):
        with pytest.raises(ImportFailed) as caught:
            _import(db, path, "people", how, **options)
        errors.append(str(caught.value))
    assert errors[0] == errors[1] and message in errors[0]
    assert snapshot(db, "people") == before
    # Into a new dataset (some fixtures are only bad for an existing one).
    outcomes = []
    for name, how in (("alone", ALONE), ("fast", SQLITE_READS)):
        try:
            outcomes.append(_comparable(_import(db, path, name, how, **options)))
        except ImportFailed as exc:
            outcomes.append({"error": str(exc)})
            assert datasets.find_dataset(db, name) is None
    assert outcomes[0] == outcomes[1]


def test_a_changing_import_into_an_existing_dataset_is_staged_by_sqlite(
    db: Database, ways: list[str]
) -> None:
    rows = list(demo.rows(3_000, seed=8))
    first = csv_bytes(rows)
    for dataset, how in (("alone", ALONE), ("fast", SQLITE_READS)):
        _import(db, first, dataset, how, key="id")
    # Changed values, new rows, a dropped row, a new column, a widened type.
    changed = [(*r[:8], f"{float(r[8]) + 1:.2f}", *r[9:], "7") for r in rows[1:]]
    changed[5] = (*changed[5][:8], "12.5", *changed[5][9:])
    changed += [(str(90_000 + i), *rows[i][1:], "x") for i in range(40)]
    second = csv_bytes(changed, (*demo.HEADER, "visits"))
    ways.clear()
    alone = _import(db, second, "alone", ALONE, key="id", mode="replace")
    fast = _import(db, second, "fast", SQLITE_READS, key="id", mode="replace")
    _same(db, fast, alone, "fast", "alone")
    assert fast["deleted"] == 1 and fast["inserted"] == 40 and fast["schema_changes"]
    assert ways == ([] if db.is_postgres else ["staged"])
    # The same file again changes nothing.
    before = snapshot(db, "fast")
    again = _import(db, second, "fast", SQLITE_READS, key="id", mode="replace")
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
    db: Database, later: dict[str, str], ways: list[str]
) -> None:
    data = _wide_file(BATCH_ROWS + 100, later)
    alone = _import(db, data, "alone", ALONE)
    fast = _import(db, data, "fast", SQLITE_READS)
    _same(db, fast, alone, "fast", "alone")
    assert ways == ([] if db.is_postgres else ["direct"])


def test_duplicate_keys_in_a_plain_new_file_are_reported_by_line(
    db: Database, ways: list[str]
) -> None:
    rows = list(demo.rows(500, seed=3))
    rows.insert(300, rows[7])
    data = csv_bytes(rows)
    alone = _import(db, data, "alone", ALONE)
    fast = _import(db, data, "fast", SQLITE_READS)
    _same(db, fast, alone, "fast", "alone")
    assert fast["rejects"] == [
        {"line": 302, "reason": f"duplicate key {rows[7][0]!r} (first seen on line 9)"}
    ]
    if db.is_sqlite:
        assert ways == ["direct", "staged"]  # the key index refused, staging reports


def _file_changes_from_look(monkeypatch: pytest.MonkeyPatch, first_changed: int) -> None:
    """Make the file look modified (a new mtime) from the ``first_changed``-th
    look at its state on (counting from 0), as if written to meanwhile."""
    real = csvtable.file_state
    looks = itertools.count()

    def looked(fd: int) -> csvtable.FileState:
        state, n = real(fd), next(looks)
        return csvtable.FileState(
            state.device, state.inode, state.size, n if n >= first_changed else 0
        )

    monkeypatch.setattr(csvtable, "file_state", looked)


@pytest.mark.parametrize("path", ["direct", "staged"])
def test_a_file_that_changes_while_read_is_read_again_by_segflow(
    sqlite_db: Database, path: str, ways: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_db
    data = csv_bytes(list(demo.rows(800, seed=4)))
    if path == "staged":
        _import(db, csv_bytes(list(demo.rows(10, seed=4))), "fast", SQLITE_READS)
    alone = _import(db, data, "alone", ALONE)
    _file_changes_from_look(monkeypatch, 1)  # between the first look and the second
    ways.clear()
    fast = _import(db, data, "fast", SQLITE_READS)
    assert ways == [path, "not used: the file changed while it was read"]
    assert live(db, "fast") == live(db, "alone")
    if path == "direct":
        _same(db, fast, alone, "fast", "alone")


def test_without_the_helpers_answer_sqlites_rows_are_not_used(
    sqlite_db: Database, ways: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_db
    data = csv_bytes(list(demo.rows(800, seed=6)))
    alone = _import(db, data, "alone", ALONE)
    monkeypatch.setattr(checks.Helper, "report", lambda self: None)
    fast = _import(db, data, "fast", SQLITE_READS)
    assert ways == ["direct", "not used: the helper process gave no answer"]
    _same(db, fast, alone, "fast", "alone")


def test_progress_is_reported_and_an_interrupt_stores_nothing(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_db
    monkeypatch.setattr(csvtable, "PROGRESS_ROWS", 100)

    def run(data: bytes, progress: Callable[[Progress], None]) -> None:
        with open(_write(data), "rb") as stream:
            ingest.import_csv(
                db,
                stream,
                ingest.ImportOptions(dataset="people"),
                source="file.csv",
                now=NOW,
                settings=SQLITE_READS,
                progress=progress,
            )

    seen: list[Progress] = []
    run(csv_bytes(list(demo.rows(1_000, seed=2))), seen.append)
    reading = [p.rows for p in seen if p.phase == "reading"]
    assert reading == list(range(100, 1_001, 100))

    before = snapshot(db, "people")

    def interrupt(progress: Progress) -> None:
        if progress.phase == "reading" and progress.rows >= 300:
            raise KeyboardInterrupt

    changed = csv_bytes([(*r[:3], "Changed", *r[4:]) for r in demo.rows(1_000, seed=2)])
    with pytest.raises(KeyboardInterrupt):
        run(changed, interrupt)
    assert snapshot(db, "people") == before


def test_only_an_imports_own_connection_can_read_files(sqlite_db: Database) -> None:
    db = sqlite_db
    query = "SELECT COUNT(*) FROM pragma_module_list WHERE name = 'vsv'"
    with db.import_connection() as conn:
        assert conn.exec_driver_sql(query).scalar_one() == 1
    _import(db, csv_bytes(list(demo.rows(50, seed=1))), "people", SQLITE_READS)
    for _ in range(3):  # every pooled connection, however many the pool holds
        with db.connect() as conn:
            assert conn.exec_driver_sql(query).scalar_one() == 0

    # Connections opened on other threads while imports open theirs.
    def importing() -> None:
        for _ in range(40):
            with db.import_connection() as conn:
                conn.exec_driver_sql("SELECT 1")

    thread = threading.Thread(target=importing)
    thread.start()
    seen = []
    while thread.is_alive():
        other = Database(str(db.url))
        with other.connect() as conn:
            seen.append(conn.exec_driver_sql(query).scalar_one())
        other.dispose()
    thread.join()
    assert seen and set(seen) == {0}
    assert "SQLEAN_ENABLE_VSV" not in os.environ


# Fields drawn to sit on every edge of "plain": delimiters, quotes, CRs,
# spaces, empty values, short and long rows, blank lines, duplicate keys.
_FIELD = st.sampled_from(["", " ", "a", "b c", "1", "-2", "3.5", "2026-01-02", "yes", "é", "x"])
_ODD = st.sampled_from(['"', "\r", ",", ";", "\t", "  "])


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
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_csv_files())
def test_any_file_imports_alike_read_by_sqlite_or_by_segflow(
    sqlite_db: Database, case: tuple[bytes, str]
) -> None:
    db = sqlite_db
    data, delimiter = case
    name = f"f{next(_NUMBERS)}"
    outcomes = []
    for settings_ in (ALONE, SQLITE_READS):
        try:
            summary = _import(
                db, data, f"{name}{settings_ is ALONE}", settings_, delimiter=delimiter, key="id"
            )
            outcomes.append(("ok", _comparable(summary)))
        except Exception as exc:  # the same refusal either way
            outcomes.append(("failed", str(exc)))
    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] == "ok":
        a, b = f"{name}True", f"{name}False"
        assert all_rows_without_ids(db, a) == all_rows_without_ids(db, b)
        assert _typed(db, a) == _typed(db, b)


def all_rows_without_ids(db: Database, dataset: str) -> list[tuple[Any, ...]]:
    """Stored rows (tombstones too) without the row id and sequence number."""
    return [row[1:2] + row[3:] for row in all_rows(db, dataset)]


def test_the_csv_writer_round_trip_used_above_is_plain() -> None:
    # Guards the PLAIN set and the generators: csv_bytes writes no quotes for
    # demo rows, so those files are plain.
    data = csv_bytes(list(demo.rows(200, seed=9)))
    assert b'"' not in data and b"\r" not in data
    assert list(csv.reader(io.StringIO(data.decode())))[0] == list(demo.HEADER)


def test_quotes_after_the_first_megabyte_are_read_exactly(db: Database, ways: list[str]) -> None:
    # Plain for more than a chunk, then quoted fields with line breaks: the
    # reader must keep them, and SQLite's reading must be refused.
    rows = list(demo.rows(25_000, seed=12))
    body = csv_bytes(rows)
    assert len(body) > 2 * (1 << 20)
    tail = b'90001,"two\nlines",x,Ann,Lee,CA,US,90210,1.5,2026-01-02,yes\r\n'
    tail += b'90002,"crlf\r\ninside",x,Bo,Ng,CA,US,90210,2.5,2026-01-03,no\n'
    data = body + tail
    alone = _import(db, data, "alone", ALONE)
    fast = _import(db, data, "fast", SQLITE_READS)
    _same(db, fast, alone, "fast", "alone")
    stored = live(db, "alone")
    assert stored["90001"]["email"] == "two\nlines"
    assert stored["90002"]["email"] == "crlf\r\ninside"
    if db.is_sqlite:
        assert ways == [
            "direct",
            "not used: the file has quotes or other line ends than LF and CRLF",
        ]


def test_a_file_that_changes_between_two_readings_is_read_again_by_segflow(
    sqlite_db: Database, ways: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Duplicate keys send a new dataset from the direct load to staging: the
    # second reading is held against the helpers' answer as the first was.
    db = sqlite_db
    rows = list(demo.rows(500, seed=13))
    rows.insert(100, rows[3])
    data = csv_bytes(rows)
    alone = _import(db, data, "alone", ALONE)
    _file_changes_from_look(monkeypatch, 2)  # after the first reading was checked
    fast = _import(db, data, "fast", SQLITE_READS)
    assert ways == ["direct", "staged", "not used: the file changed while it was read"]
    _same(db, fast, alone, "fast", "alone")


def test_a_file_touched_while_the_helpers_still_read_is_read_again_by_segflow(
    sqlite_db: Database, ways: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite has finished its copy; the helpers have not answered yet. A
    # change now may be in what they read and not in what SQLite read.
    db = sqlite_db
    data = csv_bytes(list(demo.rows(600, seed=14)))
    alone = _import(db, data, "alone", ALONE)
    path = _write(data)
    real = checks.Helper.report
    touched: list[bool] = []

    def touch_then_report(self: checks.Helper) -> Any:
        if not touched:
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
            touched.append(True)
        return real(self)

    monkeypatch.setattr(checks.Helper, "report", touch_then_report)
    with open(path, "rb") as stream:
        fast = ingest.import_csv(
            db,
            stream,
            ingest.ImportOptions(dataset="fast"),
            source="file.csv",
            now=NOW,
            settings=SQLITE_READS,
        )
    assert touched
    assert ways == ["direct", "not used: the file changed while it was read"]
    _same(db, fast, alone, "fast", "alone")


def test_imports_open_their_own_connection_whatever_the_pool_holds(
    db: Database, ways: list[str]
) -> None:
    # The pool holds connections that have used temporary tables (the
    # engine's evaluations do; PostgreSQL then refuses to size an import's
    # temporary memory) and, on SQLite, cannot read files.
    with db.connect() as one, db.connect() as two:
        for conn in (one, two):
            conn.exec_driver_sql("CREATE TEMP TABLE sf_used (x INTEGER)")
            conn.commit()
    rows = list(demo.rows(60, seed=3))
    first = _import(db, csv_bytes(rows), "people", SQLITE_READS)
    again = _import(db, csv_bytes([(*r[:8], "5.00", *r[9:]) for r in rows]), "people", SQLITE_READS)
    assert (first["inserted"], again["updated"]) == (60, 60)
    assert ways == (["direct", "staged"] if db.is_sqlite else [])


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
