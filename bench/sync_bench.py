"""Sync benchmark: 100,000 members to the local fake Data Manager API.

The fake runs in its own process (as Google would), so the client's work and
the server's do not share one interpreter. For each engine: import the
customers, create a segment everyone matches, link it to a google_ads
destination and time one sync pass to completion. Printed: members/s, the
CPU time segflow's process and the fake's spent on the pass (on a machine
shared with other work these move less than the wall time), PostgreSQL's
CPU for it (its backends', when the server runs on this machine: a third of
that engine's pass), requests, the share of the pass spent building and
hashing identifiers (measured alone on the same records), and the ratio
against the issue's target of 30 s for the whole sync.

    python bench/sync_bench.py [--rows N] [--postgres URL]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import DATA, _drop_pg_schema, _pg_schema, ensure_csv
from segflow import datasets, ingest, segments
from segflow.activation import destinations, links, mapping
from segflow.activation import identifiers as ids
from segflow.activation.sync import sync
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import upgrade

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
TARGET_S = 30.0
EVERYONE = {"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]}


def _start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "segflow.activation.fake", "--list", "1:2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.rsplit(" ", 1)[-1].strip()


def _cpu_of(pid: int) -> float:
    """CPU seconds a process has used so far (Linux /proc), 0.0 where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu(db: Database) -> dict[int, float]:
    """CPU seconds each PostgreSQL backend serving this database has used so far.

    Known only where the server runs on this machine (Linux /proc): 0.0 otherwise.
    """
    if not db.is_postgres:
        return {}
    with db.read() as conn:
        pids = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).scalars()
        return {pid: _cpu_of(pid) for pid in pids}


def _stop_fake(proc: subprocess.Popen[str]) -> dict[str, Any]:
    cpu = _cpu_of(proc.pid)
    proc.terminate()
    out, _ = proc.communicate(timeout=60)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["cpu"] = cpu
    return result


def _hash_only(db: Database, rows: int) -> float:
    """Build and hash every record's identifiers, with no database writes or sending."""
    dataset = datasets.find_dataset(db, "customers")
    assert dataset is not None
    with db.read() as conn:
        current, _ = mapping.mapping_for(conn, dataset)
    records = datasets.read_records(db, "customers", limit=rows)
    started = time.perf_counter()
    for record in records:
        ids.encode(ids.identifiers_for(record, current))
    return time.perf_counter() - started


def run(url: str, label: str, path: Path, rows: int) -> None:
    db = Database(url)
    upgrade(db)
    with path.open("rb") as stream:
        ingest.import_csv(
            db, stream, ingest.ImportOptions("customers", key="id"), source=str(path), now=NOW
        )
    segments.create_segment(db, name="everyone", dataset="customers", rules_json=EVERYONE, now=NOW)
    fake, address = _start_fake()
    fake_started = _cpu_of(fake.pid)
    try:
        settings = Settings(datamanager_endpoint=address, sync_timeout=60)
        destinations.add_destination(
            db,
            "bench",
            destinations.GOOGLE_ADS,
            {
                "operating_account_id": "1",
                "product_destination_id": "2",
                "terms_accepted": True,
                "ad_user_data": "granted",
                "ad_personalization": "granted",
            },
            NOW,
        )
        server_started = _server_cpu(db)
        started, cpu_started = time.perf_counter(), time.process_time()
        links.link(db, "everyone", "bench", NOW)
        report = sync(db, settings, clock=lambda: dt.datetime.now(dt.UTC))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        server = sum(v - server_started.get(pid, 0.0) for pid, v in _server_cpu(db).items())
    finally:
        served = _stop_fake(fake)
    (outcome,) = report.outcomes
    hashing = _hash_only(db, rows)
    (status,) = links.status(db)
    db.dispose()
    assert outcome.error is None and outcome.paused is None, outcome
    print(
        f"{label:<10} {outcome.added:>8,} members in {elapsed:6.2f} s "
        f"= {outcome.added / elapsed:>8,.0f} members/s, segflow's CPU {cpu:5.2f} s, "
        f"{outcome.requests} requests "
        f"(fake received {served['requests']}, its CPU {served['cpu'] - fake_started:.2f} s, "
        f"list holds {served['lists'].get('2', 0):,}"
        + (f"; PostgreSQL's CPU {server:.2f} s" if db.is_postgres else "")
        + "); "
        f"identifiers alone {hashing:5.2f} s ({hashing / elapsed:.0%} of the pass); "
        f"vs target {TARGET_S:.0f} s: {elapsed / TARGET_S:.2f}; "
        f"synced {status.synced:,}, pending {status.pending_adds:,}",
        flush=True,
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("SEGFLOW_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    path = ensure_csv(args.rows)
    db_path = DATA / "sync_bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    run(f"sqlite:///{db_path}", "SQLite", path, args.rows)
    if args.postgres:
        schema, url = _pg_schema(args.postgres)
        try:
            run(url, "PostgreSQL", path, args.rows)
        finally:
            _drop_pg_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
