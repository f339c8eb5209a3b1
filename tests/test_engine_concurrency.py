"""Ticks under concurrency and kills: no segment processed twice at once, nothing half-done."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from segflow import datasets, demo, engine, ingest, segments
from segflow.activation import links
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database, records
from segflow.db.schema import link_members
from tests.helpers import do_import
from tests.sync_helpers import NOW, csv_bytes, customers, run_sync, setup_link, with_spend
from tests.test_engine import T0, _events, _expected, _replay

RULES = {
    "logic": "AND",
    "conditions": [
        {"field": "state", "operator": "in", "value": ["CA", "TX"]},
        {"field": "lifetime_spend", "operator": "greater_than", "value": 60},
    ],
}


def _load(db: Database, rows: int, seed: int) -> None:
    ingest.import_csv(
        db,
        io.BytesIO(demo.csv_bytes(rows, seed=seed)),
        ingest.ImportOptions("customers"),
        source="demo",
        now=T0,
    )


def _consistent(db: Database) -> None:
    expected = _expected(db, segments.list_segments(db)[0], T0)  # all share RULES
    for seg in segments.list_segments(db):
        members = segments.member_keys(db, seg.id)
        assert members == expected
        assert _replay(_events(db, seg.id)) == members
        assert seg.member_count == len(members)


def test_a_segment_locked_by_another_worker_is_skipped(db: Database, db_url: str) -> None:
    if not db.is_postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer at a time")
    _load(db, 200, seed=1)
    seg = segments.create_segment(db, name="s", dataset="customers", rules_json=RULES, now=T0)
    _load(db, 200, seed=2)
    other = Database(db_url)
    try:
        with other.write() as conn:
            conn.execute(
                sa.text("SELECT id FROM sf_segments WHERE id = :i FOR UPDATE"), {"i": seg.id}
            )
            report = engine.tick(db, T0)
            assert report.skipped == [seg.id] and report.outcomes == []
        report = engine.tick(db, T0)
        assert [o.segment_id for o in report.outcomes] == [seg.id]
    finally:
        other.dispose()
    _consistent(db)


def test_imports_and_ticks_from_many_threads_end_consistent(db: Database, db_url: str) -> None:
    _load(db, 300, seed=1)
    for n in range(3):
        segments.create_segment(db, name=f"s{n}", dataset="customers", rules_json=RULES, now=T0)
    errors: list[BaseException] = []

    def work(kind: str, n: int) -> None:
        local = Database(db_url)
        try:
            for round_ in range(4):
                if kind == "import":
                    _load(local, 300, seed=10 * n + round_)
                else:
                    engine.tick(local, T0, full_minimum=random.choice([0, 50, 10_000]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            local.dispose()

    threads = [
        threading.Thread(target=work, args=(k, n))
        for n, k in enumerate(["import"] * 2 + ["tick"] * 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine.tick(db, T0)
    _consistent(db)


# The process needs about 0.3 s to start; its tick here takes about a second.
@pytest.mark.parametrize("delay", [0.45, 0.7, 1.0])
def test_sigkill_mid_tick_leaves_the_old_state_or_the_new(
    db: Database, db_url: str, delay: float
) -> None:
    _load(db, 30_000, seed=1)
    for n in range(16):
        segments.create_segment(db, name=f"s{n}", dataset="customers", rules_json=RULES, now=T0)
    killed = 0
    for attempt in range(6):
        before = {s.name: segments.member_keys(db, s.id) for s in segments.list_segments(db)}
        _load(db, 30_000, seed=2 + attempt)  # changes most records: the tick has real work
        with subprocess.Popen(
            [sys.executable, "-m", "segflow.cli", "process", "--db", db_url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:
            time.sleep(delay * random.uniform(0.8, 1.2))
            proc.send_signal(signal.SIGKILL)
        new = _expected(db, segments.list_segments(db)[0], T0)
        for seg in segments.list_segments(db):
            members = segments.member_keys(db, seg.id)
            assert members == before[seg.name] or members == new
            assert _replay(_events(db, seg.id)) == members
        if db.is_sqlite:
            with db.read() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.tick(db, T0)
        _consistent(db)
        if proc.returncode == -signal.SIGKILL:
            killed += 1
            break
        delay *= 0.7  # the tick finished first: aim earlier next time
    assert killed, "every tick finished before it could be killed"


def test_a_tick_chosen_to_break_a_deadlock_runs_again(
    db: Database, db_url: str, fake: FakeDataManager
) -> None:
    """PostgreSQL aborts one side of a deadlock on sync rows; if that is the
    tick, it is run again and the import's exits are still recorded."""
    if not db.is_postgres:
        pytest.skip("PostgreSQL's deadlock detection; SQLite has one writer at a time")
    rows = customers(60)
    setup_link(db, rows)
    run_sync(db, Settings(datamanager_endpoint=fake.address, sync_timeout=2))
    leaving = [r for r in rows if float(r[8]) > 100][:2]
    do_import(db, csv_bytes([with_spend(r, 1.0) for r in leaving]), "customers", key="id")
    dataset = datasets.get_dataset(db, "customers")
    table = records.table(dataset.records_table, dataset.columns)
    with db.read() as conn:
        query = sa.select(table.c.rid).where(table.c.key.in_([r[0] for r in leaving]))
        first, last = sorted(int(r) for r in conn.execute(query).scalars())
    other = sa.create_engine(db.url, poolclass=sa.pool.NullPool)
    outcome: list[object] = []

    def tick() -> None:
        try:
            outcome.append(engine.tick(db, NOW))
        except Exception as exc:  # what the test looks for
            outcome.append(exc)

    def lock(conn: sa.Connection, rid: int) -> None:
        lm = link_members
        conn.execute(sa.select(lm.c.rid).where(lm.c.rid == rid).with_for_update()).all()

    with other.connect() as conn:
        # Ours longer than the tick's (1 s): its backend finds the cycle and gives up.
        conn.exec_driver_sql("SET deadlock_timeout = '10s'")
        lock(conn, last)  # the tick takes `first`, then waits here
        worker = threading.Thread(target=tick)
        worker.start()
        deadline = time.monotonic() + 20
        while not conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid()"
        ).scalar():
            assert time.monotonic() < deadline, "the tick never waited for our lock"
            time.sleep(0.05)
        try:
            lock(conn, first)  # a cycle, which PostgreSQL breaks
        except sa.exc.OperationalError:
            pass  # we were the victim this time
        conn.rollback()
    worker.join(timeout=60)
    other.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], engine.TickReport), outcome
    (status,) = links.status(db)
    assert status.pending_removes == 2
