"""Identifier-quality summary of an import.

Which columns look like Customer Match identifiers (by their header names):
every email and phone column (a record may carry several) and the first of
each address part; how many of their values would be usable, and how many
records carry two or more distinct valid emails, or phones. Counting runs
per batch with one regular-expression pass over the column, by Arrow (RE2,
in C++).

Phones are counted with the rule the sync pass sends by
(:func:`segflow.ingest.phones.normalise_phone`, in the dataset's default
region): a number phonenumbers does not call valid is invalid here too.
Numbers of digits and separators take its fast path (under 1 us a value);
only those with letters or other characters cost tens of microseconds.

Per-record consent columns (the dataset's mapping, else their header names)
are counted too: how many cells are granted, denied, empty and unrecognised
(sent as denied), see :mod:`segflow.ingest.consent`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from segflow.ingest import phones
from segflow.ingest.consent import ConsentColumn, detect_consent

EMAIL = "email"
PHONE = "phone"
FIRST_NAME = "first_name"
LAST_NAME = "last_name"
COUNTRY = "country"
POSTAL_CODE = "postal_code"

#: Kinds a record may carry several of (one column each); the address parts are one each.
SEVERAL_KINDS = (EMAIL, PHONE)

# Header names, compared after lower-casing and dropping non-letters (so
# ``email_2`` reads as ``email``). Email and phone columns may say whose or
# which one they are (``work_email``, ``home_phone``).
_WHICH = (
    "(?:work|home|personal|private|business|office|other|alt|alternate|alternative"
    "|secondary|primary|main|second|third)?"
)
# Flags about an identifier (``email_opt_in``, ``phone_verified``) hold no identifier.
_ABOUT = re.compile(r"(optin|optout|consent|verified|valid|subscribed|status|type|flag|bounce)")
_NAME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (EMAIL, re.compile(rf"^{_WHICH}(e?mail|emailaddress|email\w*)$")),
    (
        PHONE,
        re.compile(rf"^{_WHICH}((phone|mobile|cellphone|telephone)\w*|cell|tel|telno|telnumber)$"),
    ),
    (FIRST_NAME, re.compile(r"^(firstname|givenname|fname|forename|first)$")),
    (LAST_NAME, re.compile(r"^(lastname|familyname|surname|lname|last)$")),
    (COUNTRY, re.compile(r"^(country|countrycode|countryiso|regioncode)$")),
    (POSTAL_CODE, re.compile(r"^(zip|zipcode|postalcode|postcode|postal|zip\w*)$")),
)

# What ``\s`` matches, spelled out: emails may hold none of it.
_SPACE_CHARS = "".join(re.findall(r"\s", "".join(map(chr, range(0x3001)))))
_SPACES = re.escape(_SPACE_CHARS)
#: Each kind's valid value, whole (Python's ``re``): the reference for the
#: RE2 forms below, and how several emails of one member are told apart.
_VALID = {
    EMAIL: rf"[ ]*+[^\x00@{_SPACES}]++@[^\x00@{_SPACES}.]++(?:\.[^\x00@{_SPACES}.]++)++[ ]*+",
    FIRST_NAME: r"[^\x00\d]*?[^\W\d_][^\x00\d]*",
    LAST_NAME: r"[^\x00\d]*?[^\W\d_][^\x00\d]*",
    COUNTRY: r"[ ]*[A-Za-z]{2}[ ]*",
    POSTAL_CODE: r"[ ]*[A-Za-z0-9](?:[A-Za-z0-9 -]{0,8}[A-Za-z0-9])?[ ]*",
}
_SINGLE = {kind: re.compile(pattern) for kind, pattern in _VALID.items()}

# The same in RE2, which Arrow runs over a whole column in C++ (the tests hold
# the two to each other). RE2 has no possessive quantifiers, which change
# nothing here (each repeat is followed by what it cannot match); Python's
# ``\d`` is Unicode's Nd, and ``[^\W\d_]`` its letters and other numerals.
_RE2_SPACES = "".join(f"\\x{{{ord(c):X}}}" for c in _SPACE_CHARS)
_NAME_RE2 = r"^[^\p{Nd}]*[\p{L}\p{Nl}\p{No}][^\p{Nd}]*$"
_VALID_RE2 = {
    EMAIL: f"^ *[^@{_RE2_SPACES}]+@[^@{_RE2_SPACES}.]+(?:\\.[^@{_RE2_SPACES}.]+)+ *$",
    FIRST_NAME: _NAME_RE2,
    LAST_NAME: _NAME_RE2,
    COUNTRY: f"^{_VALID[COUNTRY]}$",
    POSTAL_CODE: f"^{_VALID[POSTAL_CODE]}$",
}


def present(array: pa.Array) -> pa.Array:
    """The cells holding something (neither NULL nor ``''``)."""
    return array.filter(pc.not_equal(array, ""))


def detect_kind(column_name: str) -> str | None:
    """The identifier kind a header name suggests, if any."""
    folded = re.sub(r"[^a-z]", "", column_name.lower())
    if _ABOUT.search(folded):
        return None
    for kind, pattern in _NAME_PATTERNS:
        if pattern.match(folded):
            return kind
    return None


@dataclass
class IdentifierColumn:
    column: str
    kind: str
    non_empty: int = 0
    valid: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "column": self.column,
            "kind": self.kind,
            "non_empty": self.non_empty,
            "valid": self.valid,
            "invalid": self.non_empty - self.valid,
        }


@dataclass
class QualityCounter:
    """Accumulates identifier counts over the batches of one import."""

    header: Sequence[str]
    #: Region assumed for phone numbers without a country code (the dataset's mapping).
    phone_region: str = phones.DEFAULT_REGION
    columns: dict[int, IdentifierColumn] = field(default_factory=dict)
    #: Consent columns by mapping entry (``consent_ad_user_data``...) as the
    #: dataset's stored mapping names them; None: detected from the header,
    #: as the sync pass does for a dataset without a stored mapping.
    consent_columns: Mapping[str, str] | None = None
    consent: dict[int, ConsentColumn] = field(default_factory=dict)
    #: Answers for phone values the fast path could not decide, kept across batches.
    _phone_memo: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    #: Members with two or more distinct valid values of a kind (email, phone).
    several: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        taken: set[str] = set()
        for index, name in enumerate(self.header):
            kind = detect_kind(name)
            if kind is None or (kind in taken and kind not in SEVERAL_KINDS):
                continue
            taken.add(kind)
            self.columns[index] = IdentifierColumn(name, kind)
        self._find_consent()

    def _find_consent(self) -> None:
        if self.consent_columns is None:
            for index, name in enumerate(self.header):
                kind = detect_consent(name)
                if kind is not None and all(c.kind != kind for c in self.consent.values()):
                    self.consent[index] = ConsentColumn(name, kind)
            return
        folded = [name.casefold() for name in self.header]
        for kind, name in self.consent_columns.items():
            if name.casefold() in folded:
                index = folded.index(name.casefold())
                self.consent[index] = ConsentColumn(self.header[index], kind)

    def add_members(self, columns: Sequence[pa.Array | None]) -> None:
        """Count the members of one batch (``columns`` by header position; an
        identifier column is always given) that carry two or more distinct
        valid emails, or phones.

        Only kinds with several columns cost anything: a value at a time, as
        the sync pass will treat each.
        """
        for kind in SEVERAL_KINDS:
            indexes = [i for i, c in self.columns.items() if c.kind == kind]
            if len(indexes) < 2:
                continue
            cells = [columns[i] for i in indexes]
            rows = zip(*(c.to_pylist() for c in cells if c is not None), strict=True)
            self.several[kind] += sum(len(self._distinct_valid(kind, row)) >= 2 for row in rows)

    def _distinct_valid(self, kind: str, values: Sequence[str | None]) -> set[str]:
        found: set[str] = set()
        for value in values:
            if not value:
                continue
            if kind == PHONE:
                phone = phones.normalise_phone(value, self.phone_region)
                if phone is not None:
                    found.add(phone)
            elif _SINGLE[EMAIL].fullmatch(value):
                found.add(value.strip().lower())
        return found

    def members_summary(self) -> dict[str, int]:
        """Members with two or more distinct valid emails, and phones."""
        return {kind: self.several[kind] for kind in SEVERAL_KINDS}

    def add(self, index: int, array: pa.Array) -> None:
        """Count one batch of column ``index``'s cells (empty: NULL or ``''``)."""
        consent = self.consent.get(index)
        if consent is not None:
            consent.add_counts(
                (item["values"].as_py(), item["counts"].as_py()) for item in pc.value_counts(array)
            )
        column = self.columns.get(index)
        if column is None:
            return
        values = present(array)
        column.non_empty += len(values)
        if column.kind == PHONE:
            cells = values.to_pylist()
            column.valid += phones.count_valid(cells, self.phone_region, self._phone_memo)
            return
        valid = pc.sum(pc.match_substring_regex(values, _VALID_RE2[column.kind])).as_py()
        column.valid += valid or 0

    def summary(self) -> list[dict[str, object]]:
        return [c.as_dict() for c in self.columns.values()]

    def consent_summary(self) -> list[dict[str, object]]:
        """Per consent column: granted, denied, empty and unrecognised (sent as denied)."""
        return [self.consent[i].as_dict() for i in sorted(self.consent)]
