"""The incremental engine: scenarios written as data, and properties against a full recompute."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow import datasets, engine, ingest, rules, segments
from segflow.db import Database
from segflow.db.schema import segment_events
from tests.helpers import reference_records

T0 = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)
HEADER = ["id", "state", "spend", "joined"]


def _csv(rows: list[dict[str, str]], header: list[str] = HEADER) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _import(
    db: Database, data: bytes, now: dt.datetime, mode: str = "upsert", confirm_delete: bool = False
) -> None:
    options = ingest.ImportOptions("people", mode=mode, confirm_delete=confirm_delete)
    ingest.import_csv(db, io.BytesIO(data), options, source="t", now=now)


def _events(db: Database, segment_id: int) -> list[tuple[str, str]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(segment_events.c.kind, segment_events.c.record_key)
            .where(segment_events.c.segment_id == segment_id)
            .order_by(segment_events.c.id)
        )
        return [(k, key) for k, key in rows]


def _replay(events: list[tuple[str, str]]) -> set[str]:
    state: set[str] = set()
    for kind, key in events:
        if kind == "enter":
            assert key not in state, f"{key} entered twice"
            state.add(key)
        else:
            assert key in state, f"{key} left without entering"
            state.remove(key)
    return state


def _expected(db: Database, segment: segments.Segment, now: dt.datetime) -> set[str]:
    found = datasets.get_dataset(db, segment.dataset)
    rule = rules.parse(segment.rules, engine.fields_of(found))
    return {
        key
        for key, record in reference_records(db, segment.dataset).items()
        if rules.evaluate(rule, record, now)
    }


CA_BIG = {
    "logic": "AND",
    "conditions": [
        {"field": "state", "operator": "equals", "value": "CA"},
        {"field": "spend", "operator": "greater_than", "value": 100},
    ],
}
RECENT = {"conditions": [{"field": "joined", "operator": "within_last", "value": 10}]}
NO_STATE = {"conditions": [{"field": "state", "operator": "is_empty"}]}

# Each scenario: (step, argument) pairs. "import" takes rows, "replace" rows for a
# replace import, "clock" days to move, "tick" nothing, "expect" {segment: keys}.
SCENARIOS: dict[str, list[tuple[str, Any]]] = {
    "enter, change, leave, delete": [
        ("import", [{"id": "1", "state": "CA", "spend": "150", "joined": "2026-01-10"}]),
        ("expect", {"ca_big": {"1"}, "recent": {"1"}}),
        ("import", [{"id": "2", "state": "ca", "spend": "101", "joined": "2025-01-01"}]),
        ("tick", None),
        ("expect", {"ca_big": {"1", "2"}, "recent": {"1"}}),
        ("import", [{"id": "1", "state": "NY", "spend": "150", "joined": "2026-01-10"}]),
        ("tick", None),
        ("expect", {"ca_big": {"2"}, "recent": {"1"}}),
        ("replace", [{"id": "1", "state": "NY", "spend": "150", "joined": "2026-01-10"}]),
        ("tick", None),
        ("expect", {"ca_big": set(), "recent": {"1"}}),
    ],
    "time passing moves members without any import": [
        (
            "import",
            [
                {"id": "a", "state": "CA", "spend": "1", "joined": "2026-01-14"},
                {"id": "b", "state": "CA", "spend": "1", "joined": "2026-01-06"},
                {"id": "c", "state": "CA", "spend": "1", "joined": "2026-01-20"},
            ],
        ),
        ("expect", {"recent": {"a", "b"}}),
        ("clock", 2),
        ("tick", None),
        ("expect", {"recent": {"a"}}),
        ("clock", 5),
        ("tick", None),
        ("expect", {"recent": {"a", "c"}}),
        ("clock", 30),
        ("tick", None),
        ("expect", {"recent": set()}),
    ],
    "a deleted record leaves even a segment that matches empty cells": [
        (
            "import",
            [
                {"id": "1", "state": "", "spend": "5", "joined": "2026-01-14"},
                {"id": "2", "state": "CA", "spend": "5", "joined": "2026-01-14"},
            ],
        ),
        ("expect", {"no_state": {"1"}}),
        ("replace", [{"id": "2", "state": "CA", "spend": "5", "joined": "2026-01-14"}]),
        ("tick", None),
        ("expect", {"no_state": set()}),
    ],
    "a record that comes back re-enters": [
        ("import", [{"id": "1", "state": "CA", "spend": "500", "joined": "2025-01-01"}]),
        ("replace", [{"id": "2", "state": "TX", "spend": "5", "joined": ""}]),
        ("tick", None),
        ("expect", {"ca_big": set()}),
        ("import", [{"id": "1", "state": "CA", "spend": "500", "joined": ""}]),
        ("tick", None),
        ("expect", {"ca_big": {"1"}}),
    ],
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(db: Database, name: str) -> None:
    now = T0
    steps = SCENARIOS[name]
    first = steps[0]
    _import(db, _csv(first[1]), now)
    made = {
        "ca_big": segments.create_segment(
            db, name="ca_big", dataset="people", rules_json=CA_BIG, now=now
        ),
        "recent": segments.create_segment(
            db, name="recent", dataset="people", rules_json=RECENT, now=now
        ),
        "no_state": segments.create_segment(
            db, name="no_state", dataset="people", rules_json=NO_STATE, now=now
        ),
    }
    for step, arg in steps[1:]:
        if step == "import":
            _import(db, _csv(arg), now)
        elif step == "replace":
            _import(db, _csv(arg), now, mode="replace", confirm_delete=True)
        elif step == "clock":
            now += dt.timedelta(days=arg)
        elif step == "tick":
            engine.tick(db, now)
        elif step == "expect":
            for segment_name, keys in arg.items():
                segment_id = made[segment_name].id
                assert segments.member_keys(db, segment_id) == keys, (segment_name, step)
                assert _replay(_events(db, segment_id)) == keys
                assert segments.get_segment(db, segment_name).member_count == len(keys)


def test_editing_rules_records_only_real_differences(db: Database) -> None:
    rows = [
        {"id": str(i), "state": s, "spend": str(sp), "joined": ""}
        for i, (s, sp) in enumerate([("CA", 150), ("CA", 50), ("NY", 500), ("CA", 250)])
    ]
    _import(db, _csv(rows), T0)
    seg = segments.create_segment(db, name="s", dataset="people", rules_json=CA_BIG, now=T0)
    assert segments.member_keys(db, seg.id) == {"0", "3"}
    wider = {
        "logic": "AND",
        "conditions": [
            {"field": "state", "operator": "equals", "value": "CA"},
            {"field": "spend", "operator": "greater_than", "value": 200},
        ],
    }
    before = len(_events(db, seg.id))
    edited = segments.edit_segment(db, "s", rules_json=wider, now=T0)
    assert edited.member_count == 1
    assert _events(db, seg.id)[before:] == [("exit", "0")]


def test_a_value_that_does_not_fit_a_typed_column_leaves_its_rules_working(
    db: Database,
) -> None:
    # Once such a value widened the column to text, and the rule failed.
    _import(db, _csv([{"id": "1", "state": "CA", "spend": "150", "joined": ""}]), T0)
    segments.create_segment(db, name="s", dataset="people", rules_json=CA_BIG, now=T0)
    _import(db, _csv([{"id": "2", "state": "CA", "spend": "lots", "joined": ""}]), T0)
    report = engine.tick(db, T0)
    [outcome] = report.outcomes
    assert outcome.error is None and outcome.strategy != "error"
    assert segments.member_keys(db, segments.get_segment(db, "s").id) == {"1"}
    assert segments.get_segment(db, "s").error is None


def test_explain_names_the_failing_condition(db: Database) -> None:
    _import(db, _csv([{"id": "7", "state": "CA", "spend": "50", "joined": ""}]), T0)
    segments.create_segment(db, name="s", dataset="people", rules_json=CA_BIG, now=T0)
    result = segments.explain(db, "s", "7", T0)
    assert (result["matches"], result["member"]) == (False, False)
    passed = [(c["field"], c["passed"], c["actual"]) for c in result["rules"]["conditions"]]
    assert passed == [("state", True, "CA"), ("spend", False, "50")]
    with pytest.raises(segments.NotFound, match="no record with key 'nope'"):
        segments.explain(db, "s", "nope", T0)


def test_deleting_a_dataset_deletes_its_segments(db: Database) -> None:
    _import(db, _csv([{"id": "1", "state": "CA", "spend": "150", "joined": ""}]), T0)
    segments.create_segment(db, name="s", dataset="people", rules_json=CA_BIG, now=T0)
    datasets.delete_dataset(db, "people")
    assert segments.list_segments(db) == []


# --------------------------------------------------------------- properties

KEYS = [str(i) for i in range(12)]
STATES = ["CA", "ca", "NY", "TX", ""]
ANCHOR = {"id": "anchor", "state": "CA", "spend": "1.5", "joined": "2026-01-01"}

_row = st.fixed_dictionaries(
    {
        "id": st.sampled_from(KEYS),
        "state": st.sampled_from(STATES),
        "spend": st.sampled_from(["", "0", "50", "100", "100.5", "250"]),
        "joined": st.one_of(
            st.just(""),
            st.dates(dt.date(2025, 12, 1), dt.date(2026, 3, 1)).map(lambda d: d.isoformat()),
        ),
    }
)
_columns = st.sampled_from([HEADER, ["id", "state"], ["id", "spend", "joined"]])

_step = st.one_of(
    st.tuples(st.just("import"), st.lists(_row, max_size=6), _columns),
    st.tuples(st.just("replace"), st.lists(_row, max_size=6), st.just(HEADER)),
    st.tuples(st.just("clock"), st.integers(0, 20), st.just(None)),
    st.tuples(st.just("tick"), st.integers(0, 3), st.just(None)),
    st.tuples(st.just("edit"), st.integers(0, 2), st.just(None)),
)

RULES = [
    CA_BIG,
    RECENT,
    {
        "logic": "OR",
        "conditions": [
            {"field": "spend", "operator": "is_empty"},
            {
                "logic": "AND",
                "not": True,
                "conditions": [
                    {"field": "joined", "operator": "not_within_last", "value": 25},
                    {"field": "state", "operator": "in", "value": ["ny", "tx"]},
                ],
            },
        ],
    },
]


def _dedupe(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return list({r["id"]: r for r in rows}.values())


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, min_size=1, max_size=12), data=st.data())
def test_incremental_membership_equals_a_full_recompute(
    db: Database, steps: list[tuple[str, Any, Any]], data: st.DataObject
) -> None:
    for segment in segments.list_segments(db):
        segments.delete_segment(db, segment.name)
    if datasets.find_dataset(db, "people"):
        datasets.delete_dataset(db, "people")
    now = T0
    _import(db, _csv([ANCHOR]), now)
    made = [
        segments.create_segment(db, name=f"s{i}", dataset="people", rules_json=r, now=now)
        for i, r in enumerate(RULES)
    ]
    for step, arg, extra in steps:
        if step == "import":
            _import(db, _csv(_dedupe(arg), extra), now)
        elif step == "replace":
            _import(
                db,
                _csv([ANCHOR, *_dedupe(arg)], extra),
                now,
                mode="replace",
                confirm_delete=True,
            )
        elif step == "clock":
            now += dt.timedelta(days=arg, hours=data.draw(st.integers(0, 23)))
        elif step == "tick":
            engine.tick(db, now, full_minimum=arg)
        elif step == "edit":
            new_rules = RULES[(arg + 1) % len(RULES)]
            segments.edit_segment(db, made[arg].name, rules_json=new_rules, now=now)
        if step in ("tick", "edit"):
            for seg in segments.list_segments(db):
                if step == "edit" and seg.id != made[arg].id:
                    continue  # an edit processes only the edited segment
                members = segments.member_keys(db, seg.id)
                assert members == _expected(db, seg, now), (seg.name, steps)
                assert _replay(_events(db, seg.id)) == members
                assert seg.member_count == len(members)
