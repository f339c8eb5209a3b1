"""Test helpers that read stored state straight from the database."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from segflow import coltypes, datasets, ingest
from segflow.config import Settings
from segflow.db import Database, records
from segflow.db.records import ident
from segflow.db.schema import change_sequence

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)

#: Debian's Chromium, for the browser tests (a tool's own browser download fails here).
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)


def do_import(
    db: Database,
    data: bytes | Path,
    dataset: str = "people",
    *,
    settings: Settings | None = None,
    source: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    if isinstance(data, Path):
        raw, source = data.read_bytes(), source or str(data)
    else:
        raw, source = data, source or "test.csv"
    return ingest.import_csv(
        db,
        io.BytesIO(raw),
        ingest.ImportOptions(dataset=dataset, **options),
        source=source,
        now=NOW,
        settings=settings,
    )


def asks_in_row(row: Any, button: str, question: str) -> None:
    """Click a table row's ``button``: the row asks ``question``; Cancel takes it back."""
    row.get_by_role("button", name=button).click()
    assert question in (row.text_content() or "")
    row.get_by_role("button", name="Cancel").click()


def confirm_in_row(row: Any, button: str) -> None:
    """Click a table row's ``button``, then the same button again, which confirms."""
    row.get_by_role("button", name=button).click()
    row.get_by_role("button", name=button).click()


def sequence_value(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(change_sequence.c.value)).scalar_one())


def all_rows(db: Database, dataset: str) -> list[tuple[Any, ...]]:
    """Every stored row, tombstones included, as plain tuples ordered by key."""
    found = datasets.find_dataset(db, dataset)
    if found is None:
        return []
    with db.read() as conn:
        return [
            tuple(r)
            for r in conn.exec_driver_sql(
                f"SELECT * FROM {ident(found.records_table)} ORDER BY key"
            )
        ]


def snapshot(db: Database, dataset: str) -> tuple[Any, ...]:
    """Everything an import could change, for 'nothing was stored' checks."""
    found = datasets.find_dataset(db, dataset)
    meta = None
    if found is not None:
        meta = (found.record_count, found.columns, found.updated_at)
    return (sequence_value(db), meta, all_rows(db, dataset))


def live(db: Database, dataset: str) -> dict[str, dict[str, str | None]]:
    """Live records as {key: {column: raw text}}."""
    found = datasets.get_dataset(db, dataset)
    key = found.key_column
    rows = datasets.read_records(db, dataset, limit=1_000_000)
    return {str(r[key]): r for r in rows}


def seqs(db: Database, dataset: str) -> dict[str, tuple[int, bool]]:
    found = datasets.get_dataset(db, dataset)
    with db.read() as conn:
        return {
            k: (int(s), bool(d))
            for k, s, d in conn.exec_driver_sql(
                f"SELECT key, seq, deleted FROM {ident(found.records_table)}"
            )
        }


def typed_values(db: Database, dataset: str, column: str) -> dict[str, object]:
    """The typed column's values, normalised to Python types on both engines."""
    found = datasets.get_dataset(db, dataset)
    col = found.column(column)
    assert col is not None
    name = records.value_col(col.position, col.type)
    with db.read() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT key, {ident(name)} FROM {ident(found.records_table)} WHERE NOT deleted"
        ).all()
    return {k: _normalise(col.type, v) for k, v in rows}


def _normalise(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == coltypes.BOOLEAN:
        return bool(value)
    if kind == coltypes.DATE and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if kind == coltypes.DATETIME and isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value


def keys_where(db: Database, dataset: str, column: str, op: str, value: object) -> set[str]:
    """Keys whose stored typed value compares true against a bound parameter."""
    found = datasets.get_dataset(db, dataset)
    col = found.column(column)
    assert col is not None and op in ("<", ">", "=")
    name = records.value_col(col.position, col.type)
    if col.type == coltypes.DATE and db.is_sqlite:
        value = str(value)
    table = sa.table(found.records_table, sa.column("key"), sa.column(name), sa.column("deleted"))
    c = table.c[name]
    cond = {"<": c < value, ">": c > value, "=": c == value}[op]
    with db.read() as conn:
        rows = conn.execute(sa.select(table.c.key).where(cond, sa.not_(table.c.deleted)))
        return {r[0] for r in rows}


def reference_records(db: Database, dataset: str) -> dict[str, dict[str, object]]:
    """Live records as the rule evaluator sees them: typed values parsed from raw text."""
    found = datasets.get_dataset(db, dataset)
    types = {c.name: c.type for c in found.columns}
    return {
        key: {name: coltypes.parse_value(types[name], raw) for name, raw in row.items()}
        for key, row in live(db, dataset).items()
    }
