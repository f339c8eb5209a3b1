"""Import benchmark: segflow on SQLite and PostgreSQL against the seed layout and DuckDB.

Generates N synthetic customer rows (default 1,000,000; 11 columns: int id,
email, phone, first/last name, state, country, zip, float spend, ISO date,
boolean), then measures, each in a fresh process so that peak RSS is its own:

* segflow import into a new SQLite file, then the same file again (re-import);
* the same into a fresh PostgreSQL schema (when --postgres or
  SEGFLOW_TEST_POSTGRES_URL gives a server);
* the seed design's layout: uuid id + one JSON text per row, executemany into SQLite;
* DuckDB's read_csv into a table;
* a bare loader: csv.reader into executemany with nothing checked, the
  floor for any Python import on the same SQLite build.

Prints times, rows/s, peak RSS and the ratios the foundation issue targets.
With ``--repeat N`` every measurement is taken N times, round by round, and
the ratios are of the medians: on a shared machine one run of the seed
layout varied from 19.9 s to 28.2 s within an hour.

    python bench/import_bench.py [--rows N] [--postgres URL] [--skip-duckdb] [--repeat N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

DATA = Path(__file__).parent / "data"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _helper_rss_mb(path: str) -> float:
    """Peak RSS of segflow's column-check helper process, run alone over the file.

    Not ``RUSAGE_CHILDREN``: a child's figure includes the parent's memory
    from before it replaced itself with a new Python.
    """
    from segflow.ingest import checks

    with open(path, "rb") as stream:
        key_index = stream.readline().decode().rstrip("\r\n").split(",").index("id")
        stream.seek(0)
        helper = checks.Helper.start(stream, checks.Job(0, "utf-8", ",", 1 << 20, key_index))
        assert helper is not None, "the helper cannot be started here"
        report = helper.report()
    assert report is not None and report.get("peak_rss_kb"), "the helper did not report"
    return float(report["peak_rss_kb"]) / 1024


# ---------------------------------------------------------------- workers


def work_segflow(db_url: str, path: str) -> dict[str, Any]:
    import datetime as dt

    from segflow import ingest
    from segflow.db import Database
    from segflow.db.migrations import upgrade

    db = Database(db_url)
    upgrade(db)
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        with open(path, "rb") as stream:
            summary = ingest.import_csv(
                db,
                stream,
                ingest.ImportOptions(dataset="bench", key="id"),
                source=path,
                now=dt.datetime.now(dt.UTC),
            )
        timings.append(time.perf_counter() - started)
        assert summary["rejected"] == 0, summary["rejects"][:3]
    db.dispose()
    return {
        "first": timings[0],
        "again": timings[1],
        "rss_mb": _peak_rss_mb(),
        "helper_rss_mb": _helper_rss_mb(path),
    }


def work_seed(db_path: str, path: str) -> dict[str, Any]:
    """The seed design: every row a uuid and a JSON text blob, inserted one by one.

    It runs on the same SQLite build as segflow so that only the layout differs.
    """
    from segflow.db.engine import sqlite_module as sqlite3

    started = time.perf_counter()
    conn = sqlite3.connect(db_path)
    conn.execute(
        "CREATE TABLE csv_data (id TEXT PRIMARY KEY, file_id TEXT, data TEXT, "
        "created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT DEFAULT CURRENT_TIMESTAMP)"
    )
    file_id = str(uuid.uuid4())
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        batch: list[tuple[str, str, str]] = []
        for row in reader:
            batch.append(
                (str(uuid.uuid4()), file_id, json.dumps(dict(zip(header, row, strict=True))))
            )
            if len(batch) >= 10_000:
                conn.executemany("INSERT INTO csv_data (id, file_id, data) VALUES (?, ?, ?)", batch)
                batch.clear()
        conn.executemany("INSERT INTO csv_data (id, file_id, data) VALUES (?, ?, ?)", batch)
    conn.commit()
    conn.close()
    return {"first": time.perf_counter() - started, "rss_mb": _peak_rss_mb()}


def work_duckdb(db_path: str, path: str) -> dict[str, Any]:
    import duckdb

    started = time.perf_counter()
    conn = duckdb.connect(db_path)
    conn.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [path])
    conn.close()
    return {"first": time.perf_counter() - started, "rss_mb": _peak_rss_mb()}


def work_bare(db_path: str, path: str) -> dict[str, Any]:
    """The least any Python loader on this SQLite build does: no checks at all.

    ``csv.reader`` into ``executemany`` on one table laid out like segflow's
    records (raw text per column, the typed columns converted in the INSERT
    with types known in advance), then the key and sequence indexes, in one
    transaction. No type inference, identifier counts, rejects, duplicate
    keys, staging or comparison with stored records: a floor, not a rival.
    """
    from segflow.db.engine import sqlite_module as sqlite3

    started = time.perf_counter()
    conn = sqlite3.connect(db_path, isolation_level=None)
    for pragma in ("page_size=16384", "journal_mode=WAL", "synchronous=NORMAL"):
        conn.execute(f"PRAGMA {pragma}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        ncols = len(next(reader))
        raw = ", ".join(f"r{i} TEXT" for i in range(ncols))
        conn.execute(
            f"CREATE TABLE rec (rid INTEGER PRIMARY KEY, key TEXT NOT NULL, seq INTEGER NOT NULL, "
            f"{raw}, t0 BIGINT, t8 DOUBLE PRECISION, t9 TEXT, t10 BOOLEAN)"
        )
        # ?1 key, ?2 seq, ?3... the raw cells; the typed columns of the bench's
        # file (id, lifetime_spend, signup_date, is_subscriber) reuse them.
        cell = [f"?{i + 3}" for i in range(ncols)]
        insert = (
            f"INSERT INTO rec (key, seq, {', '.join(f'r{i}' for i in range(ncols))}, "
            f"t0, t8, t9, t10) VALUES (?1, ?2, {', '.join(cell)}, CAST({cell[0]} AS INTEGER), "
            f"CAST({cell[8]} AS REAL), {cell[9]}, {cell[10]} = 'true')"
        )
        conn.execute("BEGIN")
        batch: list[tuple[Any, ...]] = []
        for seq, row in enumerate(reader, start=1):
            batch.append((row[0], seq, *row))
            if len(batch) >= 10_000:
                conn.executemany(insert, batch)
                batch.clear()
        conn.executemany(insert, batch)
    conn.execute("CREATE UNIQUE INDEX rec_key ON rec (key)")
    conn.execute("CREATE INDEX rec_seq ON rec (seq)")
    conn.execute("COMMIT")
    conn.close()
    return {"first": time.perf_counter() - started, "rss_mb": _peak_rss_mb()}


WORKERS = {
    "segflow": work_segflow,
    "seed": work_seed,
    "duckdb": work_duckdb,
    "bare": work_bare,
}


def _run_worker(kind: str, target: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--target", target, "--csv", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------- driver


def ensure_csv(rows: int) -> Path:
    from segflow import demo

    DATA.mkdir(exist_ok=True)
    path = DATA / f"customers_{rows}.csv"
    if not path.exists():
        print(f"generating {rows:,} rows -> {path} ...", flush=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as out:
            demo.write_csv(out, rows, seed=42)
        tmp.rename(path)
    return path


def _pg_schema(base: str) -> tuple[str, str]:
    import sqlalchemy as sa

    from segflow.db import Database

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(Database(base).url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    joiner = "&" if "?" in base else "?"
    return schema, f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"


def _drop_pg_schema(base: str, schema: str) -> None:
    import sqlalchemy as sa

    from segflow.db import Database

    engine = sa.create_engine(Database(base).url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options both benchmarks share."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("SEGFLOW_TEST_POSTGRES_URL"))
    parser.add_argument("--skip-duckdb", action="store_true")
    parser.add_argument("--skip-seed", action="store_true")
    return parser


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of every measurement; ratios are of the medians (the machine's noise)",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.target, args.csv)))
        return

    path = ensure_csv(args.rows)
    size_mb = path.stat().st_size / 1e6
    print(f"input: {args.rows:,} rows, {size_mb:,.0f} MB ({path})", flush=True)
    work = DATA / "work"
    work.mkdir(exist_ok=True)
    rounds: dict[str, list[dict[str, Any]]] = {}

    def measure(name: str, kind: str, target: str) -> None:
        result = _run_worker(kind, target, path)
        rounds.setdefault(name, []).append(result)
        _report(name, result, args.rows)

    for round_ in range(args.repeat):
        if args.repeat > 1:
            print(f"round {round_ + 1} of {args.repeat}:", flush=True)
        for old in work.iterdir():
            old.unlink()
        measure("segflow sqlite", "segflow", f"sqlite:///{work / 'segflow.db'}")
        if args.postgres:
            schema, url = _pg_schema(args.postgres)
            try:
                measure("segflow postgres", "segflow", url)
            finally:
                _drop_pg_schema(args.postgres, schema)
        if not args.skip_seed:
            measure("seed layout", "seed", str(work / "seed.db"))
        if not args.skip_duckdb:
            measure("duckdb", "duckdb", str(work / "duck.db"))
        measure("bare loader", "bare", str(work / "bare.db"))
    results = {name: _median(runs) for name, runs in rounds.items()}
    if args.repeat > 1:
        print(f"\nmedians of {args.repeat} rounds (peak RSS: the largest):")
        for name, result in results.items():
            _report(name, result, args.rows)
        if "seed layout" in rounds:
            each = [
                f"{a['first'] / b['first']:.2f}"
                for a, b in zip(rounds["segflow sqlite"], rounds["seed layout"], strict=True)
            ]
            print(f"segflow sqlite / seed layout, round by round: {', '.join(each)}")

    ours = results["segflow sqlite"]
    print("\nratios (targets from the foundation issue):")
    if "seed layout" in results:
        _ratio(
            "segflow sqlite / seed layout", ours["first"] / results["seed layout"]["first"], 0.25
        )
    if "duckdb" in results:
        _ratio("segflow sqlite / duckdb", ours["first"] / results["duckdb"]["first"], 3.0)
    _ratio("segflow sqlite re-import / first import", ours["again"] / ours["first"], 1.0)
    bare = results["bare loader"]["first"]
    print(
        f"  the bare loader (csv.reader -> executemany, no checks; a floor, no target) takes "
        f"{bare / ours['first']:.2f} of segflow's time"
        + (
            f" and {bare / results['seed layout']['first']:.2f} of the seed layout's"
            if "seed layout" in results
            else ""
        )
    )
    if "segflow postgres" in results:
        pg = results["segflow postgres"]
        _ratio("segflow postgres re-import / first import", pg["again"] / pg["first"], 1.0)
    for name in ("segflow sqlite", "segflow postgres"):
        if name in results:
            rss = results[name]["rss_mb"]
            helper = results[name].get("helper_rss_mb", 0.0)
            print(
                f"  {name} peak RSS {rss:,.0f} MB, its check helper {helper:,.0f} MB "
                f"(target < 300 MB each): {_ok(rss < 300 and helper < 300)}"
            )


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each time's median over the rounds, and the largest memory."""
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        merged[key] = max(values) if key.endswith("rss_mb") else statistics.median(values)
    return merged


def _report(name: str, r: dict[str, Any], rows: int) -> None:
    line = f"{name:<18} import {r['first']:7.2f} s  {rows / r['first']:>10,.0f} rows/s"
    if "again" in r:
        line += f"  re-import {r['again']:6.2f} s"
    print(line + f"  peak RSS {r['rss_mb']:,.0f} MB", flush=True)


def _ratio(label: str, value: float, target: float) -> None:
    print(f"  {label}: {value:.2f} (target <= {target:g}): {_ok(value <= target)}")


def _ok(flag: bool) -> str:
    return "met" if flag else "NOT MET"


if __name__ == "__main__":
    main()
