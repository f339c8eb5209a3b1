"""The server killed mid-upload, and PostgreSQL dropping every connection mid-run.

``segflow serve`` and a ``segflow worker`` share one database while uploads
arrive through the API. Afterwards the same promises as for killed workers
hold (memberships equal a full recompute, events replay to them, the fake
list equals the linked segment), and each upload was applied whole or not at
all.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from segflow import datasets
from segflow.activation.fake import FakeDataManager
from segflow.db import Database
from segflow.web.server import free_port
from tests.faults.test_kill import check_consistent, wait_until_sent
from tests.sync_helpers import (
    ACCOUNT,
    LIST_ID,
    csv_bytes,
    customers,
    setup_link,
    spawn_segflow,
)

SPEND = 8  # lifetime_spend's position in demo rows


@pytest.fixture
def fake() -> Iterator[FakeDataManager]:
    with FakeDataManager(latency=0.02) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID)
        yield server


def _spawn(argv: list[str], fake: FakeDataManager, log: Path) -> subprocess.Popen[bytes]:
    return spawn_segflow(argv, fake, log)


def _serve(db_url: str, port: int, fake: FakeDataManager, log: Path) -> subprocess.Popen[bytes]:
    proc = _spawn(["serve", "--port", str(port), "--db", db_url], fake, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    raise AssertionError("serve did not start")


def _upload(url: str, rows: list[tuple[str, ...]], outcome: list[Any]) -> None:
    try:
        response = httpx.post(
            f"{url}/api/datasets/customers/imports",
            files={"file": ("c.csv", csv_bytes(rows), "text/csv")},
            timeout=60,
        )
        outcome.append(response.status_code)
    except httpx.HTTPError as exc:
        outcome.append(type(exc).__name__)


def _spends(db: Database, keys: list[str]) -> list[str]:
    page, _ = datasets.page_records(db, "customers", limit=5000)
    by_key = {item["key"]: item["record"]["lifetime_spend"] for item in page}
    return [by_key[k] for k in keys]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 12])
def test_a_server_killed_during_uploads_applies_each_whole_or_not_at_all(
    db_url: str, db: Database, fake: FakeDataManager, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    rows = customers(2_000, seed=seed)
    setup_link(db, rows)
    log = tmp_path / "processes.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(db_url, port, fake, log)
    workers = [_spawn(["worker", "--interval", "1", "--db", db_url], fake, log) for _ in range(2)]
    unused = list(rows)
    rng.shuffle(unused)
    rounds: list[tuple[list[str], str, list[Any]]] = []
    try:
        for round_ in range(6):
            # Each round changes records no other round touches, to a spend
            # of its own: afterwards all of them or none of them hold it.
            batch, unused = unused[:250], unused[250:]
            spend = f"{1000 + round_}.00"
            changed = [(*r[:SPEND], spend, *r[SPEND + 1 :]) for r in batch]
            outcome: list[Any] = []
            sender = threading.Thread(target=_upload, args=(url, changed, outcome))
            sender.start()
            time.sleep(rng.random() * 0.8)
            server.send_signal(signal.SIGKILL)
            server.wait()
            sender.join(timeout=60)
            rounds.append(([r[0] for r in batch], spend, outcome))
            server = _serve(db_url, port, fake, log)
        # The restarted server takes uploads as before.
        final: list[Any] = []
        untouched = unused[0]
        _upload(url, [(*untouched[:SPEND], "1.00", *untouched[SPEND + 1 :])], final)
        assert final == [201]
    finally:
        for proc in (server, *workers):
            proc.send_signal(signal.SIGTERM)
        for proc in (server, *workers):
            proc.wait(timeout=60)
    for keys, spend, outcome in rounds:
        applied = sum(value == spend for value in _spends(db, keys))
        assert applied in (0, len(keys)), f"a killed import was applied in part: {applied}"
        if outcome == [201]:
            assert applied == len(keys), "an import answered 201 but is not stored"
    output = log.read_text()
    assert "locked" not in output, output[-3000:]
    check_consistent(db, fake)


def _drop_connections(admin: sa.Engine, stop: threading.Event, dropped: list[int]) -> None:
    """Terminate every other session of the database, as a restarting server would."""
    while not stop.is_set():
        with admin.connect() as conn:
            gone = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar()
            conn.commit()
        dropped.append(int(gone or 0))
        stop.wait(0.7)


def _restart_server(command: str, stop: threading.Event, restarts: list[int]) -> None:
    """Restart the PostgreSQL server itself, twice, while the run goes on."""
    for _ in range(2):
        if stop.wait(1.0):
            return
        subprocess.run(command, shell=True, check=True, capture_output=True, timeout=120)
        restarts.append(1)


def _run_through(
    db_url: str,
    db: Database,
    fake: FakeDataManager,
    tmp_path: Path,
    disrupt: Any,
    *,
    until_done: bool = False,
) -> list[Any]:
    """serve and two workers under uploads while ``disrupt`` runs (12 uploads,
    or with ``until_done`` until it ends by itself); the uploads' outcomes.
    Afterwards everything must work again without a restart."""
    rows = customers(1_500, seed=21)
    setup_link(db, rows)
    log = tmp_path / "processes.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(db_url, port, fake, log)
    workers = [_spawn(["worker", "--interval", "1", "--db", db_url], fake, log) for _ in range(2)]
    stop = threading.Event()
    storm = threading.Thread(target=disrupt, args=(stop,))
    outcomes: list[Any] = []
    rng = random.Random(4)
    try:
        storm.start()
        give_up = time.monotonic() + 300
        while len(outcomes) < 12 or (until_done and storm.is_alive()):
            assert time.monotonic() < give_up
            changed = [(*r[:SPEND], f"{rng.choice([0, 50, 900])}.00", *r[SPEND + 1 :])
                       for r in rng.sample(rows, 100)]  # fmt: skip
            _upload(url, changed, outcomes)
            time.sleep(0.2)
        stop.set()
        storm.join()
        # Once the database is steady again, everything works without a restart.
        final: list[Any] = []
        deadline = time.monotonic() + 30
        while final != [201] and time.monotonic() < deadline:
            final.clear()
            time.sleep(0.5)
            _upload(url, [(*rows[0][:SPEND], "2.00", *rows[0][SPEND + 1 :])], final)
        assert final == [201], log.read_text()[-3000:]
        processes = (server, *workers)
        assert all(p.poll() is None for p in processes), log.read_text()[-3000:]
        wait_until_sent(db, timeout=60)
    finally:
        stop.set()
        for proc in (server, *workers):
            proc.send_signal(signal.SIGTERM)
        for proc in (server, *workers):
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    output = log.read_text()
    first = output.find("Traceback")
    assert first < 0, output[max(0, first - 300) : first + 4000]
    # A request whose connection died is answered 503 (send again), never 500.
    assert set(outcomes) <= {201, 503} and 201 in outcomes, outcomes
    check_consistent(db, fake)
    return outcomes


@pytest.mark.slow
def test_postgres_dropping_every_connection_mid_run_loses_nothing(
    db_url: str, db: Database, fake: FakeDataManager, tmp_path: Path
) -> None:
    if not db.is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no server to lose")
    admin = sa.create_engine(db.url, poolclass=sa.pool.NullPool)
    dropped: list[int] = []
    try:
        _run_through(
            db_url, db, fake, tmp_path, lambda stop: _drop_connections(admin, stop, dropped)
        )
    finally:
        admin.dispose()
    assert sum(dropped) > 10, dropped  # connections really were lost, many times


RESTART = os.environ.get("SEGFLOW_TEST_PG_RESTART")


@pytest.mark.slow
@pytest.mark.skipif(
    not RESTART,
    reason="set SEGFLOW_TEST_PG_RESTART to a command that restarts the test server "
    "(e.g. 'pg_ctlcluster 15 main restart'); CI's server is shared, so it is not restarted",
)
def test_postgres_restarted_mid_run_loses_nothing(
    db_url: str, db: Database, fake: FakeDataManager, tmp_path: Path
) -> None:
    if not db.is_postgres:
        pytest.skip("PostgreSQL only: SQLite has no server to restart")
    assert RESTART
    restarts: list[int] = []
    _run_through(
        db_url,
        db,
        fake,
        tmp_path,
        lambda stop: _restart_server(RESTART, stop, restarts),
        until_done=True,
    )
    assert len(restarts) == 2


def test_a_stop_held_by_a_stuck_thread_ends_within_the_deadline(tmp_path: Path) -> None:
    """What bounds ``serve``'s stop: a thread that never returns cannot hold the process."""
    script = (
        "import threading, time\n"
        "from segflow.cli import serve\n"
        "threading.Thread(target=time.sleep, args=(3600,)).start()\n"
        "serve._stop_within(0.5)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "s after the signal; ending now" in done.stderr, done.stderr
    assert "Thread 0x" in done.stderr  # every thread's stack, to see what held the stop
