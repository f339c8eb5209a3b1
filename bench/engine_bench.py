"""Engine benchmark: rule evaluation and ticks on SQLite and PostgreSQL, side by side.

On the 1,000,000-row dataset of bench/import_bench.py, measured in one run:

* full evaluation of state = CA AND spend > 100 AND email contains gmail, against
  the seed design's JSON layout (json_extract) and DuckDB on the same data;
* a tick after 0.1 %, 1 % and 30 % of the records changed, against a full
  evaluation plus diff after a change of the same size;
* the tick for the same 10,000 changes on a 100,000-row and the 1M-row dataset;
* 100 segments on one dataset, one tick after a 1 % change.

    python bench/engine_bench.py [--rows N] [--postgres URL] [--skip-duckdb] [--skip-seed]
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import DATA, _drop_pg_schema, _pg_schema, bench_parser, ensure_csv
from segflow import datasets, demo, engine, ingest, segments
from segflow.db import Database
from segflow.db.migrations import upgrade

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
RULE = {
    "logic": "AND",
    "conditions": [
        {"field": "state", "operator": "equals", "value": "CA"},
        {"field": "lifetime_spend", "operator": "greater_than", "value": 100},
        {"field": "email", "operator": "contains", "value": "gmail"},
    ],
}


def _best(fn: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _import(db: Database, data: bytes, name: str, mode: str = "upsert") -> None:
    ingest.import_csv(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(name, key="id", mode=mode),
        source=name,
        now=NOW,
    )


def _change(count: int, total: int, seed: int) -> bytes:
    """``count`` consecutive records from a random offset, with new random values."""
    start = 1 + (seed * 7919) % max(1, total - count)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(demo.HEADER)
    writer.writerows(demo.rows(count, seed=seed + 1000, start_id=start))
    return buffer.getvalue().encode()


def _timed_tick(db: Database, **kw: Any) -> tuple[float, str]:
    started = time.perf_counter()
    report = engine.tick(db, NOW, **kw)
    elapsed = time.perf_counter() - started
    strategies = sorted({o.strategy for o in report.outcomes})
    return elapsed, "/".join(strategies)


def _forced_full(db: Database, name: str) -> float:
    """Make the next tick of a segment a full evaluation plus diff, and time it."""
    segment = segments.get_segment(db, name)
    with db.write() as conn:
        conn.execute(
            sa.text("UPDATE sf_segments SET rules_version = rules_version + 1 WHERE id = :i"),
            {"i": segment.id},
        )
    return _timed_tick(db)[0]


def bench_engine(label: str, url: str, csv_path: Path, rows: int) -> dict[str, Any]:
    db = Database(url)
    upgrade(db)
    out: dict[str, Any] = {}
    print(f"[{label}] loading {rows:,} rows ...", flush=True)
    with csv_path.open("rb") as f:
        ingest.import_csv(
            db, f, ingest.ImportOptions("big", key="id"), source=str(csv_path), now=NOW
        )
    found = datasets.get_dataset(db, "big")

    def full_count() -> int:
        return segments.count_matching(db, "big", RULE, NOW)

    out["matches"] = full_count()
    out["full_eval"] = _best(full_count)
    print(f"[{label}] full evaluation: {out['full_eval']:.3f} s ({out['matches']:,} match)")

    segments.create_segment(db, name="bench", dataset="big", rules_json=RULE, now=NOW)
    # Ticks change state, so each is timed over three fresh changes of the same
    # size; the best of three, as for the evaluations above.
    for share, tag in ((0.001, "0.1%"), (0.01, "1%"), (0.30, "30%")):
        count = int(rows * share)
        autos, fulls, strategies = [], [], set()
        for round_ in range(3):
            seed = int(share * 1e4) + 10 * round_
            _import(db, _change(count, rows, seed=seed), "big")
            elapsed, strategy = _timed_tick(db)
            autos.append(elapsed)
            strategies.add(strategy)
            _import(db, _change(count, rows, seed=seed + 1), "big")
            fulls.append(_forced_full(db, "bench"))
        auto, full = min(autos), min(fulls)
        out[f"tick_{tag}"], out[f"full_{tag}"] = auto, full
        print(
            f"[{label}] {tag} changed ({count:,}): tick {auto:.3f} s ({'/'.join(strategies)}), "
            f"full evaluation + diff {full:.3f} s, ratio {auto / full:.2f}",
            flush=True,
        )

    # The same 10k changes on 100k and on 1M records.
    small_rows = min(100_000, rows)
    _import(db, demo.csv_bytes(small_rows, seed=5), "small")
    segments.create_segment(db, name="small", dataset="small", rules_json=RULE, now=NOW)
    change = min(10_000, small_rows // 10)
    _import(db, _change(change, small_rows, seed=77), "small")
    out["tick_10k_small"] = _timed_tick(db)[0]
    _import(db, _change(change, rows, seed=78), "big")
    out["tick_10k_big"] = _timed_tick(db)[0]
    print(
        f"[{label}] {change:,} changes: tick {out['tick_10k_small']:.3f} s on {small_rows:,} "
        f"records, {out['tick_10k_big']:.3f} s on {rows:,}"
    )

    # 100 segments on one dataset, one tick after a 1% change.
    for n in range(99):
        variant = {
            "logic": "AND",
            "conditions": [
                {"field": "state", "operator": "equals", "value": ["CA", "TX", "NY", "FL"][n % 4]},
                {"field": "lifetime_spend", "operator": "greater_than", "value": n * 3},
            ],
        }
        segments.create_segment(db, name=f"many{n}", dataset="big", rules_json=variant, now=NOW)
    _import(db, _change(rows // 100, rows, seed=99), "big")
    out["tick_100_segments"], strategy = _timed_tick(db, dataset_ids=[found.id])
    print(
        f"[{label}] 100 segments, 1% changed: one tick "
        f"{out['tick_100_segments']:.3f} s ({strategy})"
    )
    db.dispose()
    return out


def bench_seed(csv_path: Path) -> float:
    """The seed design's evaluation: json_extract on one JSON text per row."""
    import json

    from segflow.db.engine import sqlite_module

    path = DATA / "work" / "seed_eval.db"
    if path.exists():
        path.unlink()
    conn = sqlite_module.connect(str(path))
    conn.execute("CREATE TABLE csv_data (id TEXT PRIMARY KEY, data TEXT)")
    with csv_path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        conn.executemany(
            "INSERT INTO csv_data VALUES (?, ?)",
            ((str(uuid.uuid4()), json.dumps(dict(zip(header, r, strict=True)))) for r in reader),
        )
    conn.commit()
    query = (
        "SELECT COUNT(*) FROM csv_data WHERE json_extract(data, '$.state') = 'CA' "
        "AND CAST(json_extract(data, '$.lifetime_spend') AS REAL) > 100 "
        "AND json_extract(data, '$.email') LIKE '%gmail%'"
    )
    elapsed = _best(lambda: conn.execute(query).fetchone(), repeat=3)
    conn.close()
    path.unlink()
    return elapsed


def bench_duckdb(csv_path: Path) -> float:
    import duckdb

    conn = duckdb.connect()
    conn.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [str(csv_path)])
    query = (
        "SELECT COUNT(*) FROM t WHERE lower(state) = 'ca' AND lifetime_spend > 100 "
        "AND lower(email) LIKE '%gmail%'"
    )
    return _best(lambda: conn.execute(query).fetchone())


def main() -> None:
    args = bench_parser(__doc__ or "").parse_args()
    csv_path = ensure_csv(args.rows)
    work = DATA / "work"
    work.mkdir(exist_ok=True)
    db_path = work / "engine.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)

    results = {"sqlite": bench_engine("sqlite", f"sqlite:///{db_path}", csv_path, args.rows)}
    if args.postgres:
        schema, url = _pg_schema(args.postgres)
        try:
            results["postgres"] = bench_engine("postgres", url, csv_path, args.rows)
        finally:
            _drop_pg_schema(args.postgres, schema)
    seed = None if args.skip_seed else bench_seed(csv_path)
    duck = None if args.skip_duckdb else bench_duckdb(csv_path)

    print("\nresults (targets from the segments issue):")
    if seed is not None:
        print(f"  seed layout (json_extract) full evaluation: {seed:.3f} s")
    if duck is not None:
        print(f"  DuckDB full evaluation: {duck:.3f} s")
    for name, r in results.items():
        print(f"  {name}:")
        # The issue sets the full-evaluation targets on SQLite, the embedded
        # default; PostgreSQL's figures are printed beside them for reference.
        scope = "" if name == "sqlite" else ", SQLite's; for reference"
        _check(f"full evaluation {r['full_eval']:.3f} s", r["full_eval"] <= 0.1, f"<= 0.1 s{scope}")
        if seed is not None:
            ratio = seed / r["full_eval"]
            _check(f"{ratio:.1f}x faster than the seed layout", ratio >= 6, f">= 6x{scope}")
        if duck is not None:
            ratio = r["full_eval"] / duck
            _check(f"{ratio:.1f}x DuckDB's time", ratio <= 3, f"<= 3x{scope}")
        for tag, limit in (("0.1%", 0.10), ("1%", 0.50), ("30%", 1.2)):
            ratio = r[f"tick_{tag}"] / r[f"full_{tag}"]
            _check(f"tick after {tag} = {ratio:.2f} of full + diff", ratio <= limit, f"<= {limit}")
        spread = max(r["tick_10k_small"], r["tick_10k_big"]) / min(
            r["tick_10k_small"], r["tick_10k_big"]
        )
        _check(f"10k changes, 100k vs 1M records: {spread:.2f}x apart", spread <= 2, "<= 2x")
        _check(
            f"100 segments, one tick after 1%: {r['tick_100_segments']:.2f} s",
            r["tick_100_segments"] < 2,
            f"< 2 s{scope}",
        )


def _check(label: str, ok: bool, target: str) -> None:
    print(f"    {label} (target {target}): {'met' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
