"""Soak run: the whole system under steady load for a while, then a consistency check.

Processes: ``segflow serve``, two ``segflow worker``, the fake Data Manager
API, and a client process holding N Server-Sent Events streams. Every few
seconds this script uploads a file changing 1% of the records through the
API. Printed at the end: imports done, p50/p99 of the import request and of
the tick inside it, p50/p99 upload-to-count latency (from the end of an
upload to the first SSE ``segment`` event after it), memory of every segflow
process over time, errors, and whether memberships equal a full recompute
and the Customer Match list equals its segment.

    python bench/soak.py [--duration S] [--rows N] [--segments N] [--clients N]
                         [--interval S] [--postgres URL]
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import DATA, _drop_pg_schema, _pg_schema
from segflow import datasets, demo, engine, ingest, rules, rulesql, segments
from segflow.activation import destinations, links
from segflow.db import Database, records
from segflow.db.migrations import upgrade
from segflow.db.schema import members
from segflow.web.server import free_port

NOW = dt.datetime.now(dt.UTC)
STATES = ("CA", "TX", "NY", "FL", "WA", "IL", "MA", "OR", "CO", "GA")

CLIENTS_SCRIPT = r"""
import asyncio, json, sys
import httpx

async def one(client, url, counts, i):
    while True:
        try:
            async with client.stream("GET", url + "/api/stream") as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        counts[i] += 1
        except Exception:
            await asyncio.sleep(0.5)

async def main(url, n):
    counts = [0] * n
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(one(client, url, counts, i)) for i in range(n)]
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        import signal
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for t in tasks:
            t.cancel()
    print(json.dumps({"streams": n, "min_events": min(counts), "max_events": max(counts)}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _csv(rows: list[tuple[str, ...]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(demo.HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Counts:
    """One stream of our own, noting when each segment's count arrived."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, int, int]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                with httpx.stream("GET", f"{self.url}/api/stream", timeout=None) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            data = json.loads(line[6:])
                            if "member_count" in data:
                                with self.lock:
                                    self.seen.append(
                                        (time.perf_counter(), data["id"], data["member_count"])
                                    )
            except httpx.HTTPError:
                time.sleep(0.5)

    def arrival(
        self, segment_id: int, count: int, since: float, timeout: float = 30
    ) -> float | None:
        """Seconds from ``since`` until the stream carried this segment's new count."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                hits = [t for t, i, c in self.seen if t >= since and i == segment_id and c == count]
            if hits:
                return min(hits) - since
            time.sleep(0.005)
        return None


def setup(url: str, rows: int, count: int) -> None:
    db = Database(url)
    upgrade(db)
    data = _csv(list(demo.rows(rows, seed=42)))
    ingest.import_csv(
        db, io.BytesIO(data), ingest.ImportOptions("customers", key="id"), source="soak", now=NOW
    )
    rng = random.Random(1)
    for i in range(count):
        rule = {
            "logic": "AND",
            "conditions": [
                {"field": "state", "operator": "equals", "value": rng.choice(STATES)},
                {
                    "field": "lifetime_spend",
                    "operator": "greater_than",
                    "value": rng.choice([10, 50, 100, 200]),
                },
            ],
        }
        segments.create_segment(db, name=f"s{i:02d}", dataset="customers", rules_json=rule, now=NOW)
    segments.create_segment(
        db,
        name="synced",
        dataset="customers",
        rules_json={"conditions": [{"field": "lifetime_spend", "operator": "greater_than",
                                    "value": 150}]},
        now=NOW,
    )  # fmt: skip
    destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        {
            "operating_account_id": "1",
            "product_destination_id": "77",
            "terms_accepted": True,
            "ad_user_data": "granted",
            "ad_personalization": "granted",
        },
        NOW,
    )
    links.link(db, "synced", "ads", NOW)
    db.dispose()


def check(url: str) -> tuple[bool, int]:
    """Memberships equal a full recompute; returns (ok, the synced segment's size)."""
    db = Database(url)
    now = dt.datetime.now(dt.UTC)
    engine.tick(db, now)
    ok = True
    dataset = datasets.get_dataset(db, "customers")
    table = records.table(dataset.records_table, dataset.columns)
    synced = 0
    with db.read() as conn:
        for segment in segments.list_segments(db):
            rule = rules.parse(segment.rules, engine.fields_of(dataset))
            where = engine.live_matches(rulesql.Compiler(db.dialect, table, now), rule, table)
            expected = set(conn.execute(sa.select(table.c.rid).where(where)).scalars())
            stored = set(
                conn.execute(
                    sa.select(members.c.rid).where(members.c.segment_id == segment.id)
                ).scalars()
            )
            ok &= expected == stored
            if segment.name == "synced":
                synced = len(stored)
    db.dispose()
    return ok, synced


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--interval", type=float, default=3)
    parser.add_argument("--postgres", default=None)
    args = parser.parse_args()

    DATA.mkdir(exist_ok=True)
    schema = None
    if args.postgres:
        schema, url = _pg_schema(args.postgres)
    else:
        db_path = DATA / "soak.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{db_path}"
    logs = DATA / "soak-logs"
    logs.mkdir(exist_ok=True)
    fake = subprocess.Popen(
        [sys.executable, "-m", "segflow.activation.fake", "--list", "1:77"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    fake_address = fake.stdout.readline().rsplit(" ", 1)[-1].strip()
    setup(url, args.rows, args.segments)
    env = {
        **os.environ,
        "SEGFLOW_DATAMANAGER_ENDPOINT": fake_address,
        "SEGFLOW_TICK_SECONDS": "5",
        "SEGFLOW_SECRET_KEY_FILE": str(DATA / "soak.key"),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(name: str, argv: list[str]) -> None:
        with (logs / f"{name}.log").open("wb") as err:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "segflow.cli", *argv, "--db", url],
                env=env, stderr=err, stdout=subprocess.DEVNULL,
            )  # fmt: skip

    spawn("serve", ["serve", "--port", str(port)])
    spawn("worker1", ["worker", "--interval", "5"])
    spawn("worker2", ["worker", "--interval", "5"])
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    clients = subprocess.Popen(
        [sys.executable, "-c", CLIENTS_SCRIPT, base, str(args.clients)],
        stdout=subprocess.PIPE,
        text=True,
    )
    watcher = Counts(base)
    time.sleep(2)

    rng = random.Random(7)
    rows = list(demo.rows(args.rows, seed=42))
    request_s: list[float] = []
    tick_s: list[float] = []
    latency_s: list[float] = []
    errors = 0
    memory: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()
    next_sample = started
    imports = 0
    while time.monotonic() - started < args.duration:
        if time.monotonic() >= next_sample:
            memory.append(
                (time.monotonic() - started, {n: _rss_mb(p.pid) for n, p in procs.items()})
            )
            next_sample += max(args.duration / 10, 1)
        changed = []
        for i in rng.sample(range(len(rows)), max(1, len(rows) // 100)):
            r = rows[i]
            rows[i] = (*r[:8], f"{rng.uniform(0, 400):.2f}", *r[9:])
            changed.append(rows[i])
        body = _csv(changed)
        began = time.perf_counter()
        try:
            response = httpx.post(
                f"{base}/api/datasets/customers/imports",
                files={"file": ("soak.csv", body, "text/csv")},
                timeout=120,
            )
        except httpx.HTTPError:
            errors += 1
            continue
        done = time.perf_counter()
        if response.status_code != 201:
            errors += 1
            continue
        imports += 1
        summary = response.json()
        request_s.append(done - began)
        tick_s.append(max(0.0, done - began - float(summary["duration_s"])))
        moved = [o for o in summary["segments"] if o["entered"] != o["exited"]]
        if moved:
            # The end of the upload is when the request body was handed over.
            arrived = watcher.arrival(moved[0]["id"], moved[0]["member_count"], began)
            if arrived is None:
                errors += 1
            else:
                latency_s.append(arrived)
        time.sleep(max(0.0, args.interval - (time.perf_counter() - began)))
    memory.append((time.monotonic() - started, {n: _rss_mb(p.pid) for n, p in procs.items()}))

    # Let the workers finish syncing, then stop everything cleanly.
    db = Database(url)
    settle = time.monotonic() + 120
    while time.monotonic() < settle:
        (status,) = links.status(db)
        if status.pending_adds == status.pending_removes == 0:
            break
        time.sleep(0.5)
    db.dispose()
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    exits = {name: proc.wait(timeout=60) for name, proc in procs.items()}
    clients.send_signal(signal.SIGTERM)
    streams = json.loads(clients.communicate(timeout=60)[0].strip().splitlines()[-1])
    fake.send_signal(signal.SIGTERM)
    served = json.loads(fake.communicate(timeout=60)[0].strip().splitlines()[-1])
    consistent, synced_members = check(url)
    tracebacks = sum((logs / f"{n}.log").read_text().count("Traceback") for n in procs)

    engine_name = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"soak on {engine_name}: {args.duration:.0f} s, {args.rows:,} records, "
        f"{args.segments + 1} segments, {args.clients} SSE clients, 2 workers + serve"
    )
    print(f"  imports (1% of records each): {imports} ({imports / args.duration * 60:.1f}/min)")
    print(f"  import request: p50 {_pct(request_s, 0.5):.2f} s, p99 {_pct(request_s, 0.99):.2f} s")
    print(f"  tick after an import: p50 {_pct(tick_s, 0.5):.3f} s, "
          f"p99 {_pct(tick_s, 0.99):.3f} s")  # fmt: skip
    print(f"  upload to SSE count: p50 {_pct(latency_s, 0.5):.2f} s, "
          f"p99 {_pct(latency_s, 0.99):.2f} s")  # fmt: skip
    for at, rss in memory:
        print(f"  memory at {at:5.0f} s: " + ", ".join(f"{n} {v:.0f} MB" for n, v in rss.items()))
    print(
        f"  errors: {errors} failed requests, {tracebacks} tracebacks in logs, exit codes {exits}"
    )
    print(f"  SSE streams: {streams['streams']}, events each: {streams['min_events']}"
          f"-{streams['max_events']}")  # fmt: skip
    list_size = served["lists"].get("77", 0)
    print(f"  consistency: memberships equal a full recompute: {consistent}; "
          f"Customer Match list {list_size:,} = segment {synced_members:,}: "
          f"{list_size == synced_members}")  # fmt: skip
    if args.postgres and schema:
        _drop_pg_schema(args.postgres, schema)


if __name__ == "__main__":
    main()
