"""Column type inference for CSV values.

A column's type is the narrowest of ``integer``, ``number``, ``boolean``,
``date``, ``datetime`` that every non-empty value fits; anything else, or a
mix, is ``text``. Cells that exports write for "no value" (``N/A``, ``NULL``,
``-``: :data:`EMPTY_LIKE`) count as empty for typing and in typed columns;
their raw text is kept as written.

What a file does to a stored column's type is the import's business
(``segflow.ingest.columns``): lossless widening (integer -> number, date ->
datetime) happens by itself, a stored typed column never becomes text
because of a file (:func:`fits` tells which cells do not fit it).

:func:`batch_type` is the reference an import's checks are held to
(``segflow.ingest.checks`` decides plain batches with Arrow and hands it the
rest): per batch, on the column's values joined with NUL, which the reader
guarantees never occurs inside a value, one regular-expression pass in C.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Iterable, Sequence

from segflow import colformats
from segflow.errors import InvalidInput

INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
DATE = "date"
DATETIME = "datetime"
TEXT = "text"
#: Placeholder while a column has shown no non-empty value yet.
EMPTY = "empty"


#: Cells meaning "no value", compared trimmed of spaces and ignoring case.
#: Excel writes ``#N/A`` for a failed lookup. None may hold a digit: the
#: typed conversions (``db.records``) test only cells without one.
DEFAULT_EMPTY_LIKE = frozenset({"n/a", "na", "#n/a", "null", "none", "nil", "-"})
#: The words in use: ``DEFAULT_EMPTY_LIKE`` unless the process was given its
#: own (``SEGFLOW_EMPTY_LIKE``, :func:`use_empty_like`). One list for the
#: whole process, so that typing here and the SQL conversions agree.
EMPTY_LIKE = DEFAULT_EMPTY_LIKE
#: Letters and punctuation; never a quote, comma, ``%`` (psycopg reads it as a
#: placeholder in the SQL that lists the words) or backslash.
_EMPTY_LIKE_CHARS = r"A-Za-z!#$&()*+\-./:;<=>?@\[\]^_`{|}~"
_EMPTY_LIKE_WORD = re.compile(f"[{_EMPTY_LIKE_CHARS}][ {_EMPTY_LIKE_CHARS}]*")
_MAX_EMPTY_LIKE = 50


def empty_like_words(words: Iterable[str]) -> frozenset[str]:
    """Words for :data:`EMPTY_LIKE`, lower-cased, each checked.

    ASCII only, as SQLite's ``LOWER`` lower-cases only ASCII letters; no
    digit (see above), quote or comma (the setting's separator).
    """
    out = set()
    for given in words:
        word = given.strip(" ").lower()
        if not word:
            continue
        if (
            len(word) > 30
            or not _EMPTY_LIKE_WORD.fullmatch(word)
            or any(ch.isdigit() for ch in word)
        ):
            raise InvalidInput(
                f"empty-like word {given!r} is not allowed: at most 30 ASCII letters, spaces "
                "and punctuation, with no digit, quote, comma, % or backslash (SEGFLOW_EMPTY_LIKE)"
            )
        if word in TRUE_WORDS or word in FALSE_WORDS:
            raise InvalidInput(
                f"empty-like word {given!r} is a boolean value (true/false/yes/no/t/f/y/n) "
                "and cannot also mean empty (SEGFLOW_EMPTY_LIKE)"
            )
        out.add(word)
    if len(out) > _MAX_EMPTY_LIKE:
        raise InvalidInput(f"at most {_MAX_EMPTY_LIKE} empty-like words (SEGFLOW_EMPTY_LIKE)")
    return frozenset(out)


def use_empty_like(words: Iterable[str] | None) -> None:
    """Make ``words`` the process's empty-like cells (None: the built-in ones)."""
    global EMPTY_LIKE
    EMPTY_LIKE = DEFAULT_EMPTY_LIKE if words is None else empty_like_words(words)


TRUE_WORDS = ("true", "yes", "t", "y")
FALSE_WORDS = ("false", "no", "f", "n")

# Values may carry spaces around them; they are trimmed before conversion.
# Integers with leading zeros (zip codes, phone fragments) stay text, and at
# most 18 digits keeps every integer inside a signed 64-bit column.
VALUE_PATTERNS = {
    INTEGER: r"-?(?:0|[1-9][0-9]{0,17})",
    NUMBER: r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?",
    BOOLEAN: r"(?i:true|false|yes|no|t|f|y|n)",
    DATE: r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])",
    # Only forms that SQLite's date functions and PostgreSQL both read.
    DATETIME: (
        r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
        r"(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
        r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?"
    ),
}


def _batch_regex(value: str) -> re.Pattern[str]:
    # Possessive: a value is followed only by spaces, NUL or the end, none of
    # which it can contain, so giving characters back never finds another
    # match; not trying saves a fifth of the time.
    item = rf" *+(?:{value})?+ *+"
    return re.compile(rf"{item}(?:\x00{item})*+")


_BATCH = {name: _batch_regex(pattern) for name, pattern in VALUE_PATTERNS.items()}
_NOT_BLANK = re.compile(r"[^ \x00]")
# A value of a number column that the fast checks below cannot vouch for.
_LEADING_ZERO = re.compile(r"\x000[0-9]")
_DECIMAL_CHARS = str.maketrans("", "", "0123456789.\x00")
_TWO_DOTS = re.compile(r"\.[0-9]*+\.")
#: Values looked at to guess whether a batch has few distinct ones.
_SAMPLE = 256

# Which types a column may move to from a candidate, narrowest first.
_LADDER = {
    EMPTY: (INTEGER, NUMBER, BOOLEAN, DATE, DATETIME),
    INTEGER: (INTEGER, NUMBER),
    NUMBER: (NUMBER,),
    BOOLEAN: (BOOLEAN,),
    DATE: (DATE, DATETIME),
    DATETIME: (DATETIME,),
}


def ladder(current: str) -> tuple[str, ...]:
    """The types a column of type ``current`` may move to, narrowest first."""
    return _LADDER.get(current, ())


def column_type(kind: str) -> str:
    """The type a new column gets from its values' type: text if it had none."""
    return TEXT if kind == EMPTY else kind


def widen(a: str, b: str) -> str:
    """The narrowest type that holds values of both ``a`` and ``b`` (or format states)."""
    if a == b or b == EMPTY:
        return a
    if a == EMPTY:
        return b
    if colformats.is_state(a) or colformats.is_state(b):
        merged = colformats.merge(a, b)
        return colformats.state(merged) if merged else TEXT
    pair = {a, b}
    if pair == {INTEGER, NUMBER}:
        return NUMBER
    if pair == {DATE, DATETIME}:
        return DATETIME
    return TEXT


def calendar_ok(kind: str, values: Sequence[str]) -> bool:
    # The patterns accept 2023-02-30; the calendar does not.
    parse = dt.date.fromisoformat if kind == DATE else dt.datetime.fromisoformat
    try:
        # Fast path in C for the usual cells without surrounding spaces.
        deque(map(parse, filter(None, values)), maxlen=0)
        return True
    except ValueError:
        pass
    try:
        for value in values:
            stripped = value.strip(" ")
            if stripped:
                parse(stripped)
    except ValueError:
        return False
    return True


def few_distinct(values: Sequence[str]) -> bool:
    """Whether a sample of a batch suggests few distinct values (flags,
    codes, names), so that checking each distinct value once pays off."""
    return len(set(values[:_SAMPLE])) * 4 <= _SAMPLE


def _plain_integers(values: Sequence[str], joined: str) -> bool:
    """Whether every value is empty or ASCII digits without a leading zero,
    at most 18 of them: integers, found with string methods that run in C."""
    digits = "".join(values)
    return (
        digits.isdigit()
        and digits.isascii()
        and max(map(len, values)) <= 18
        and not _LEADING_ZERO.search("\x00" + joined)
    )


def _plain_decimals(values: Sequence[str], joined: str) -> bool:
    """Whether every value is empty or ASCII digits with at most one '.'
    between two of them, no leading zero and at most 18 characters: numbers,
    found with string methods that run in C."""
    if joined.translate(_DECIMAL_CHARS):
        return False
    framed = "\x00" + joined + "\x00"
    return (
        "\x00." not in framed
        and ".\x00" not in framed
        and not _LEADING_ZERO.search(framed)
        and not _TWO_DOTS.search(joined)
        and max(map(len, values)) <= 18
    )


def is_empty_like(raw: str | None) -> bool:
    """Whether a cell holds no value: empty, spaces, or one of :data:`EMPTY_LIKE`."""
    if raw is None:
        return True
    value = raw.strip(" ")
    return not value or value.lower() in EMPTY_LIKE


def batch_type(current: str, values: Sequence[str]) -> str:
    """The column's type after also seeing ``values`` (a batch of raw cells)."""
    if colformats.is_state(current):
        left = colformats.narrow(colformats.candidates_of(current), _present(values))
        return colformats.state(left) if left else TEXT
    kind = _batch_type(current, values)
    if kind == TEXT and current != TEXT:
        # Only a batch that would make the column text is looked at cell by
        # cell, for empty-like values and then for other countries' number
        # and date formats: plain numbers and dates pass in C above.
        kept = [value for value in values if not is_empty_like(value)]
        if len(kept) < len(values):
            kind = _batch_type(current, kept)
        if kind == TEXT and current in (EMPTY, INTEGER, NUMBER):
            present = _present(kept)
            if current == EMPTY:
                left = colformats.first_candidates(present)
            else:
                left = colformats.narrow(colformats.candidates_of(current), present)
            if left:
                return colformats.state(left)
    return kind


def _present(values: Sequence[str]) -> list[str]:
    """The distinct trimmed values that hold something (each checked once)."""
    return list(dict.fromkeys(v.strip(" ") for v in values if not is_empty_like(v)))


def fits(kind: str, raw: str | None, fmt: str | None = None) -> bool:
    """Whether a non-empty cell converts to a column of ``kind`` (text takes anything).

    ``fmt``: the column's format (:mod:`segflow.colformats`), if it has one.
    """
    if kind == TEXT:
        return True
    if raw is None:
        return False
    value = raw.strip(" ")
    if fmt is not None:
        if not colformats.fits(fmt, value):
            return False
        if kind == INTEGER:
            return not colformats.has_decimals(fmt, value)
        return True
    pattern = _VALUE_RE.get(kind)
    if pattern is None or not pattern.fullmatch(value):
        return False
    return kind not in (DATE, DATETIME) or calendar_ok(kind, [value])


_VALUE_RE = {name: re.compile(pattern) for name, pattern in VALUE_PATTERNS.items()}


def _batch_type(current: str, values: Sequence[str]) -> str:
    if current == TEXT:
        return TEXT
    if few_distinct(values):
        # Few distinct values (flags, codes): the type depends on each once.
        values = list(set(values))
    joined = "\x00".join(values)
    if not _NOT_BLANK.search(joined):
        return current
    if current in (EMPTY, INTEGER) and _plain_integers(values, joined):
        return INTEGER
    if current in (EMPTY, INTEGER, NUMBER) and _plain_decimals(values, joined):
        return NUMBER
    for candidate in _LADDER[current]:
        if _BATCH[candidate].fullmatch(joined):
            if candidate in (DATE, DATETIME) and not calendar_ok(candidate, values):
                continue
            return candidate
    return TEXT


def infer(values: Sequence[str]) -> str:
    """The type of one batch of values (``empty`` if all are blank), formats resolved."""
    return colformats.resolve(batch_type(EMPTY, values)).kind


def parse_value(kind: str, raw: str | None, fmt: str | None = None) -> object:
    """Reference conversion of one raw cell, as stored in the typed column.

    Used by tests and by the rule evaluator; the import itself converts in SQL.
    An empty-like cell, or one that does not fit a typed column it was kept
    in, has no typed value.
    """
    if raw is None or raw == "":
        return None
    if kind == TEXT:
        # Text is kept as written: a cell of spaces is a value, as stored.
        return raw
    if is_empty_like(raw) or not fits(kind, raw, fmt):
        return None
    value = raw.strip(" ")
    if fmt is not None:
        value = colformats.to_plain(fmt, value)
    if kind == INTEGER:
        return int(value)
    if kind == NUMBER:
        return float(value)
    if kind == BOOLEAN:
        return value.lower() in TRUE_WORDS
    if kind == DATE:
        return dt.date.fromisoformat(value)
    if kind == DATETIME:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    return raw
