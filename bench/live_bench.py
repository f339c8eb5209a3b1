"""Live-update benchmark: upload to SSE count, and many open streams.

With segflow's server running on SQLite (in this process, on a thread) over
a 100,000-customer dataset with one segment:

1. upload a 100,000-row file that changes every record and time from the end
   of the upload to the SSE ``segment`` event carrying the new count (target
   under 2 s; the seed design polled every 10 s after a 60 s tick);
2. open N event streams (default 500, from a separate client process), import
   a small change, and time until every stream has the new count (target
   under 2 s), with the broadcaster's database reads for that change, against
   the same with one stream.

    python bench/live_bench.py [--rows N] [--clients N]
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import DATA, ensure_csv
from segflow import demo, ingest, segments
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import upgrade
from segflow.web.server import live_server

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
RULE = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 100}]}
TARGET_S = 2.0


def _csv(rows: list[tuple[str, ...]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(demo.HEADER)
    writer.writerows(rows)
    return out.getvalue().encode()


class Watcher:
    """One SSE stream on a thread, noting when each member_count arrives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[int, float] = {}
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with httpx.stream("GET", f"{self.url}/api/stream", timeout=None) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if "member_count" in data:
                        self.seen.setdefault(data["member_count"], time.perf_counter())
                        self.ready.set()

    def wait_for(self, count: int, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while count not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no event with member_count {count}")
            time.sleep(0.001)
        return self.seen[count]


def _upload(url: str, data: bytes) -> tuple[float, float]:
    """(when the request body was fully sent, when the response arrived)."""
    boundary = "segflowbenchboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="u.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    payload = head + data + f"\r\n--{boundary}--\r\n".encode()
    sent = [0.0]

    def body() -> Any:
        view = memoryview(payload)
        for i in range(0, len(payload), 1 << 20):
            yield bytes(view[i : i + (1 << 20)])
        sent[0] = time.perf_counter()

    response = httpx.post(
        f"{url}/api/datasets/customers/imports",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=600,
    )
    assert response.status_code == 201, response.text
    return sent[0], time.perf_counter()


CLIENTS_SCRIPT = r"""
import asyncio, json, sys, time
import httpx

async def one(client, url, target, ready, done):
    async with client.stream("GET", url + "/api/stream") as response:
        ready.append(1)
        async for line in response.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("member_count") == target:
                done.append(time.time())
                return

async def main(url, n, target):
    ready, done = [], []
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(one(client, url, target, ready, done)) for _ in range(n)]
        while len(ready) < n:
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await asyncio.wait(tasks, timeout=60)
    print(json.dumps({"received": len(done), "last": max(done) if done else None}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def fan_out(url: str, server: Any, db: Database, clients: int) -> tuple[float, int, int]:
    """Seconds until all streams saw a change, streams that did, reads for it."""
    broadcaster = server.app.state.segflow.broadcaster
    members = segments.get_segment(db, "big").member_count
    page, _ = segments.list_members(db, "big", limit=5)
    before = [tuple(m["record"][c] or "" for c in demo.HEADER) for m in page]
    target = members - len(before)
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENTS_SCRIPT, url, str(clients), str(target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    while broadcaster.subscriber_count < clients:
        time.sleep(0.01)
    reads_before = broadcaster.reads
    started = time.time()
    leaving = [(*r[:8], "1.00", *r[9:]) for r in before]
    httpx.post(
        f"{url}/api/datasets/customers/imports",
        files={"file": ("c.csv", _csv(leaving), "text/csv")},
        timeout=60,
    )
    result = json.loads(proc.stdout.readline())
    proc.wait()
    reads = broadcaster.reads - reads_before
    # Put them back for the next round.
    httpx.post(
        f"{url}/api/datasets/customers/imports",
        files={"file": ("c.csv", _csv(before), "text/csv")},
        timeout=60,
    )
    assert result["last"] is not None, "no stream saw the change"
    return result["last"] - started, result["received"], reads


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=500)
    args = parser.parse_args()
    path = ensure_csv(args.rows)
    db_path = DATA / "live_bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db = Database(f"sqlite:///{db_path}")
    upgrade(db)
    with path.open("rb") as stream:
        ingest.import_csv(
            db, stream, ingest.ImportOptions("customers", key="id"), source="bench", now=NOW
        )
    segments.create_segment(db, name="big", dataset="customers", rules_json=RULE, now=NOW)
    rows = list(demo.rows(args.rows, seed=42))

    def spend(r: tuple[str, ...], factor: float) -> tuple[str, ...]:
        return (*r[:8], f"{float(r[8]) * factor + 1:.2f}", *r[9:])

    uploads = [
        # Every record changes: the worst case for the upsert.
        ("every row changed", _csv([spend(r, 1.5) for r in rows])),
        # The same file with 1% of the records changed again.
        (
            "1% of rows changed",
            _csv([spend(r, 1.5) if i % 100 else spend(r, 0.5) for i, r in enumerate(rows)]),
        ),
    ]

    with live_server(db, Settings(), poll_interval=1.0) as server:
        watcher = Watcher(server.url)
        watcher.ready.wait(30)
        for label, data in uploads:
            watcher.seen.clear()
            sent, answered = _upload(server.url, data)
            new_count = segments.get_segment(db, "big").member_count
            event_at = watcher.wait_for(new_count)
            print(
                f"{args.rows:,}-row upload, {label}: {event_at - sent:.2f} s from the end of the "
                f"upload to the SSE count ({new_count:,} members; the import request answered "
                f"after {answered - sent:.2f} s); target {TARGET_S:.0f} s: ratio "
                f"{(event_at - sent) / TARGET_S:.2f}; seed design: up to 70 s",
                flush=True,
            )
        for clients in (1, args.clients):
            took, received, reads = fan_out(server.url, server, db, clients)
            print(
                f"{clients:>4} SSE clients: {received}/{clients} had the new count after "
                f"{took:.2f} s (target {TARGET_S:.0f} s), {reads} database reads for the change",
                flush=True,
            )
    db.dispose()


if __name__ == "__main__":
    main()
