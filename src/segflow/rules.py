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
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from segflow import coltypes
from segflow.db.engine import LOWER_FUNCTION, POSTGRES_LOWER_COLLATION, unicode_lower
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
            raise RuleError(path, f"column {field.name!r} is a {kind}; give a number")
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
        raise RuleError(path, f"column {field.name!r} is a {kind}; give an ISO date string")
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


# ---------------------------------------------------------------- SQL compiler


#: Up to this many other-case characters are looked for one by one (see _holds_any).
MAX_CHARACTER_SEARCHES = 8


@functools.cache
def _other_cases() -> dict[str, str]:
    """For each lower-case character, the characters outside ASCII that lower to it."""
    others: dict[str, str] = {}
    # Every character with a lower-case mapping is in planes 0 and 1.
    for code in range(0x20000):
        char = chr(code)
        lower = unicode_lower(char)
        if lower != char and not char.isascii():
            others[lower] = others.get(lower, "") + char
    return others


def other_cases(values: Iterable[str]) -> str:
    """The characters outside ASCII that lower-case to one of the (lower-cased)
    values' characters: ``É`` for ``é``, ``İ`` for ``i``, the Kelvin sign for ``k``.
    A cell that matches without ASCII folding alone holds one of them."""
    others = _other_cases()
    return "".join(sorted({o for value in values for char in value for o in others.get(char, "")}))


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Compiler:
    """Compiles validated rules for one dialect against one table (or alias)."""

    def __init__(self, dialect: str, table: sa.FromClause, now: dt.datetime) -> None:
        self.dialect = dialect
        self.table = table
        self.now = now

    def compile(self, node: Node) -> ColumnElement[bool]:
        """True or false for every row, never NULL: safe to negate or select."""
        return self._compile(node, strict=True)

    def compile_filter(self, node: Node) -> ColumnElement[bool]:
        """The same rows when used as a WHERE condition, but may be NULL where the
        answer is false: conditions outside any negation skip their empty-cell
        guard, which makes full scans cheaper. Never negate this form."""
        return self._compile(node, strict=False)

    def _compile(self, node: Node, strict: bool) -> ColumnElement[bool]:
        if isinstance(node, Condition):
            return self._condition(node, strict)
        # Under a negation NULL would turn into NULL, not true: be strict there.
        parts = [self._compile(child, strict or node.negate) for child in node.conditions]
        combined = sa.and_(*parts) if node.logic == AND else sa.or_(*parts)
        return sa.not_(combined) if node.negate else combined

    def _col(self, field: Field) -> ColumnElement[Any]:
        return self.table.c[field.column]

    def _text_match(
        self,
        col: ColumnElement[Any],
        lowered: Sequence[str],
        test: Callable[[ColumnElement[Any]], ColumnElement[bool]],
    ) -> ColumnElement[bool]:
        """``test`` (given the lower-cased values) on the Unicode-lower-cased cell.

        Lower-casing every cell in full is slow: a Python call per row on SQLite
        (an equals over 1M names took 0.43 s instead of 0.09 s), a
        wide-character conversion on PostgreSQL (0.41-0.52 s instead of 0.27 s).
        Folding only ASCII letters is cheap (SQLite's
        NOCASE and LIKE, PostgreSQL's lower() under "C"), and a match it finds
        is a match: the values are lower-cased already and every character it
        leaves alone is then compared exactly. It misses only cells holding a
        character outside ASCII that lowers to one of the values' characters,
        so only those take the full lower-casing.
        """
        if self.dialect == "sqlite":
            fast = test(col.collate("NOCASE"))
            full = getattr(sa.func, LOWER_FUNCTION)(col)
        else:
            fast = test(sa.func.lower(sa.collate(col, "C")))
            full = sa.func.lower(sa.collate(col, POSTGRES_LOWER_COLLATION))
        others = other_cases(lowered)
        if not others:
            return fast
        return sa.or_(fast, sa.and_(self._holds_any(col, others), test(full)))

    def _holds_any(self, col: ColumnElement[Any], chars: str) -> ColumnElement[bool]:
        # A substring search per character for a few: GLOB '*[...]*' made the
        # benchmark's whole evaluation 25% slower on SQLite, and a regular
        # expression class took PostgreSQL's scan from 0.29 s to 0.52 s. For
        # many, one class: a chain of hundreds of ORs is too deep for SQLite.
        if len(chars) <= MAX_CHARACTER_SEARCHES:
            find = sa.func.instr if self.dialect == "sqlite" else sa.func.strpos
            return sa.or_(*(find(col, _text(c)) > 0 for c in chars))
        # The characters are outside ASCII: none is special in either class.
        if self.dialect == "sqlite":
            return col.op("GLOB")(_text(f"*[{chars}]*"))
        return col.op("~")(_text(f"[{chars}]"))

    def param_for(self, field: Field, value: Any) -> sa.BindParameter[Any]:
        kind = field.type
        if self.dialect == "sqlite":
            if kind == coltypes.DATE:
                return sa.literal(value.isoformat(), sa.String)
            if kind == coltypes.DATETIME:
                return sa.literal(sqlite_datetime(value), sa.String)
        types: dict[str, Any] = {
            coltypes.INTEGER: sa.Float if isinstance(value, float) else sa.BigInteger,
            coltypes.NUMBER: sa.Float,
            coltypes.BOOLEAN: sa.Boolean,
            coltypes.DATE: sa.Date,
            coltypes.DATETIME: sa.DateTime(timezone=True),
            coltypes.TEXT: sa.String,
        }
        return sa.literal(value, types[kind])

    def _condition(self, c: Condition, strict: bool) -> ColumnElement[bool]:
        col = self._col(c.field)
        op = c.operator
        if op == "is_empty":
            return self._empty(c.field, col)
        if op == "is_not_empty":
            return sa.not_(self._empty(c.field, col))
        positive = self._positive(c, col)
        if op in NEGATIVE:
            return sa.or_(col.is_(None), sa.not_(positive))
        return sa.and_(col.is_not(None), positive) if strict else positive

    def _empty(self, field: Field, col: ColumnElement[Any]) -> ColumnElement[bool]:
        if field.type == coltypes.TEXT:
            return sa.or_(col.is_(None), sa.func.trim(col) == "")
        return col.is_(None)

    def _positive(self, c: Condition, col: ColumnElement[Any]) -> ColumnElement[bool]:
        """The operator's comparison for a non-empty cell (negations use the positive form)."""
        op, value, field = c.operator, c.value, c.field
        text = field.type == coltypes.TEXT
        if op in ("equals", "not_equals"):
            if text:
                lowered = unicode_lower(value)
                return self._text_match(col, [lowered], lambda x: x == _text(lowered))
            return col == self.param_for(field, value)
        if op in ("in", "not_in"):
            if text:
                values = sorted({unicode_lower(v) for v in value})
                return self._text_match(col, values, lambda x: x.in_([_text(v) for v in values]))
            return col.in_([self.param_for(field, v) for v in value])
        if op in ("contains", "not_contains", "starts_with", "ends_with"):
            lowered = unicode_lower(value)
            escaped = like_escape(lowered)
            pattern = {
                "starts_with": f"{escaped}%",
                "ends_with": f"%{escaped}",
            }.get(op, f"%{escaped}%")
            # SQLite's LIKE also folds ASCII letters: harmless on lower-cased text.
            return self._text_match(col, [lowered], lambda x: x.like(_text(pattern), escape="\\"))
        if op in ("greater_than", "after"):
            return col > self.param_for(field, value)
        if op == "greater_or_equal":
            return col >= self.param_for(field, value)
        if op in ("less_than", "before"):
            return col < self.param_for(field, value)
        if op == "less_or_equal":
            return col <= self.param_for(field, value)
        if op == "between":
            return sa.and_(
                col >= self.param_for(field, value[0]), col <= self.param_for(field, value[1])
            )
        if op in TIME_RELATIVE:
            low, high = window(c, self.now)
            return sa.and_(col >= self.param_for(field, low), col <= self.param_for(field, high))
        raise AssertionError(f"unhandled operator {op}")  # pragma: no cover


def _text(value: str) -> sa.BindParameter[str]:
    return sa.literal(value, sa.String)


def sqlite_datetime(value: dt.datetime) -> str:
    """A datetime as SQLite stores it (see ``records.convert``): UTC, milliseconds."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


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
