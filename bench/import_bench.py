"""Import benchmark: segflow on SQLite and PostgreSQL against DuckDB, the seed layout and a floor.

Three input files of N rows each (default 1,000,000), made once into bench/data:

* ``export``: what a CRM or shop export looks like: 12 columns, emails
  padded and in mixed case, accented names, phones in several national and
  international formats, blank cells, a few quoted fields with commas;
* ``clean``: the demo's 11-column customer file (no quotes, nothing odd);
* ``quoted``: the export file with every field quoted, as some tools write.

For each file it measures, each in a fresh process so that peak RSS is its
own: segflow's import into a new SQLite file, then the same file again
(re-import), then the file with 1% of its rows changed (made once beside it);
the same into a fresh PostgreSQL schema (when --postgres or
SEGFLOW_TEST_POSTGRES_URL gives a server); DuckDB's read_csv into a table.
On the clean file also the seed design's layout (uuid id + one JSON text per
row, executemany into SQLite) and a bare loader (csv.reader into executemany
with nothing checked, the floor for any Python import on the same SQLite).

Prints wall and CPU seconds (CPU: this process's, all its threads; the
PostgreSQL server's own CPU is not in it), rows/s, peak RSS, and each
import's ratio to DuckDB's time for the same file. With ``--repeat N`` every
measurement is taken N times, round by round, and the ratios are of the
medians: on a shared machine one run varies by a third within an hour.

    python bench/import_bench.py [--rows N] [--postgres URL] [--cases export,clean,quoted]
                                 [--skip-duckdb] [--skip-seed] [--repeat N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
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


# ---------------------------------------------------------------- workers


def work_segflow(db_url: str, path: str) -> dict[str, Any]:
    import datetime as dt

    from segflow import ingest
    from segflow.db import Database
    from segflow.db.migrations import upgrade

    db = Database(db_url)
    upgrade(db)
    # Loaded before the clock starts, as DuckDB's module is: the import, not
    # Python loading pyarrow and phonenumbers (0.6 s), is measured.
    import_csv = ingest.import_csv
    timings, cpu = [], []
    # The file, the same file again, then the file with 1% of its rows changed.
    for source in (path, path, str(changed_csv(Path(path)))):
        started, cpu_started = time.perf_counter(), time.process_time()
        with open(source, "rb") as stream:
            summary = import_csv(
                db,
                stream,
                ingest.ImportOptions(dataset="bench"),
                source=source,
                now=dt.datetime.now(dt.UTC),
            )
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        assert summary["rejected"] == 0, summary["rejects"][:3]
    db.dispose()
    return {
        "first": timings[0],
        "again": timings[1],
        "changed": timings[2],
        "cpu": cpu[0],
        "again_cpu": cpu[1],
        "rss_mb": _peak_rss_mb(),
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

    started, cpu_started = time.perf_counter(), time.process_time()
    conn = duckdb.connect(db_path)
    conn.execute("CREATE TABLE t AS SELECT * FROM read_csv(?)", [path])
    conn.close()
    return {
        "first": time.perf_counter() - started,
        "cpu": time.process_time() - cpu_started,
        "rss_mb": _peak_rss_mb(),
    }


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


def ensure_csv(rows: int, case: str = "clean") -> Path:
    """The input file of ``rows`` rows for ``case`` (see the module's docstring)."""
    from segflow import demo

    DATA.mkdir(exist_ok=True)
    path = DATA / (f"customers_{rows}.csv" if case == "clean" else f"{case}_{rows}.csv")
    if not path.exists():
        print(f"generating {rows:,} rows -> {path} ...", flush=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as out:
            if case == "clean":
                demo.write_csv(out, rows, seed=42)
            else:
                quoting = csv.QUOTE_ALL if case == "quoted" else csv.QUOTE_MINIMAL
                writer = csv.writer(out, lineterminator="\n", quoting=quoting)
                writer.writerow(EXPORT_HEADER)
                writer.writerows(export_rows(rows, seed=42))
        tmp.rename(path)
    return path


def changed_csv(path: Path) -> Path:
    """``path`` with every 100th row's third-last field (a spend) changed: a 1% change."""
    out = path.with_name(path.stem + "_changed.csv")
    if out.exists():
        return out
    quoting = csv.QUOTE_ALL if path.name.startswith("quoted") else csv.QUOTE_MINIMAL
    tmp = out.with_suffix(".tmp")
    with (
        path.open(newline="", encoding="utf-8") as src,
        tmp.open("w", newline="", encoding="utf-8") as dst,
    ):
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator="\n", quoting=quoting)
        writer.writerow(next(reader))
        for n, row in enumerate(reader):
            if n % 100 == 0:
                row[-3] = f"{float(row[-3] or 0) + 1:.2f}"
            writer.writerow(row)
    tmp.rename(out)
    return out


EXPORT_HEADER = (
    "Customer ID",
    "E-mail Address",
    "Phone",
    "First Name",
    "Last Name",
    "Company",
    "City",
    "Country",
    "Postal Code",
    "Lifetime Value",
    "Signup Date",
    "Subscribed",
)
_COUNTRIES = (
    # country, cities, phone formats ({a}: an area code, {b}: four digits)
    ("US", ("New York", "Austin", "San José"), ("+1 {a} 555 {b}", "({a}) 555-{b}", "{a}.555.{b}")),
    ("US", ("Chicago", "Seattle"), ("1-{a}-555-{b}", "{a}-555-{b}", "+1{a}555{b}")),
    ("GB", ("London", "Leeds"), ("+44 20 7946 {b}", "020 7946 {b}", "+44 (0)20 7946 {b}")),
    ("DE", ("München", "Köln"), ("+49 30 1234{b}", "030 1234{b}", "0049 30 1234{b}")),
    ("FR", ("Paris", "Besançon"), ("+33 1 42 68 {b2}", "01 42 68 {b2}")),
)
_AREA_CODES = (212, 213, 312, 415, 512, 617, 702, 206, 305, 404)
_EXPORT_FIRST = "Chloé José Zoë Ana Wei Priya Søren Agnès Łukasz Mary John Linda".split()
_EXPORT_LAST = "García Müller O'Brien Nguyen Dvořák Smith Jones Lefèvre Åberg Kim".split()
_COMPANIES = ("Acme", "Globex", "Umbrella", "Initrode", "")
#: Quoted by the CSV writer; a few rows have one.
_COMMA_COMPANIES = ("Initech, Inc.", "Müller & Söhne, GmbH")


def export_rows(count: int, *, seed: int) -> Any:
    """Rows as a CRM or shop export writes them (see the module's docstring)."""
    import random

    rng = random.Random(seed)
    for n in range(1, count + 1):
        # Mostly the dataset's own country; phonenumbers checks each other
        # country's number one by one (tens of microseconds a number).
        place = rng.random()
        country, cities, phones = _COUNTRIES[
            0 if place < 0.45 else 1 if place < 0.9 else rng.randrange(2, len(_COUNTRIES))
        ]
        first, last = rng.choice(_EXPORT_FIRST), rng.choice(_EXPORT_LAST)
        local = f"{first}.{last}{n}".replace("'", "")
        roll = rng.random()
        email = "" if roll < 0.02 else f"{local}@Example.COM" if roll < 0.2 else f"{local}@mail.com"
        if rng.random() < 0.1:
            email = f"  {email} "
        b = f"{rng.randint(0, 9999):04d}"
        phone = rng.choice(phones).format(a=rng.choice(_AREA_CODES), b=b, b2=f"{b[:2]} {b[2:]}")
        phone = "" if rng.random() < 0.05 else phone
        postal = (
            f"{rng.randint(501, 99950):05d}" if country != "GB" else f"SW1A {rng.randint(1, 9)}AA"
        )
        company = rng.choice(_COMMA_COMPANIES if rng.random() < 0.03 else _COMPANIES)
        value = "" if rng.random() < 0.03 else f"{rng.expovariate(1 / 120):.2f}"
        signup = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        where = (rng.choice(cities), country, postal)
        yield (str(n), email, phone, first, last, company, *where, value, signup, rng.choice("yn"))


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
    parser.add_argument(
        "--cases", default="export,clean,quoted", help="which input files, comma-separated"
    )
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

    cases = [c for c in args.cases.split(",") if c]
    paths = {case: ensure_csv(args.rows, case) for case in cases}
    for path in paths.values():
        changed_csv(path)  # made before any clock starts
    work = DATA / "work"
    work.mkdir(exist_ok=True)
    rounds: dict[str, list[dict[str, Any]]] = {}

    def measure(name: str, kind: str, target: str, path: Path) -> None:
        result = _run_worker(kind, target, path)
        rounds.setdefault(name, []).append(result)
        _report(name, result, args.rows)

    for round_ in range(args.repeat):
        if args.repeat > 1:
            print(f"round {round_ + 1} of {args.repeat}:", flush=True)
        for case, path in paths.items():
            print(f"{case}: {args.rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB ({path})")
            for old in work.iterdir():  # the database files and its scratch folder
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            measure(f"{case} segflow sqlite", "segflow", f"sqlite:///{work / 'segflow.db'}", path)
            if args.postgres:
                schema, url = _pg_schema(args.postgres)
                try:
                    measure(f"{case} segflow postgres", "segflow", url, path)
                finally:
                    _drop_pg_schema(args.postgres, schema)
            if not args.skip_duckdb:
                measure(f"{case} duckdb", "duckdb", str(work / "duck.db"), path)
            if case == "clean":
                if not args.skip_seed:
                    measure("clean seed layout", "seed", str(work / "seed.db"), path)
                measure("clean bare loader", "bare", str(work / "bare.db"), path)
    results = {name: _median(runs) for name, runs in rounds.items()}
    if args.repeat > 1:
        print(f"\nmedians of {args.repeat} rounds (peak RSS: the largest):")
        for name, result in results.items():
            _report(name, result, args.rows)

    print("\nratios (targets from issue 18):")
    for case in cases:
        duck = results.get(f"{case} duckdb")
        for engine in ("sqlite", "postgres"):
            ours = results.get(f"{case} segflow {engine}")
            if ours is None:
                continue
            if duck is not None:
                _ratio(f"{case}: segflow {engine} / duckdb", ours["first"] / duck["first"], 2.0)
            _ratio(
                f"{case}: segflow {engine} re-import / first", ours["again"] / ours["first"], 0.8
            )
            _ratio(
                f"{case}: segflow {engine} 1% changed / first",
                ours["changed"] / ours["first"],
                0.6,
            )
            if case == "quoted" and f"export segflow {engine}" in results:
                plain = results[f"export segflow {engine}"]["first"]
                _ratio(f"quoted: segflow {engine} / export's", ours["first"] / plain, 1.3)
            print(
                f"  {case}: segflow {engine} peak RSS {ours['rss_mb']:,.0f} MB "
                f"(target < 300 MB): {_ok(ours['rss_mb'] < 300)}"
            )
    if "clean seed layout" in results:
        seed = results["clean seed layout"]["first"]
        _ratio(
            "clean: segflow sqlite / seed layout",
            results["clean segflow sqlite"]["first"] / seed,
            0.25,
        )
    if "clean bare loader" in results and "clean segflow sqlite" in results:
        bare = results["clean bare loader"]["first"]
        print(
            "  the bare loader (csv.reader -> executemany, no checks; a floor, no target) takes "
            f"{bare / results['clean segflow sqlite']['first']:.2f} of segflow sqlite's time"
        )


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each time's median over the rounds, and the largest memory."""
    merged: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        merged[key] = max(values) if key.endswith("rss_mb") else statistics.median(values)
    return merged


def _report(name: str, r: dict[str, Any], rows: int) -> None:
    line = f"  {name:<24} import {r['first']:7.2f} s"
    if "cpu" in r:
        line += f" (CPU {r['cpu']:6.2f} s)"
    line += f" {rows / r['first']:>10,.0f} rows/s"
    if "again" in r:
        line += f"  re-import {r['again']:6.2f} s (CPU {r['again_cpu']:6.2f} s)"
        line += f"  1% changed {r['changed']:6.2f} s"
    print(line + f"  peak RSS {r['rss_mb']:,.0f} MB", flush=True)


def _ratio(label: str, value: float, target: float) -> None:
    print(f"  {label}: {value:.2f} (target <= {target:g}): {_ok(value <= target)}")


def _ok(flag: bool) -> str:
    return "met" if flag else "NOT MET"


if __name__ == "__main__":
    main()
