"""Rule validation: the accepted shapes and the precise errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from segflow import rules
from segflow.rules import Field, RuleError

FIELDS = [
    Field("state", "text", "r0"),
    Field("spend", "number", "t1"),
    Field("visits", "integer", "t2"),
    Field("active", "boolean", "t3"),
    Field("joined", "date", "t4"),
    Field("seen", "datetime", "t5"),
]


def test_the_seed_shape_is_accepted_as_is() -> None:
    seed = {"conditions": [{"field": "state", "operator": "equals", "value": "CA"}], "logic": "AND"}
    parsed = rules.parse(seed, FIELDS)
    assert rules.to_json(parsed) == seed


def test_nested_groups_negation_and_canonical_form() -> None:
    raw = {
        "logic": "or",
        "conditions": [
            {"field": "STATE", "operator": "in", "value": ["CA", "NY"]},
            {
                "logic": "AND",
                "not": True,
                "conditions": [
                    {"field": "spend", "operator": "between", "value": [10, 20.5]},
                    {"field": "active", "operator": "equals", "value": "yes"},
                    {"field": "joined", "operator": "within_last", "value": 30},
                    {"field": "seen", "operator": "after", "value": "2024-01-01T10:00:00+02:00"},
                    {"field": "state", "operator": "is_empty"},
                ],
            },
        ],
    }
    assert rules.to_json(rules.parse(raw, FIELDS)) == {
        "logic": "OR",
        "conditions": [
            {"field": "state", "operator": "in", "value": ["CA", "NY"]},
            {
                "logic": "AND",
                "not": True,
                "conditions": [
                    {"field": "spend", "operator": "between", "value": [10, 20.5]},
                    {"field": "active", "operator": "equals", "value": True},
                    {"field": "joined", "operator": "within_last", "value": 30},
                    {"field": "seen", "operator": "after", "value": "2024-01-01T08:00:00Z"},
                    {"field": "state", "operator": "is_empty"},
                ],
            },
        ],
    }


ERRORS: list[tuple[Any, str]] = [
    ([], "rules: a group must be an object with 'logic' and 'conditions'"),
    ({"conditions": []}, "rules.conditions: is empty; a group needs at least one condition"),
    ({"conditions": "x"}, "rules.conditions: must be a list"),
    ({"logic": "XOR", "conditions": [{}]}, "rules.logic: must be AND or OR, got 'XOR'"),
    (
        {"conditions": [{}], "limit": 3},
        "rules: unknown keys ['limit'] (a group has logic, conditions, not)",
    ),
    ({"conditions": [{}], "not": "yes"}, "rules.not: must be true or false, got 'yes'"),
    (
        {"conditions": [{"field": "stat", "operator": "equals", "value": "CA"}]},
        "rules.conditions[0].field: no column 'stat' in this dataset "
        "(columns: state, spend, visits, active, joined, seen)",
    ),
    (
        {"conditions": [{"field": "state", "operator": "greater_than", "value": "CA"}]},
        "rules.conditions[0].operator: 'greater_than' does not apply to text column 'state' "
        "(use one of: equals, not_equals, in, not_in, contains, not_contains, starts_with, "
        "ends_with, is_empty, is_not_empty)",
    ),
    (
        {"conditions": [{"field": "spend", "operator": "equals", "value": "100"}]},
        "rules.conditions[0].value: column 'spend' is a number; give a number",
    ),
    (
        {"conditions": [{"field": "visits", "operator": "equals", "value": "3"}]},
        "rules.conditions[0].value: column 'visits' is an integer; give a number",
    ),
    (
        {"conditions": [{"field": "state", "operator": "equals", "value": 5}]},
        "rules.conditions[0].value: column 'state' is text; give the value as a string",
    ),
    (
        {"conditions": [{"field": "state", "operator": "equals"}]},
        "rules.conditions[0].value: equals needs a value",
    ),
    (
        {"conditions": [{"field": "state", "operator": "is_empty", "value": "x"}]},
        "rules.conditions[0].value: is_empty takes no value",
    ),
    (
        {"conditions": [{"field": "joined", "operator": "before", "value": "2024-02-30"}]},
        "rules.conditions[0].value: '2024-02-30' is not a valid date (e.g. 2024-01-31)",
    ),
    (
        {"conditions": [{"field": "joined", "operator": "within_last", "value": 0}]},
        "rules.conditions[0].value: within_last needs a whole number of days, 1 to 36600",
    ),
    (
        {"conditions": [{"field": "spend", "operator": "between", "value": [5, 1]}]},
        "rules.conditions[0].value: between needs low <= high",
    ),
    (
        {"conditions": [{"field": "spend", "operator": "in", "value": []}]},
        "rules.conditions[0].value: in needs a non-empty list of values",
    ),
    (
        {"conditions": [{"field": "active", "operator": "equals", "value": "maybe"}]},
        "rules.conditions[0].value: column 'active' is boolean; give true or false",
    ),
    (
        {"conditions": [{"logic": "AND", "conditions": [{"field": "x", "op": "y"}]}]},
        "rules.conditions[0].conditions[0]: unknown keys ['op'] (a condition has field, "
        "operator, value)",
    ),
]


@pytest.mark.parametrize(("raw", "message"), ERRORS)
def test_invalid_rules_say_exactly_what_and_where(raw: Any, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        rules.parse(raw, FIELDS)
    assert str(caught.value) == message


def test_within_last_windows_for_dates_and_datetimes() -> None:
    now = dt.datetime(2026, 3, 1, 1, 30, tzinfo=dt.UTC)
    day = rules.parse(
        {"conditions": [{"field": "joined", "operator": "within_last", "value": 1}]}, FIELDS
    )
    condition = rules.conditions(day)[0]
    assert rules.window(condition, now) == (dt.date(2026, 2, 28), dt.date(2026, 3, 1))
    assert rules.evaluate(day, {"joined": dt.date(2026, 2, 28)}, now)
    assert not rules.evaluate(day, {"joined": dt.date(2026, 2, 27)}, now)
    assert not rules.evaluate(day, {"joined": dt.date(2026, 3, 2)}, now)  # the future is not "last"
    negated = rules.parse(
        {"conditions": [{"field": "joined", "operator": "not_within_last", "value": 1}]}, FIELDS
    )
    assert rules.evaluate(negated, {"joined": None}, now)


def test_empty_values_follow_the_documented_semantics() -> None:
    def check(operator: str, value: Any = None) -> bool:
        condition: dict[str, Any] = {"field": "state", "operator": operator}
        if value is not None:
            condition["value"] = value
        return rules.evaluate(
            rules.parse({"conditions": [condition]}, FIELDS), {"state": None}, NOW
        )

    assert [check("equals", "x"), check("not_equals", "x"), check("contains", "x")] == [
        False,
        True,
        False,
    ]
    assert [check("not_contains", "x"), check("in", ["x"]), check("not_in", ["x"])] == [
        True,
        False,
        True,
    ]
    assert [check("is_empty"), check("is_not_empty")] == [True, False]


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_text_comparisons_fold_case_beyond_ascii() -> None:
    rule = rules.parse(
        {"conditions": [{"field": "state", "operator": "equals", "value": "ca"}]}, FIELDS
    )
    assert rules.evaluate(rule, {"state": "CA"}, NOW)
    accent = rules.parse(
        {"conditions": [{"field": "state", "operator": "equals", "value": "é"}]}, FIELDS
    )
    assert rules.evaluate(accent, {"state": "É"}, NOW)
    assert not rules.evaluate(accent, {"state": "E"}, NOW)
    like = rules.parse(
        {"conditions": [{"field": "state", "operator": "contains", "value": "a%b_"}]}, FIELDS
    )
    assert rules.evaluate(like, {"state": "xA%B_y"}, NOW)
    assert not rules.evaluate(like, {"state": "aXbY"}, NOW)
