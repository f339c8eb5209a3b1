"""The SQL compiler of segment rules: a validated rule tree to one SQLAlchemy
boolean expression with bound parameters, for SQLite and PostgreSQL alike.

:mod:`segflow.rules` owns the model, validation and the reference evaluator
whose answers the compiled SQL is held to (tests/test_rules_sql.py); the
semantics this compiler implements are written down there.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from segflow import coltypes
from segflow.db.engine import LOWER_FUNCTION, POSTGRES_LOWER_COLLATION, unicode_lower
from segflow.rules import (
    AND,
    NEGATIVE,
    TIME_RELATIVE,
    Condition,
    Field,
    Node,
    window,
)

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
