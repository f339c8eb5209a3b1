"""Sync benchmark: 100,000 members to each platform's local fake (Google, Meta, TikTok).

Each fake runs in its own process (as the platform would), so the client's
work and the server's do not share one interpreter. For each engine and
platform, in a fresh database: import the customers, create a segment
everyone matches, add a destination of that platform as a user does (Meta's
and TikTok's with a token, the audience asked of the fake), link it and time
one sync pass to completion. Printed per pass: members/s, the CPU time
segflow's process and the fake's spent on it (on a machine shared with
other work these move less than the wall time), PostgreSQL's CPU for it
(its backends', when the server runs on this machine), requests, how many
the platform holds afterwards, the share of the pass spent building and
hashing that platform's codes (measured alone on the same records), and the
ratio against the issue's target of 30 s for the whole sync. Then a table
per engine: each platform's pass beside the target and against Google's
pass measured in the same run.

    python bench/sync_bench.py [--rows N] [--postgres URL] [--platform google|meta|tiktok|all]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import DATA, _drop_pg_schema, _pg_schema, ensure_csv
from segflow import datasets, ingest, segments
from segflow.activation import destinations, links, mapping, platforms
from segflow.activation import identifiers as ids
from segflow.activation.meta import audiences
from segflow.activation.sync import sync
from segflow.activation.tiktok import platform as tiktok_platform
from segflow.activation.tiktok.client import TikTokClient
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import upgrade

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
TARGET_S = 30.0
EVERYONE = {"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]}
PLATFORMS = ("google", "meta", "tiktok")
# The fakes' accounts and tokens; the tokens are the fakes' own, not secrets.
META_ACCOUNT = "4455667788"
META_TOKEN = "EAAB-bench-token"
TIKTOK_ADVERTISER = "7100000000000000001"
TIKTOK_TOKEN = "tt-bench-token"
AUDIENCE_NAME = "bench everyone"


@dataclass
class Fake:
    proc: subprocess.Popen[str]
    url: str


@dataclass
class Pass:
    platform: str
    engine: str
    seconds: float
    added: int
    requests: int
    held: int


def _start_fake(module: str, *args: str) -> Fake:
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    # The second line (what the fake holds) is read so the pipe never fills.
    proc.stdout.readline()
    return Fake(proc, line.rsplit(" ", 1)[-1].strip())


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


def _stop_fake(fake: Fake) -> dict[str, Any]:
    cpu = _cpu_of(fake.proc.pid)
    fake.proc.terminate()
    out, _ = fake.proc.communicate(timeout=60)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["cpu"] = cpu
    return result


@dataclass
class Target:
    """One platform's fake and destination, and how many its list or audience holds."""

    fake: tuple[str, ...]
    settings: Callable[[str], dict[str, Any]]
    add: Callable[[Database, Settings], destinations.Destination]
    held: Callable[[destinations.Destination, Settings, dict[str, Any]], int]
    #: Whether ``held`` asks the running fake (else it reads the fake's exit line).
    asks: bool = False


def _add_google(db: Database, settings: Settings) -> destinations.Destination:
    config = {
        "operating_account_id": "1",
        "product_destination_id": "2",
        "terms_accepted": True,
        "ad_user_data": "granted",
        "ad_personalization": "granted",
    }
    return destinations.add_destination(db, "bench", destinations.GOOGLE_ADS, config, NOW)


def _add_meta(db: Database, settings: Settings) -> destinations.Destination:
    config = {
        "ad_account_id": f"act_{META_ACCOUNT}",
        "audience_name": AUDIENCE_NAME,
        "customer_file_source": "USER_PROVIDED_ONLY",
    }
    return destinations.add_destination(
        db,
        "bench",
        destinations.META,
        config,
        NOW,
        {"access_token": META_TOKEN},
        settings.cipher,
        prepare=audiences.preparer(settings),
    )


def _add_tiktok(db: Database, settings: Settings) -> destinations.Destination:
    # A new audience by name: TikTok's is made by the link's first upload.
    config = {"advertiser_id": TIKTOK_ADVERTISER, "audience_name": AUDIENCE_NAME}
    return destinations.add_destination(
        db,
        "bench",
        destinations.TIKTOK,
        config,
        NOW,
        {"access_token": TIKTOK_TOKEN},
        settings.cipher,
        prepare=tiktok_platform.preparer(settings),
    )


def _tiktok_held(
    destination: destinations.Destination, settings: Settings, served: dict[str, Any]
) -> int:
    # The fake's exit line counts only the audiences it was started with, so
    # the one the first upload made is read back as TikTok reports it.
    with TikTokClient(settings.tiktok_endpoint, TIKTOK_TOKEN) as client:
        (found,) = client.get_audiences(TIKTOK_ADVERTISER, [destination.config["audience_id"]])
    return int(found["audience_details"]["cover_num"])


TARGETS = {
    "google": Target(
        ("segflow.activation.fake", "--list", "1:2"),
        lambda url: {"datamanager_endpoint": url},
        _add_google,
        lambda d, s, served: int(served["lists"].get("2", 0)),
    ),
    "meta": Target(
        ("segflow.activation.fake_meta", "--account", META_ACCOUNT, "--token", META_TOKEN),
        lambda url: {"meta_graph_url": url},
        _add_meta,
        lambda d, s, served: int(served["audiences"].get(d.config["audience_id"], 0)),
    ),
    # TikTok's own limits: 10 requests a second per token (the client paces
    # itself to 5) and no audience under 1,000 people, far under 100,000.
    "tiktok": Target(
        (
            "segflow.activation.fake_tiktok",
            "--advertiser",
            TIKTOK_ADVERTISER,
            "--token",
            TIKTOK_TOKEN,
        ),
        lambda url: {"tiktok_endpoint": url},
        _add_tiktok,
        _tiktok_held,
        asks=True,
    ),
}


def _codes_only(db: Database, destination: destinations.Destination, rows: int) -> float:
    """Build and hash every record's codes for this platform, with no writes or sending."""
    dataset = datasets.find_dataset(db, "customers")
    assert dataset is not None
    with db.read() as conn:
        current, _ = mapping.mapping_for(conn, dataset)
    platform = platforms.platform_for(destination.kind)
    encoder = platform.encoder(destination.config, [c.name for c in dataset.columns], current)
    records = datasets.read_records(db, "customers", limit=rows)
    skipped, capped = ids.Skipped(), ids.Capped()
    started = time.perf_counter()
    for record in records:
        encoder.codes(record, str(record.get("id")), skipped, capped)
    return time.perf_counter() - started


def run(url: str, label: str, path: Path, rows: int, name: str) -> Pass:
    target = TARGETS[name]
    db = Database(url)
    upgrade(db)
    with path.open("rb") as stream:
        ingest.import_csv(
            db, stream, ingest.ImportOptions("customers", key="id"), source=str(path), now=NOW
        )
    segments.create_segment(db, name="everyone", dataset="customers", rules_json=EVERYONE, now=NOW)
    fake = _start_fake(*target.fake)
    fake_started = _cpu_of(fake.proc.pid)
    try:
        settings = Settings(
            sync_timeout=60,
            secret_key_file=str(DATA / "sync_bench.key"),
            **target.settings(fake.url),
        )
        destination = target.add(db, settings)
        server_started = _server_cpu(db)
        started, cpu_started = time.perf_counter(), time.process_time()
        links.link(db, "everyone", "bench", NOW)
        report = sync(db, settings, clock=lambda: dt.datetime.now(dt.UTC))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        server = sum(v - server_started.get(pid, 0.0) for pid, v in _server_cpu(db).items())
        # The stored config: TikTok's audience id is learnt by the first upload.
        destination = destinations.get_destination(db, "bench")
        fake_cpu = _cpu_of(fake.proc.pid) - fake_started
        held = target.held(destination, settings, {}) if target.asks else None
    finally:
        served = _stop_fake(fake)
    if held is None:
        held = target.held(destination, settings, served)
    (outcome,) = report.outcomes
    hashing = _codes_only(db, destination, rows)
    (status,) = links.status(db)
    db.dispose()
    assert outcome.error is None and outcome.paused is None, outcome
    print(
        f"{label:<10} {name:<6} {outcome.added:>8,} members in {elapsed:6.2f} s "
        f"= {outcome.added / elapsed:>8,.0f} members/s, segflow's CPU {cpu:5.2f} s, "
        f"{outcome.requests} requests, {outcome.rejected:,} refused "
        f"(fake received {served['requests']}, its CPU {fake_cpu:.2f} s, holds {held:,}"
        + (f"; PostgreSQL's CPU {server:.2f} s" if db.is_postgres else "")
        + "); "
        f"codes alone {hashing:5.2f} s ({hashing / elapsed:.0%} of the pass); "
        f"vs target {TARGET_S:.0f} s: {elapsed / TARGET_S:.2f}; "
        f"synced {status.synced:,}, pending {status.pending_adds:,}",
        flush=True,
    )
    return Pass(name, label, elapsed, outcome.added, outcome.requests, held)


def _table(passes: list[Pass]) -> None:
    google = {p.engine: p.seconds for p in passes if p.platform == "google"}
    print(
        f"\n{'engine':<10} {'platform':<8} {'first sync':>10} {'requests':>8} {'holds':>8} "
        f"{'target':>6} {'/ target':>8} {'':<7} {'/ Google':>8}"
    )
    for p in passes:
        met = "met" if p.seconds < TARGET_S else "NOT MET"
        base = google.get(p.engine)
        versus = f"{p.seconds / base:8.2f}" if base else f"{'-':>8}"
        print(
            f"{p.engine:<10} {p.platform:<8} {p.seconds:>8.2f} s {p.requests:>8} {p.held:>8,} "
            f"{TARGET_S:>4.0f} s {p.seconds / TARGET_S:>8.2f} {met:<7} {versus}",
            flush=True,
        )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("SEGFLOW_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--platform",
        choices=(*PLATFORMS, "all"),
        default="all",
        help="which platform's fake to sync to (default all, Google first)",
    )
    args = parser.parse_args()
    chosen = PLATFORMS if args.platform == "all" else (args.platform,)
    path = ensure_csv(args.rows)
    db_path = DATA / "sync_bench.db"
    passes = []
    for name in chosen:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        passes.append(run(f"sqlite:///{db_path}", "SQLite", path, args.rows, name))
    if args.postgres:
        for name in chosen:
            schema, url = _pg_schema(args.postgres)
            try:
                passes.append(run(url, "PostgreSQL", path, args.rows, name))
            finally:
                _drop_pg_schema(args.postgres, schema)
    _table(passes)


if __name__ == "__main__":
    main()
