"""Segment rules: the model, validation, the SQL compiler and the reference evaluator.

A rule is a tree of groups ``{"logic": "AND"|"OR", "not": bool, "conditions": [...]}``
whose leaves are conditions ``{"field", "operator", "value"}``. The compiler
turns a validated tree into one SQLAlchemy boolean expression with bound
parameters; :func:`evaluate` computes the same answer in Python and is the
reference the SQL is tested against.

Semantics, identical on SQLite, PostgreSQL and the evaluator:

* Every condition is two-valued: empty cells never make a condition unknown.
  Positive operators (``equals``, ``in``, ``contains``, comparisons, ``between``,
  ``before``/``after``, ``within_last``) are false on an empty cell; their
  negations (``not_equals``, ``not_in``, ``not_contains``, ``not_within_last``)
  are true on it. ``is_empty`` is true for an empty cell (for text, also one of
  only spaces).
* Text comparisons (``equals``, ``in``, ``contains``, ``starts_with``,
  ``ends_with`` and their negations) ignore case in every script: both sides
  are lower-cased by Unicode's simple lower-case mapping, one character to one
  character, the same whatever the locale (``segflow.db.engine.unicode_lower``:
  ``É`` equals ``é``, ``ẞ`` equals ``ß`` but not ``ss``, ``İ`` equals ``i``,
  ``Σ``, ``σ`` are equal and ``ς`` is not; ``Ǆ``, ``ǅ``, ``ǆ`` are equal).
  Nothing else is folded: accents, ``ß``/``ss`` and compatibility forms count.
  ``contains``/``starts_with``/``ends_with`` treat ``%`` and ``_`` literally.
* ``within_last N`` means from N days before *now* up to *now*, inclusive; for a
  date column, from the date N days before today (UTC) up to today. *now* is
  passed in by the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segflow import coltypes
from segflow.db.engine import unicode_lower
from segflow.errors import InvalidInput

AND, OR = "AND", "OR"

TEXT_OPS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_empty",
    "is_not_empty",
)
ORDER_OPS = (
    "greater_than",
    "greater_or_equal",
    "less_than",
    "less_or_equal",
    "between",
)
NUMBER_OPS = ("equals", "not_equals", "in", "not_in", *ORDER_OPS, "is_empty", "is_not_empty")
BOOLEAN_OPS = ("equals", "not_equals", "is_empty", "is_not_empty")
DATE_OPS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    *ORDER_OPS,
    "before",
    "after",
    "within_last",
    "not_within_last",
    "is_empty",
    "is_not_empty",
)
OPERATORS: dict[str, tuple[str, ...]] = {
    coltypes.TEXT: TEXT_OPS,
    coltypes.INTEGER: NUMBER_OPS,
    coltypes.NUMBER: NUMBER_OPS,
    coltypes.BOOLEAN: BOOLEAN_OPS,
    coltypes.DATE: DATE_OPS,
    coltypes.DATETIME: DATE_OPS,
}
NEGATIVE = {"not_equals", "not_in", "not_contains", "not_within_last"}
NO_VALUE = {"is_empty", "is_not_empty"}
TIME_RELATIVE = {"within_last", "not_within_last"}
MAX_DAYS = 36_600

# Bounds on one rule, checked before anything else is parsed. Each is far past
# what a person builds by hand, and together they keep every statement a rule
# compiles to runnable on both engines: SQLite refuses an expression tree
# deeper than 1,000 (an OR of N conditions is N deep, and each nested group
# adds its own), more than 32,766 bound values in one statement, and a LIKE
# pattern over 50,000 bytes (a value of 1,000 characters escapes to at most
# 2,002, times 4 bytes in UTF-8). ``test_rule_bounds`` runs the largest rule
# they allow on both engines.
#: Conditions in a whole rule, however they are grouped.
MAX_CONDITIONS = 500
#: Levels of groups, the outermost one included.
MAX_DEPTH = 20
#: Values in one ``in`` / ``not_in`` list.
MAX_LIST_ITEMS = 10_000
#: Values in a whole rule: every one is a bound parameter of the same statement.
MAX_VALUES = 20_000
#: Characters in one text value.
MAX_TEXT = 1_000


class RuleError(InvalidInput):
    """A rule tree that cannot be used, with the path to the offending part."""

    code = "invalid_rules"

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class Field:
    """What the compiler needs to know about one dataset column."""

    name: str
    type: str
    column: str  # the SQL column holding the comparable value


@dataclass(frozen=True)
class Condition:
    field: Field
    operator: str
    value: Any


@dataclass(frozen=True)
class Group:
    logic: str
    conditions: tuple[Node, ...]
    negate: bool = False


Node = Condition | Group


# ------------------------------------------------------------------ validation


def parse(raw: Any, fields: Sequence[Field]) -> Group:
    """Validate a rule tree (the seed's flat shape included) against a dataset's fields."""
    check_size(measure(raw))
    by_name = {f.name.casefold(): f for f in fields}
    names = ", ".join(f.name for f in fields)
    return _parse_group(raw, "rules", by_name, names)


@dataclass(frozen=True)
class Size:
    """How big a raw rule tree is, measured without recursion."""

    conditions: int
    values: int
    depth: int
    #: The path of the first group nested deeper than ``MAX_DEPTH``, if any.
    too_deep: str | None
    #: The path and length of the first list longer than ``MAX_LIST_ITEMS``, if any.
    too_long: tuple[str, int] | None = None


def measure(raw: Any) -> Size:
    """Count a raw tree's conditions, values and levels with an explicit stack.

    It runs before the recursive parser, so a tree of any depth (a stored one
    from before the bounds, say) is refused with a RuleError, never a
    RecursionError, and the parser never recurses past ``MAX_DEPTH``.
    """
    count = values = depth = 0
    too_deep: str | None = None
    too_long: tuple[str, int] | None = None
    stack: list[tuple[Any, str, int]] = [(raw, "rules", 1)]
    while stack:
        node, path, level = stack.pop()
        if not isinstance(node, dict) or not isinstance(node.get("conditions"), list):
            continue  # the parser says what is wrong with it
        depth = max(depth, level)
        if level > MAX_DEPTH and too_deep is None:
            too_deep = path
        groups = []
        for index, item in enumerate(node["conditions"]):
            if isinstance(item, dict) and "conditions" in item:
                groups.append((item, f"{path}.conditions[{index}]", level + 1))
            else:
                count += 1
                value = item.get("value") if isinstance(item, dict) else None
                values += len(value) if isinstance(value, list) else 1
                if isinstance(value, list) and len(value) > MAX_LIST_ITEMS and too_long is None:
                    too_long = (f"{path}.conditions[{index}].value", len(value))
        stack.extend(reversed(groups))  # visited in order, so "first" means first
    return Size(count, values, depth, too_deep, too_long)


def check_size(size: Size) -> None:
    """Refuse a tree past any of the bounds, naming the bound and where."""
    if size.too_deep is not None:
        raise RuleError(
            size.too_deep,
            f"at most {MAX_DEPTH} levels of nested groups (this rule has {size.depth:,})",
        )
    if size.conditions > MAX_CONDITIONS:
        raise RuleError(
            "rules", f"at most {MAX_CONDITIONS:,} conditions (this rule has {size.conditions:,})"
        )
    if size.too_long is not None:
        path, length = size.too_long
        raise RuleError(
            path, f"at most {MAX_LIST_ITEMS:,} values in a list (this one has {length:,})"
        )
    if size.values > MAX_VALUES:
        raise RuleError(
            "rules", f"at most {MAX_VALUES:,} values in all (this rule has {size.values:,})"
        )


def _a(kind: str) -> str:
    """``an integer``, ``a number``: a type with its article."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _shown(value: Any) -> str:
    """A value for an error message, cut short: a message never echoes a megabyte."""
    if not isinstance(value, str | int | float | None):
        return f"a {type(value).__name__}"  # a nested list's repr could recurse too deep
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _known_keys(raw: dict[str, Any], allowed: tuple[str, ...], what: str, path: str) -> None:
    unknown = set(raw) - set(allowed)
    if unknown:
        keys = _cut(repr(sorted(unknown)))  # JSON keys are strings: a safe repr
        raise RuleError(path, f"unknown keys {keys} ({what} has {', '.join(allowed)})")


def _parse_group(raw: Any, path: str, fields: Mapping[str, Field], names: str) -> Group:
    if not isinstance(raw, dict):
        raise RuleError(path, "a group must be an object with 'logic' and 'conditions'")
    _known_keys(raw, ("logic", "conditions", "not"), "a group", path)
    logic = raw.get("logic", AND)
    if not isinstance(logic, str) or logic.upper() not in (AND, OR):
        raise RuleError(f"{path}.logic", f"must be AND or OR, got {_shown(logic)}")
    negate = raw.get("not", False)
    if not isinstance(negate, bool):
        raise RuleError(f"{path}.not", f"must be true or false, got {_shown(negate)}")
    items = raw.get("conditions")
    if not isinstance(items, list):
        raise RuleError(f"{path}.conditions", "must be a list")
    if not items:
        raise RuleError(f"{path}.conditions", "is empty; a group needs at least one condition")
    nodes: list[Node] = []
    for index, item in enumerate(items):
        where = f"{path}.conditions[{index}]"
        if isinstance(item, dict) and "conditions" in item:
            nodes.append(_parse_group(item, where, fields, names))
        else:
            nodes.append(_parse_condition(item, where, fields, names))
    return Group(logic.upper(), tuple(nodes), negate)


def _parse_condition(raw: Any, path: str, fields: Mapping[str, Field], names: str) -> Condition:
    if not isinstance(raw, dict):
        raise RuleError(path, "a condition must be an object with field, operator and value")
    _known_keys(raw, ("field", "operator", "value"), "a condition", path)
    name = raw.get("field")
    if not isinstance(name, str):
        raise RuleError(f"{path}.field", "must be a column name")
    field = fields.get(name.casefold())
    if field is None:
        raise RuleError(
            f"{path}.field", f"no column {_shown(name)} in this dataset (columns: {names})"
        )
    operator = raw.get("operator")
    allowed = OPERATORS[field.type]
    if operator not in allowed:
        raise RuleError(
            f"{path}.operator",
            f"{_shown(operator)} does not apply to {field.type} column {field.name!r} "
            f"(use one of: {', '.join(allowed)})",
        )
    value = _parse_value(field, operator, raw.get("value"), "value" in raw, f"{path}.value")
    return Condition(field, operator, value)


def _parse_value(field: Field, operator: str, value: Any, present: bool, path: str) -> Any:
    if operator in NO_VALUE:
        if present and value is not None:
            raise RuleError(path, f"{operator} takes no value")
        return None
    if not present or value is None:
        raise RuleError(path, f"{operator} needs a value")
    if operator in TIME_RELATIVE:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DAYS:
            raise RuleError(path, f"{operator} needs a whole number of days, 1 to {MAX_DAYS}")
        return value
    if operator in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise RuleError(path, f"{operator} needs a non-empty list of values")
        if len(value) > MAX_LIST_ITEMS:
            raise RuleError(
                path, f"at most {MAX_LIST_ITEMS:,} values in a list (this one has {len(value):,})"
            )
        return tuple(_scalar(field, v, f"{path}[{i}]") for i, v in enumerate(value))
    if operator == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(path, "between needs a list of two values [low, high]")
        low, high = (_scalar(field, v, f"{path}[{i}]") for i, v in enumerate(value))
        if low > high:
            raise RuleError(path, "between needs low <= high")
        return (low, high)
    return _scalar(field, value, path)


def _scalar(field: Field, value: Any, path: str) -> Any:
    kind = field.type
    if kind == coltypes.TEXT:
        if not isinstance(value, str):
            raise RuleError(path, f"column {field.name!r} is text; give the value as a string")
        if "\x00" in value:
            raise RuleError(path, "contains a NUL character, which no stored value can")
        if len(value) > MAX_TEXT:
            raise RuleError(
                path, f"at most {MAX_TEXT:,} characters in a value (this one has {len(value):,})"
            )
        return value
    if kind in (coltypes.INTEGER, coltypes.NUMBER):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RuleError(path, f"column {field.name!r} is {_a(kind)}; give a number")
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            raise RuleError(path, "the number must be finite")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise RuleError(path, "the number is out of range (at most 19 digits)")
        return value
    if kind == coltypes.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in coltypes.TRUE_WORDS + coltypes.FALSE_WORDS:
            return value.lower() in coltypes.TRUE_WORDS
        raise RuleError(path, f"column {field.name!r} is boolean; give true or false")
    if not isinstance(value, str):
        raise RuleError(path, f"column {field.name!r} is {_a(kind)}; give an ISO date string")
    try:
        if kind == coltypes.DATE:
            return dt.date.fromisoformat(value)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        example = "2024-01-31" if kind == coltypes.DATE else "2024-01-31T09:30:00Z"
        raise RuleError(path, f"{_shown(value)} is not a valid {kind} (e.g. {example})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def to_json(node: Node) -> dict[str, Any]:
    """The canonical stored form of a validated tree."""
    if isinstance(node, Condition):
        out: dict[str, Any] = {"field": node.field.name, "operator": node.operator}
        if node.operator not in NO_VALUE:
            out["value"] = _json_value(node.value)
        return out
    group: dict[str, Any] = {
        "logic": node.logic,
        "conditions": [to_json(c) for c in node.conditions],
    }
    if node.negate:
        group["not"] = True
    return group


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def conditions(node: Node) -> list[Condition]:
    if isinstance(node, Condition):
        return [node]
    return [c for child in node.conditions for c in conditions(child)]


def is_time_relative(node: Node) -> bool:
    return any(c.operator in TIME_RELATIVE for c in conditions(node))


def window(condition: Condition, now: dt.datetime) -> tuple[Any, Any]:
    """The inclusive [from, to] bounds of a within_last condition at ``now``."""
    days = dt.timedelta(days=condition.value)
    if condition.field.type == coltypes.DATE:
        today = now.astimezone(dt.UTC).date()
        return today - days, today
    return now - days, now


# ----------------------------------------------------------- reference evaluator


def evaluate(node: Node, record: Mapping[str, Any], now: dt.datetime) -> bool:
    """Whether a record matches, in plain Python: the reference for the SQL.

    ``record`` maps field names to typed values as ``coltypes.parse_value``
    gives them (raw text for text columns; None for empty).
    """
    if isinstance(node, Condition):
        return _evaluate_condition(node, record.get(node.field.name), now)
    results = (evaluate(child, record, now) for child in node.conditions)
    matched = all(results) if node.logic == AND else any(results)
    return not matched if node.negate else matched


def _evaluate_condition(c: Condition, value: Any, now: dt.datetime) -> bool:
    op = c.operator
    text = c.field.type == coltypes.TEXT
    if op == "is_empty":
        return value is None or (text and value.strip(" ") == "")
    if op == "is_not_empty":
        return not (value is None or (text and value.strip(" ") == ""))
    if value is None:
        return op in NEGATIVE
    result = _POSITIVE[op.removeprefix("not_") if op in NEGATIVE else op](c, value, now)
    return not result if op in NEGATIVE else result


def _eq(c: Condition, v: Any, _now: dt.datetime) -> bool:
    if c.field.type == coltypes.TEXT:
        return unicode_lower(v) == unicode_lower(c.value)
    return bool(v == c.value)


def _in(c: Condition, v: Any, _now: dt.datetime) -> bool:
    if c.field.type == coltypes.TEXT:
        return unicode_lower(v) in {unicode_lower(x) for x in c.value}
    return v in c.value


def _within(c: Condition, v: Any, now: dt.datetime) -> bool:
    low, high = window(c, now)
    return bool(low <= v <= high)


_POSITIVE: dict[str, Callable[[Condition, Any, dt.datetime], bool]] = {
    "equals": _eq,
    "in": _in,
    "contains": lambda c, v, _n: unicode_lower(c.value) in unicode_lower(v),
    "starts_with": lambda c, v, _n: unicode_lower(v).startswith(unicode_lower(c.value)),
    "ends_with": lambda c, v, _n: unicode_lower(v).endswith(unicode_lower(c.value)),
    "greater_than": lambda c, v, _n: bool(v > c.value),
    "after": lambda c, v, _n: bool(v > c.value),
    "greater_or_equal": lambda c, v, _n: bool(v >= c.value),
    "less_than": lambda c, v, _n: bool(v < c.value),
    "before": lambda c, v, _n: bool(v < c.value),
    "less_or_equal": lambda c, v, _n: bool(v <= c.value),
    "between": lambda c, v, _n: bool(c.value[0] <= v <= c.value[1]),
    "within_last": _within,
}
