"""Bad input, generated: the importer and the rule compiler never crash and never half-write.

Every run ends in success or one of segflow's own errors (with its one-line
message); a refused import leaves everything stored exactly as it was.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow import datasets, engine, rules, rulesql, segments
from segflow.db import Database
from segflow.errors import InvalidInput, SegflowError
from tests.helpers import NOW, do_import, snapshot

BASE = (
    b"id,email,spend,joined,active\n"
    b"1,a@example.com,10.5,2024-01-02,true\n"
    b"2,b@example.com,20,2023-12-31,false\n"
    b"3,,7,2022-02-28,yes\n"
)
SLOW = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid file with bytes flipped, inserted, deleted or lines duplicated."""
    data = bytearray(BASE)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "dup":
            lines = bytes(data).split(b"\n")
            pick = draw(st.integers(0, len(lines) - 1))
            lines.insert(pick, lines[pick])
            data = bytearray(b"\n".join(lines))
        elif op == "truncate":
            del data[at:]
    return bytes(data)


def _import_checked(db: Database, data: bytes, mode: str) -> None:
    before = snapshot(db, "fuzz")
    try:
        do_import(db, data, "fuzz", key="id", mode=mode)
    except SegflowError as exc:
        message = str(exc)
        assert message and "\n" not in message
        assert snapshot(db, "fuzz") == before, "a refused import changed stored data"


@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_mutated_files_import_or_are_refused_cleanly(db: Database, mode: str) -> None:
    do_import(db, BASE, "fuzz", key="id")

    @SLOW
    @given(data=mutated())
    def check(data: bytes) -> None:
        _import_checked(db, data, mode)

    check()


def test_random_bytes_import_or_are_refused_cleanly(db: Database) -> None:
    do_import(db, BASE, "fuzz", key="id")

    @SLOW
    @given(data=st.binary(max_size=300))
    def check(data: bytes) -> None:
        _import_checked(db, data, "upsert")

    check()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["id", "email", "spend", "joined", "active", "AND", "OR", "between"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["field", "operator", "value", "logic", "conditions", "not", "x"]),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


_CONDITION = st.fixed_dictionaries(
    {
        "field": st.sampled_from(["id", "email", "spend", "joined", "active", "nope"]),
        "operator": st.sampled_from(
            ["equals", "contains", "greater_than", "between", "in", "is_empty", "within_last"]
        ),
        "value": st.one_of(
            st.integers(-5, 50),
            st.text(max_size=10),
            st.lists(st.integers(0, 30), max_size=3),
            st.sampled_from(["2024-01-01", "x'; DROP TABLE sf_datasets;--", "%_%"]),
        ),
    }
)
_TREE = st.recursive(
    _CONDITION,
    lambda children: st.fixed_dictionaries(
        {
            "logic": st.sampled_from(["AND", "OR", "and", "XOR"]),
            "conditions": st.lists(children, max_size=3),
        },
        optional={"not": st.booleans()},
    ),  # fmt: skip
    max_leaves=6,
).map(lambda t: t if "conditions" in t else {"conditions": [t]})


_TYPED = st.one_of(
    st.builds(lambda v: {"field": "spend", "operator": "greater_than", "value": v},
              st.integers(-5, 50) | st.floats(-10, 100)),
    st.builds(lambda v: {"field": "email", "operator": "contains", "value": v},
              st.text(max_size=8)),
    st.builds(lambda v: {"field": "joined", "operator": "within_last", "value": v},
              st.integers(0, 2000)),
    st.builds(lambda v: {"field": "active", "operator": "equals", "value": v}, st.booleans()),
    st.builds(lambda a, b: {"field": "id", "operator": "between", "value": [a, b]},
              st.integers(0, 4), st.integers(0, 4)),
)  # fmt: skip
_VALID_TREE = st.recursive(
    _TYPED,
    lambda children: st.fixed_dictionaries(
        {
            "logic": st.sampled_from(["AND", "OR"]),
            "conditions": st.lists(children, min_size=1, max_size=3),
        },
        optional={"not": st.booleans()},
    ),  # fmt: skip
    max_leaves=6,
).map(lambda t: t if "conditions" in t else {"conditions": [t]})


def test_random_rule_json_gives_precise_errors_and_never_sql_from_input(db: Database) -> None:
    do_import(db, BASE, "fuzz", key="id")
    dataset = datasets.get_dataset(db, "fuzz")
    fields = engine.fields_of(dataset)

    outcomes = {"valid": 0, "refused": 0}

    @settings(SLOW, max_examples=150)
    @given(raw=_JSON | _TREE | _VALID_TREE)
    def check(raw: Any) -> None:
        try:
            parsed = rules.parse(raw, fields)
        except InvalidInput as exc:
            assert str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
            return
        outcomes["valid"] += 1
        # Valid by chance: the count runs, and no input text is in the SQL.
        count = segments.count_matching(db, "fuzz", raw, NOW)
        assert 0 <= count <= 3
        assert rules.evaluate(parsed, {}, NOW) in (True, False)
        compiled = str(rulesql.Compiler(db.dialect, _table(dataset), NOW).compile(parsed).compile())
        # A value that is itself one of the SQL's words (NULL, LIKE, a column)
        # is there whatever the input; anything else would be input in SQL.
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", compiled))
        for text in _strings(raw):
            if text not in {"id", "email", "spend", "joined", "active"} and len(text) > 3:
                assert text in words or text not in compiled

    check()
    # Both sides of the property were exercised.
    assert outcomes["valid"] > 10 and outcomes["refused"] > 10, outcomes


def _table(dataset: datasets.Dataset) -> Any:
    from segflow.db import records

    return records.table(dataset.records_table, dataset.columns)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
