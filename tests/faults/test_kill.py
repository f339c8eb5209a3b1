"""Workers killed at random while imports, ticks and syncs run: nothing lost or doubled.

Two ``segflow worker`` processes share one database (SQLite file or
PostgreSQL schema) while this process imports changes. Now and then one of
them is SIGKILLed and restarted. Afterwards:

* every segment's members equal a full recompute of its rule;
* replaying its enter/exit events gives exactly its members;
* the fake Customer Match list holds exactly the linked segment's members;
* no worker printed a traceback or a locking error;
* SQLite's integrity check is ok.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from segflow import datasets, engine, rules, rulesql, segments
from segflow.activation import links
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database, records
from segflow.db.schema import members, segment_events
from tests.sync_helpers import (
    ACCOUNT,
    LIST_ID,
    NOW,
    Clock,
    converged,
    customers,
    import_rows,
    run_sync,
    setup_link,
    spawn_segflow,
    with_spend,
)

SECOND_RULE = {
    "logic": "OR",
    "conditions": [
        {"field": "state", "operator": "equals", "value": "TX"},
        {"field": "email", "operator": "ends_with", "value": "gmail.com"},
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeDataManager]:
    with FakeDataManager(latency=0.02) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID)
        yield server


def _start(db_url: str, fake: FakeDataManager, log: Path) -> subprocess.Popen[bytes]:
    return spawn_segflow(["worker", "--interval", "1", "--db", db_url], fake, log)


def recomputed(db: Database, segment: segments.Segment, now: dt.datetime) -> set[int]:
    """The rids a full evaluation of the segment's rule selects now."""
    dataset = datasets.get_dataset(db, segment.dataset)
    table = records.table(dataset.records_table, dataset.columns)
    with db.read() as conn:
        rule = rules.parse(segment.rules, engine.fields_of(dataset))
        where = engine.live_matches(rulesql.Compiler(db.dialect, table, now), rule, table)
        return {int(r) for r in conn.execute(sa.select(table.c.rid).where(where)).scalars()}


def stored_members(db: Database, segment_id: int) -> set[int]:
    with db.read() as conn:
        query = sa.select(members.c.rid).where(members.c.segment_id == segment_id)
        return {int(r) for r in conn.execute(query).scalars()}


def replayed(db: Database, segment_id: int) -> set[int]:
    state: set[int] = set()
    with db.read() as conn:
        rows = conn.execute(
            sa.select(segment_events.c.rid, segment_events.c.kind)
            .where(segment_events.c.segment_id == segment_id)
            .order_by(segment_events.c.id)
        ).all()
    for rid, kind in rows:
        if kind == "enter":
            assert rid not in state, f"record {rid} entered twice in a row"
            state.add(int(rid))
        else:
            assert rid in state, f"record {rid} left without having entered"
            state.discard(int(rid))
    return state


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 8])
def test_killed_workers_lose_and_double_nothing(
    db_url: str, db: Database, fake: FakeDataManager, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    rows = customers(1_500, seed=seed)
    setup_link(db, rows)
    segments.create_segment(db, name="tx or gmail", dataset="customers",
                            rules_json=SECOND_RULE, now=NOW)  # fmt: skip
    log = tmp_path / "workers.log"
    workers = [_start(db_url, fake, log) for _ in range(2)]
    kills = 0
    try:
        for round_ in range(10):
            changed = rng.sample(rows, rng.randint(20, 200))
            moved = [with_spend(r, rng.choice([0.0, 50.0, 900.0])) for r in changed]
            # Imports run here while the workers tick and sync.
            import_rows(db, moved, NOW + dt.timedelta(minutes=round_))
            time.sleep(rng.random() * 0.6)
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            kills += 1
            workers[victim] = _start(db_url, fake, log)
        wait_until_sent(db, timeout=120)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
    assert kills == 10
    output = log.read_text()
    assert "Traceback" not in output and "locked" not in output, output[-3000:]

    check_consistent(db, fake)


def wait_until_sent(db: Database, timeout: float) -> None:
    """Give the running processes up to ``timeout`` seconds to send what is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (status,) = links.status(db)
        if status.pending_adds == status.pending_removes == 0:
            return
        time.sleep(0.2)


def check_consistent(db: Database, fake: FakeDataManager) -> None:
    """After a run: memberships equal a full recompute and replay from their
    events; the list is exact (at once when nothing is left to send, else
    after one more pass); SQLite's file is intact."""
    now = NOW + dt.timedelta(days=1)
    engine.tick(db, now)  # whatever the last import left for the next tick
    for segment in segments.list_segments(db):
        current = stored_members(db, segment.id)
        assert current == recomputed(db, segment, now), segment.name
        assert replayed(db, segment.id) == current, segment.name
        assert segment.member_count == len(current), segment.name
    (status,) = links.status(db)
    if status.pending_adds == status.pending_removes == 0:
        # Nothing left to send: the list must already be exact (a silent
        # difference here would never be repaired).
        assert converged(db, fake), status
    # Past any lease a killed process held and any backoff a failure started.
    later = Clock(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    run_sync(db, Settings(datamanager_endpoint=fake.address, sync_lease=2), later)
    assert converged(db, fake), status
    if db.is_sqlite:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def test_a_worker_outlives_its_database_failing_under_it(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    """Tables vanish mid-run (standing in for a lost or restarting server): the worker
    says so without quoting data, keeps trying, and picks up once they are back."""
    import_rows(db, customers(50))
    segments.create_segment(db, name="tx", dataset="customers", rules_json=SECOND_RULE, now=NOW)
    log = tmp_path / "worker.log"
    with log.open("ab") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "segflow.cli", "worker", "--interval", "1", "--db", db_url],
            stderr=err,
        )
    try:
        time.sleep(1.5)
        with db.write() as conn:
            conn.exec_driver_sql("ALTER TABLE sf_segments RENAME TO sf_segments_away")
        deadline = time.monotonic() + 20
        while "pass failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert worker.poll() is None, log.read_text()
        with db.write() as conn:
            conn.exec_driver_sql("ALTER TABLE sf_segments_away RENAME TO sf_segments")
        time.sleep(2.5)
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    output = log.read_text()
    assert "pass failed (" in output and "Traceback" not in output
    assert "SELECT" not in output  # no SQL, so no bound values, in the log
