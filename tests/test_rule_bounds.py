"""Rule bounds: each is refused with a 400 (a CLI error) naming it, and nothing is
stored; the largest rule they allow runs on both engines; rules the database
cannot run are refused before they are saved."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from segflow import demo, rules, segments
from segflow.cli import main
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import segments as segments_table
from segflow.errors import InvalidInput
from segflow.web.app import create_app
from tests.sync_helpers import NOW, csv_bytes, import_rows

EMAIL = {"field": "email", "operator": "contains", "value": "x"}


def _nest(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"conditions": [EMAIL]}
    for _ in range(levels - 1):
        node = {"conditions": [node]}
    return node


def _deep_path(levels: int) -> str:
    return "rules" + ".conditions[0]" * (levels - 1)


def _in(count: int) -> dict[str, Any]:
    return {"field": "email", "operator": "in", "value": [f"{i}@x.example" for i in range(count)]}


#: (rules, the whole error message) for each bound, one past it.
OVER = {
    "conditions": (
        {"logic": "OR", "conditions": [EMAIL] * 1_000},
        "rules: at most 500 conditions (this rule has 1,000)",
    ),
    "depth": (
        _nest(21),
        f"{_deep_path(21)}: at most 20 levels of nested groups (this rule has 21)",
    ),
    # 340 levels gave a RecursionError (a 500) before the bounds.
    "deep nest": (
        _nest(340),
        f"{_deep_path(21)}: at most 20 levels of nested groups (this rule has 340)",
    ),
    "list": (
        {"conditions": [EMAIL, _in(10_001)]},
        "rules.conditions[1].value: at most 10,000 values in a list (this one has 10,001)",
    ),
    "values": (
        {"conditions": [_in(10_000), _in(10_000), EMAIL]},
        "rules: at most 20,000 values in all (this rule has 20,001)",
    ),
    "text": (
        {"conditions": [EMAIL, dict(EMAIL, value="a" * 60_000)]},
        "rules.conditions[1].value: at most 1,000 characters in a value (this one has 60,000)",
    ),
    "text in a list": (
        {"conditions": [{"field": "email", "operator": "in", "value": ["a", "b" * 1_001]}]},
        "rules.conditions[0].value[1]: at most 1,000 characters in a value (this one has 1,001)",
    ),
}


def _stored(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(segments_table)).scalar_one()
        )


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = create_app(db, Settings(max_upload_bytes=20_000_000), background=False)
    with TestClient(app) as test_client:
        response = test_client.post(
            "/api/datasets/customers/imports",
            files={"file": ("c.csv", csv_bytes(list(demo.rows(50, seed=5))), "text/csv")},
            data={"key": "id"},
        )
        assert response.status_code == 201, response.text
        yield test_client


@pytest.mark.parametrize("bound", list(OVER))
def test_each_bound_is_a_400_naming_it_and_nothing_is_stored(
    client: TestClient, db: Database, bound: str
) -> None:
    rule, message = OVER[bound]
    for path, body in (
        ("/api/segments/preview", {"dataset": "customers", "rules": rule}),
        ("/api/segments", {"name": "too big", "dataset": "customers", "rules": rule}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["message"]) == ("invalid_rules", message)
    assert client.get("/api/segments").json() == []
    assert _stored(db) == 0


def test_an_edit_past_a_bound_is_refused_and_the_old_rules_stay(client: TestClient) -> None:
    created = client.post(
        "/api/segments",
        json={"name": "ok", "dataset": "customers", "rules": {"conditions": [EMAIL]}},
    ).json()
    rule, message = OVER["conditions"]
    response = client.patch(f"/api/segments/{created['id']}", json={"rules": rule})
    assert (response.status_code, response.json()["error"]["message"]) == (400, message)
    assert client.get(f"/api/segments/{created['id']}").json()["rules"] == created["rules"]


def test_the_cli_refuses_each_bound_with_its_message(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "c.csv"
    data.write_bytes(csv_bytes(list(demo.rows(20, seed=5))))
    assert main(["import", str(data), "--dataset", "customers", "--key", "id", "--db", db_url]) == 0
    for bound, (rule, message) in OVER.items():
        capsys.readouterr()
        path = tmp_path / f"{bound}.json"
        path.write_text(json.dumps(rule))
        code = main(
            ["segments", "create", "--dataset", "customers", "--name", "big"]
            + ["--rules", f"@{path}", "--db", db_url]
        )
        err = capsys.readouterr().err
        assert code != 0 and message in err, (bound, err)
    assert main(["segments", "list", "--json", "--db", db_url]) == 0
    assert json.loads(capsys.readouterr().out) == []


def _fields() -> list[rules.Field]:
    return [rules.Field("email", "text", "v1"), rules.Field("spend", "number", "v2")]


def test_each_bound_itself_is_allowed() -> None:
    at_limit = [
        {"logic": "OR", "conditions": [EMAIL] * rules.MAX_CONDITIONS},
        _nest(rules.MAX_DEPTH),
        {"conditions": [_in(rules.MAX_LIST_ITEMS), _in(rules.MAX_LIST_ITEMS - 1)]},
        {"conditions": [dict(EMAIL, value="é" * rules.MAX_TEXT)]},
    ]
    for rule in at_limit:
        rules.parse(rule, _fields())


def test_a_nest_of_any_depth_is_refused_without_recursing() -> None:
    with pytest.raises(rules.RuleError, match="at most 20 levels"):
        rules.parse(_nest(100_000), _fields())


def _largest(values: int) -> dict[str, Any]:
    """The worst shape the bounds allow for SQLite's expression-tree depth:
    20 negated OR groups, each nested as the first child (deepest in SQLite's
    left-deep OR), with 24 negated conditions beside it; and ``values`` bound
    values, almost all in two lists of non-ASCII text, in the innermost group."""
    long_text = "é" * rules.MAX_TEXT
    filler = [
        {"field": "email", "operator": "not_contains", "value": long_text},
        {"field": "state", "operator": "not_in", "value": ["ca", "ny"]},
        {"field": "lifetime_spend", "operator": "between", "value": [1, 2]},
    ]
    node: dict[str, Any] | None = None
    remaining = rules.MAX_CONDITIONS
    for level in range(rules.MAX_DEPTH):
        width = remaining if level == rules.MAX_DEPTH - 1 else 24
        leaves = [filler[i % 3] for i in range(width)]
        remaining -= width
        node = {"logic": "OR", "not": True, "conditions": ([node] if node else []) + leaves}
    assert node is not None and remaining == 0
    innermost = node
    while isinstance(innermost["conditions"][0], dict) and "logic" in innermost["conditions"][0]:
        innermost = innermost["conditions"][0]
    # Two lists in the innermost group: each enclosing group's SQL holds them too.
    del innermost["conditions"][-2:]
    spare = values - rules.measure(node).values
    innermost["conditions"] += [
        {
            "field": "email",
            "operator": "not_in",
            "value": [f"{i}{long_text[:30]}" for i in range(n)],
        }
        for n in (spare // 2, spare - spare // 2)
    ]
    return node


def test_the_largest_rule_the_bounds_allow_runs_on_both_engines(db: Database) -> None:
    """What the bounds promise: whatever passes them, the database can run:
    creating (a full tick), a preview and an explanation."""
    import_rows(db, list(demo.rows(50, seed=5)))
    rule = _largest(rules.MAX_VALUES)
    size = rules.measure(rule)
    assert (size.conditions, size.depth, size.values) == (
        rules.MAX_CONDITIONS,
        rules.MAX_DEPTH,
        rules.MAX_VALUES,
    )
    created = segments.create_segment(
        db, name="largest", dataset="customers", rules_json=rule, now=NOW
    )
    assert created.error is None
    preview = segments.preview(db, "customers", rule, NOW, segment_id=created.id)
    assert preview["count"] == created.member_count
    assert preview["would_enter"] == preview["would_exit"] == 0
    members = segments.member_keys(db, created.id)
    for key in ("1", "2", "3"):
        explained = segments.explain(db, created.id, key, NOW)
        assert explained["matches"] is explained["member"] is (key in members)


def test_rules_the_database_cannot_run_are_refused_before_saving(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run-once check behind the bounds: with them loosened, as before they
    existed, a rule the database (or the SQL compiler) cannot run is an error
    naming the problem, not a saved segment whose create answered 500."""
    monkeypatch.setattr(rules, "MAX_DEPTH", 100_000, raising=False)
    monkeypatch.setattr(rules, "MAX_CONDITIONS", 100_000, raising=False)
    import_rows(db, list(demo.rows(20, seed=5)))
    cases = [(_nest(400), "the rule is nested too deeply to compile")]
    if db.is_sqlite:  # PostgreSQL runs 1,000 OR'd conditions
        wide = {"logic": "OR", "conditions": [dict(EMAIL, value=f"x{i}") for i in range(1_000)]}
        cases.append((wide, "Expression tree is too large (maximum depth 1000)"))
    for rule, problem in cases:
        with pytest.raises(InvalidInput) as caught:
            segments.create_segment(db, name="bad", dataset="customers", rules_json=rule, now=NOW)
        assert str(caught.value) == f"rules: the database cannot run this rule: {problem}"
        assert _stored(db) == 0
    good = segments.create_segment(
        db, name="good", dataset="customers", rules_json={"conditions": [EMAIL]}, now=NOW
    )
    for rule, problem in cases:
        with pytest.raises(InvalidInput, match=re.escape(problem)):
            segments.edit_segment(db, good.id, now=NOW, rules_json=rule)
        assert segments.get_segment(db, good.id).rules == good.rules
