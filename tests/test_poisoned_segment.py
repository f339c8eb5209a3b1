"""One segment the database cannot run holds up nobody else, on both engines.

The poisoned segments are stored with SQL, as a version without the rule
bounds could have saved them: 1,000 OR'd conditions (SQLite: "Expression tree
is too large") and a 400-level nest (a RecursionError in Python). Each is
marked with its error and skipped; every other segment of the tick, in its
own workspace and in another, is evaluated, and the sync after it still runs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from segflow import auth, engine, ingest, rules, segments
from segflow.activation import destinations, links
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import segments as segments_table
from segflow.web.app import create_app
from segflow.worker import Worker
from tests.sync_helpers import HIGH_SPEND, NOW, Clock, csv_bytes, customers, with_spend

WIDE_OR = {
    "logic": "OR",
    "conditions": [
        {"field": "email", "operator": "contains", "value": f"x{i}"} for i in range(1_000)
    ],
}


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"conditions": [{"field": "state", "operator": "is_empty"}]}
    for _ in range(levels - 1):
        node = {"logic": "AND", "conditions": [node]}
    return node


POISONS = {"wide or": WIDE_OR, "deep nest": _deep(400)}


@dataclass
class Two:
    db: Database
    a: Database
    b: Database
    b_file: Path


def _import(db: Database, dataset: str, rows: list[tuple[str, ...]]) -> None:
    """An import without the tick after it: the worker's pass does that."""
    ingest.import_csv(
        db,
        io.BytesIO(csv_bytes(rows)),
        ingest.ImportOptions(dataset=dataset, key="id"),
        source="customers.csv",
        now=NOW,
    )


def _poison(db: Database, dataset: str) -> None:
    """Store the poisoned segments as an old version could have: straight into the table."""
    with db.write() as conn:
        dataset_id = conn.execute(
            sa.text("SELECT id FROM sf_datasets WHERE name = :n AND workspace_id = :w"),
            {"n": dataset, "w": db.workspace_id},
        ).scalar_one()
        for name, rule in POISONS.items():
            conn.execute(
                sa.insert(segments_table).values(
                    workspace_id=db.workspace_id,
                    name=name,
                    dataset_id=dataset_id,
                    rules=rule,
                    rules_version=1,
                    evaluated_version=0,
                    watermark=0,
                    member_count=0,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )


@pytest.fixture
def two(db: Database, tmp_path: Path) -> Two:
    """Workspace A with a good segment and the poisoned ones; B with a linked segment."""
    a = db  # the default workspace: the one local mode's API shows
    b = db.in_workspace(auth.add_workspace(db, "beta", NOW))
    _import(a, "customers", customers(40, seed=3))
    segments.create_segment(a, name="a fine", dataset="customers", rules_json=HIGH_SPEND, now=NOW)
    _poison(a, "customers")
    _import(b, "customers", customers(30, seed=9, start_id=5000))
    segments.create_segment(b, name="b fine", dataset="customers", rules_json=HIGH_SPEND, now=NOW)
    b_file = tmp_path / "beta.jsonl"
    destinations.add_destination(b, "beta-audience", "file", {"path": str(b_file)}, NOW)
    links.link(b, "b fine", "beta-audience", NOW)
    return Two(db, a, b, b_file)


def _sent(path: Path) -> set[str]:
    """Every member the file destination was sent, by its hashed identifiers."""
    if not path.exists():
        return set()
    out: set[str] = set()
    for line in path.read_text().splitlines():
        batch = json.loads(line)
        if batch["operation"] == "ingest":
            out.update(json.dumps(m["user_identifiers"], sort_keys=True) for m in batch["members"])
    return out


def _new_spender(start_id: int, seed: int) -> list[tuple[str, ...]]:
    return [with_spend(row, 5_000.0) for row in customers(1, seed=seed, start_id=start_id)]


def _pass_and_check(two: Two, poisoned: set[str]) -> None:
    worker = Worker(two.db, Settings(), interval=60, clock=Clock())
    worker.run_pass()  # the poisoned segments are marked, not raised
    first = _sent(two.b_file)
    assert first

    # B's new member and A's good segment both still move on the next pass.
    _import(two.b, "customers", _new_spender(9_000, 1))
    _import(two.a, "customers", _new_spender(9_000, 2))
    a_before = segments.get_segment(two.a, "a fine").member_count
    worker.run_pass()
    assert len(_sent(two.b_file)) == len(first) + 1
    assert segments.get_segment(two.a, "a fine").member_count == a_before + 1
    for name in poisoned:
        segment = segments.get_segment(two.a, name)
        assert segment.error, name
        assert segment.member_count == 0


def test_a_poisoned_segment_does_not_stop_another_workspaces_sync(two: Two) -> None:
    _pass_and_check(two, set(POISONS))
    wide = segments.get_segment(two.a, "wide or")
    assert wide.error == (
        "rules cannot be used with this dataset: rules: at most 500 conditions "
        "(this rule has 1,000)"
    )
    assert "at most 20 levels of nested groups" in str(
        segments.get_segment(two.a, "deep nest").error
    )


def test_a_segment_whose_sql_fails_is_marked_and_skipped(
    two: Two, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bounds as loose as before they existed, the rules parse and
    their SQL (or its compilation) fails: the tick isolates that failure."""
    monkeypatch.setattr(rules, "MAX_CONDITIONS", 100_000, raising=False)
    monkeypatch.setattr(rules, "MAX_DEPTH", 100_000, raising=False)
    # PostgreSQL runs 1,000 OR'd conditions; SQLite's expression tree is too deep.
    _pass_and_check(two, set(POISONS) if two.db.is_sqlite else {"deep nest"})
    deep = segments.get_segment(two.a, "deep nest")
    assert deep.error == (
        "the database cannot evaluate these rules: the rule is nested too deeply to compile"
    )
    wide = segments.get_segment(two.a, "wide or")
    if two.a.is_sqlite:
        assert wide.error == (
            "the database cannot evaluate these rules: "
            "Expression tree is too large (maximum depth 1000)"
        )


def test_the_segment_list_shows_a_poisoned_segment_with_its_error(two: Two) -> None:
    """GET /api/segments answered 500 for the whole workspace (the 400-level
    nest cannot be serialised); now each poisoned segment is listed with its error."""
    app = create_app(two.a, Settings(), background=False)
    with TestClient(app) as client:
        response = client.get("/api/segments")
    assert response.status_code == 200, response.text
    listed = {s["name"]: s for s in response.json()}
    assert set(listed) == {"a fine", *POISONS}
    assert listed["deep nest"]["rules"] is None
    assert "at most 20 levels of nested groups" in listed["deep nest"]["error"]
    assert listed["wide or"]["rules"] == WIDE_OR
    assert "at most 500 conditions" in listed["wide or"]["error"]
    assert listed["a fine"]["error"] is None


def test_the_worker_still_syncs_when_the_tick_fails(two: Two, db: Database) -> None:
    """A tick failing whole (here every event write fails in the database) is
    reported by the pass, after the sync has run."""
    with db.write() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER sf_test_broken BEFORE INSERT ON sf_segment_events "
                "BEGIN SELECT RAISE(ABORT, 'events are broken'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION sf_test_broken() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'events are broken'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER sf_test_broken BEFORE INSERT ON sf_segment_events "
                "FOR EACH ROW EXECUTE FUNCTION sf_test_broken()"
            )
    _import(two.a, "customers", _new_spender(9_000, 2))  # A's tick now has events to write
    worker = Worker(db, Settings(), interval=60, clock=Clock())
    with pytest.raises(sa.exc.DBAPIError, match="events are broken"):
        worker.run_pass()
    assert _sent(two.b_file)


def test_the_tick_reports_poisoned_segments_as_errors(two: Two) -> None:
    """engine.tick itself: a poisoned segment never raises out of it."""
    report = engine.tick(two.db, NOW)
    by_name = {o.name: o for o in report.outcomes}
    assert {by_name[n].strategy for n in POISONS} == {engine.ERROR}
    assert by_name["b fine"].error is None
