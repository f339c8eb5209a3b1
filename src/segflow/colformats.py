"""Number and date formats of real exports: ``1.234,56``, ``1,234.56``, ``31.12.2024``.

A column whose values are not plain numbers or ISO dates may still be
numbers or dates written the way a spreadsheet in some country writes them.
A format is chosen per column, only when it is the one reading of every
value: a column of ``1,234`` could be 1234 or 1.234, a column of
``05/06/2024`` the fifth of June or the sixth of May, and such a column stays
text with a note saying why. The chosen format is stored with the column and
used for later files.

While a file is read, a column's possible formats travel as a *state*: a
string like ``~1,234.56=i|1.234,56=n`` (each candidate, with ``i`` while its
values are whole numbers and ``n`` once one has a decimal part), in place of
a type. :func:`resolve` turns it into a type and a format at the end.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Thousands ``,`` and decimal ``.`` (English).
THOUSANDS_COMMA = "1,234.56"
#: Thousands ``.`` or a space and decimal ``,`` (most of Europe).
DECIMAL_COMMA = "1.234,56"

_DIGITS = r"(?:0|[1-9][0-9]*)"
MAX_DIGITS = 18


@dataclass(frozen=True)
class NumberFormat:
    name: str
    #: Characters that separate groups of three digits, and the decimal mark.
    groups: str
    decimal: str

    @property
    def pattern(self) -> str:
        grouped = rf"[1-9][0-9]{{0,2}}(?:[{re.escape(self.groups)}][0-9]{{3}})+"
        return rf"-?(?:{grouped}|{_DIGITS})(?:{re.escape(self.decimal)}[0-9]+)?"

    def plain(self, value: str) -> str:
        """``1.234,56`` as ``1234.56``: what ``float`` and SQL casts read."""
        for group in self.groups:
            value = value.replace(group, "")
        return value.replace(self.decimal, ".")


@dataclass(frozen=True)
class DateFormat:
    name: str
    separator: str
    #: The parts in the order written: ``DMY``, ``MDY`` or ``YMD``.
    order: str

    @property
    def pattern(self) -> str:
        part = {"D": "[0-9]{1,2}", "M": "[0-9]{1,2}", "Y": "[0-9]{4}"}
        return re.escape(self.separator).join(part[p] for p in self.order)

    def parse(self, value: str) -> dt.date:
        parts = dict(zip(self.order, value.split(self.separator), strict=True))
        return dt.date(int(parts["Y"]), int(parts["M"]), int(parts["D"]))


NUMBER_FORMATS = {
    f.name: f
    for f in (
        NumberFormat(THOUSANDS_COMMA, ",", "."),
        NumberFormat(DECIMAL_COMMA, ". \u00a0", ","),
    )
}
DATE_FORMATS = {
    f.name: f
    for f in (
        DateFormat("DD.MM.YYYY", ".", "DMY"),
        DateFormat("DD/MM/YYYY", "/", "DMY"),
        DateFormat("MM/DD/YYYY", "/", "MDY"),
        DateFormat("YYYY/MM/DD", "/", "YMD"),
    )
}
FORMATS: dict[str, NumberFormat | DateFormat] = {**NUMBER_FORMATS, **DATE_FORMATS}
_VALUE = {name: re.compile(f.pattern) for name, f in FORMATS.items()}

#: What a column of plain whole numbers could also be read as (every plain
#: integer is written the same in both). A column of plain numbers is not
#: carried over: ``1e5`` is written in neither format.
WHOLE = {name: "i" for name in NUMBER_FORMATS}


def is_state(kind: str) -> bool:
    return kind.startswith("~")


def state(candidates: dict[str, str]) -> str:
    return "~" + "|".join(f"{name}={kind}" for name, kind in sorted(candidates.items()))


def candidates_of(kind: str) -> dict[str, str]:
    """The candidates a state holds (a plain integer column counts as one too)."""
    if not is_state(kind):
        return dict(WHOLE) if kind == "integer" else {}
    return dict(part.split("=", 1) for part in kind[1:].split("|") if part)


def fits(name: str, value: str) -> bool:
    """Whether a trimmed, non-empty value is written in format ``name``."""
    if not _VALUE[name].fullmatch(value):
        return False
    shape = FORMATS[name]
    if isinstance(shape, NumberFormat):
        # As for plain numbers: at most 18 digits before the decimal mark,
        # which keeps every whole number inside a signed 64-bit column.
        whole = value.split(shape.decimal, 1)[0]
        return sum(c.isdigit() for c in whole) <= MAX_DIGITS
    if isinstance(shape, DateFormat):
        try:
            shape.parse(value)
        except ValueError:
            return False
    return True


def narrow(candidates: dict[str, str], values: Iterable[str]) -> dict[str, str]:
    """The candidates every value (trimmed, non-empty) is written in, with what each read."""
    left = dict(candidates)
    for value in values:
        for name in list(left):
            if not fits(name, value):
                del left[name]
            elif left[name] == "i" and has_decimals(name, value):
                left[name] = "n"
        if not left:
            break
    return left


def first_candidates(values: Sequence[str]) -> dict[str, str]:
    """Every format some value could be written in, narrowed by all of ``values``."""
    if not values:
        return {}
    start = {name: _start_kind(name) for name in FORMATS if fits(name, values[0])}
    return narrow(start, values)


def _start_kind(name: str) -> str:
    return "d" if name in DATE_FORMATS else "i"


def has_decimals(name: str, value: str) -> bool:
    shape = FORMATS[name]
    return isinstance(shape, NumberFormat) and shape.decimal in value


def merge(a: str, b: str) -> dict[str, str] | None:
    """Candidates both states (or plain types) allow, or None when either has none."""
    left, right = candidates_of(a), candidates_of(b)
    if not left or not right:
        return None
    out = {}
    for name in left.keys() & right.keys():
        out[name] = "n" if "n" in (left[name], right[name]) else left[name]
    return out


@dataclass(frozen=True)
class Resolved:
    kind: str
    format: str | None = None
    #: Why a column with formatted values stays text, for the import's notes.
    ambiguous: str | None = None


def resolve(kind: str) -> Resolved:
    """A column's type and format from its state, text when the reading is not unique."""
    if not is_state(kind):
        return Resolved(kind)
    found = candidates_of(kind)
    if len(found) == 1:
        ((name, read),) = found.items()
        return Resolved("date" if read == "d" else "integer" if read == "i" else "number", name)
    names = sorted(found)
    if not names:
        return Resolved("text")
    return Resolved("text", None, f"values could be read as {' or as '.join(names)}")


def to_plain(name: str, value: str) -> str:
    """A formatted value as the plain text the typed conversions read (``1234.56``, ISO)."""
    shape = FORMATS[name]
    if isinstance(shape, NumberFormat):
        return shape.plain(value)
    return shape.parse(value).isoformat()
