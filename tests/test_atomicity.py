"""An import commits as a whole: killed mid-way it leaves nothing, and readers
in other processes see the old state or the new one, never a mix."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from segflow import datasets as datasets_module
from segflow import demo
from segflow.db import Database
from segflow.db.records import ident
from segflow.db.schema import datasets
from tests.helpers import do_import, snapshot

BIG_ROWS = 150_000


@pytest.fixture(scope="module")
def big_csvs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two large files with the same keys and different values: each import changes all."""
    paths = []
    for seed in (98, 99):
        path = tmp_path_factory.mktemp("big") / f"big{seed}.csv"
        with path.open("w", newline="") as out:
            demo.write_csv(out, BIG_ROWS, seed=seed)
        paths.append(path)
    return paths


@pytest.fixture
def seeded(db: Database) -> Iterator[Database]:
    do_import(db, demo.csv_bytes(2_000, seed=1), dataset="customers")
    yield db


def _start_import(db_url: str, path: Path, dataset: str = "customers") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "segflow.cli", "import", str(path), "--dataset", dataset]
        + ["--db", db_url, "--progress"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_phase(proc: subprocess.Popen[str], phase: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if f" {phase}:" in line:
            return
    raise AssertionError(f"import ended before phase {phase!r} (exit {proc.wait()})")


@pytest.mark.parametrize(
    ("phase", "delay"), [("reading", 0.0), ("applying", 0.0), ("applying", 0.2), ("applying", 0.5)]
)
def test_sigkill_mid_import_leaves_the_dataset_as_it_was(
    seeded: Database, db_url: str, big_csvs: list[Path], phase: str, delay: float
) -> None:
    for attempt in range(6):
        path = big_csvs[attempt % 2]
        before = snapshot(seeded, "customers")
        with _start_import(db_url, path) as proc:
            _wait_for_phase(proc, phase)
            time.sleep(delay * random.uniform(0.5, 1.5))
            proc.send_signal(signal.SIGKILL)
        if seeded.is_sqlite:
            with seeded.read() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        # Nothing is left locked or half-made: the same import now succeeds.
        after = snapshot(seeded, "customers")
        summary = do_import(seeded, path, dataset="customers")
        assert summary["rows"] == BIG_ROWS and summary["rejected"] == 0
        if after == before:
            return  # stopped before its commit: nothing of it was stored
        # The kill landed after the commit: then all of the file is there.
        assert (summary["inserted"], summary["updated"]) == (0, 0)
        delay *= 0.5  # aim earlier next time
    raise AssertionError("every import committed before it could be killed")


def test_sigkill_while_a_new_dataset_loads_leaves_no_dataset(
    db: Database, db_url: str, big_csvs: list[Path]
) -> None:
    # On SQLite a new dataset's records load straight from the file, with
    # no staging: the kill must still leave no trace of it.
    for attempt in range(6):
        name = f"fresh{attempt}"
        before = snapshot(db, name)
        with _start_import(db_url, big_csvs[0], name) as proc:
            _wait_for_phase(proc, "reading")
            time.sleep(random.uniform(0.0, 0.3) * 0.5**attempt)
            proc.send_signal(signal.SIGKILL)
        if db.is_sqlite:
            with db.read() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        after = snapshot(db, name)
        if after == before:
            assert name not in {d.name for d in datasets_module.list_datasets(db)}
            summary = do_import(db, big_csvs[0], dataset=name)
            assert summary["inserted"] == BIG_ROWS
            return
        assert len(after[2]) == BIG_ROWS  # committed before the kill: all of it
    raise AssertionError("every import committed before it could be killed")


def _observe(db: Database) -> tuple[int, int, int]:
    with db.read() as conn:
        row = conn.execute(sa.select(datasets.c.records_table, datasets.c.record_count)).one()
        live, top = conn.exec_driver_sql(
            f"SELECT COUNT(*), MAX(seq) FROM {ident(row[0])} WHERE NOT deleted"
        ).one()
        return int(row[1]), int(live), int(top)


def test_readers_see_the_old_state_or_the_new_one(
    seeded: Database, db_url: str, big_csvs: list[Path]
) -> None:
    old = _observe(seeded)
    seen = set()
    with _start_import(db_url, big_csvs[0]) as proc:
        while proc.poll() is None:
            seen.add(_observe(seeded))
    assert proc.returncode == 0
    new = _observe(seeded)
    assert new != old and new[0] == new[1] == BIG_ROWS
    assert seen <= {old, new}
    assert old in seen
