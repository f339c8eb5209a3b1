"""Identifier-quality counting: batch counting equals checking each value."""

from __future__ import annotations

import re
import sys

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from segflow.ingest.phones import normalise_phone
from segflow.ingest.quality import _SINGLE, QualityCounter, detect_kind

HEADER = ["email", "phone", "first_name", "last_name", "country", "zip"]

cells = st.one_of(
    st.sampled_from(
        ["", " ", "a@b.co", "x@y", "US", "usa", "+1 (415) 555-0100", "12", "Ann", "555-0100"]
    ),
    st.text(alphabet="abZ@.+- 0123456789()\u0663\u00e9\t", max_size=14),
)


@given(st.lists(st.lists(cells, min_size=6, max_size=6), max_size=40))
def test_counts_equal_per_value_checks(rows: list[list[str]]) -> None:
    counter = QualityCounter(HEADER)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(HEADER)
    for index, values in enumerate(columns):
        counter.add(index, pa.array(values, pa.string()))
    for index, summary in enumerate(counter.summary()):
        values = columns[index]
        kind = summary["kind"]
        assert summary["non_empty"] == sum(1 for v in values if v != "")
        assert summary["valid"] == sum(1 for v in values if _valid(kind, v))


def _valid(kind: str, value: str) -> bool:
    if kind == "phone":  # the rule the sync pass sends by
        return normalise_phone(value, "US") is not None
    return bool(_SINGLE[kind].fullmatch(value))


def test_phones_count_as_valid_only_when_they_could_be_sent() -> None:
    # "Possible" numbers phonenumbers does not call valid: never matchable.
    values = ["555-0100", "+1 555 0100", "(415) 555-0100", "441134960987", "020 7946 0958", ""]
    us = QualityCounter(["phone"])
    us.add(0, pa.array(values, pa.string()))
    assert us.summary() == [
        {"column": "phone", "kind": "phone", "non_empty": 5, "valid": 2, "invalid": 3}
    ]
    gb = QualityCounter(["phone"], phone_region="GB")
    gb.add(0, pa.array(values, pa.string()))
    assert gb.summary()[0]["valid"] == 2  # 441134960987 and 020 7946 0958; 415... is no GB number


def test_header_names_are_recognised() -> None:
    assert [detect_kind(h) for h in HEADER] == [
        "email",
        "phone",
        "first_name",
        "last_name",
        "country",
        "postal_code",
    ]
    assert detect_kind("E-Mail Address") == "email"
    assert detect_kind("Mobile Phone") == "phone"
    assert detect_kind("Surname") == "last_name"
    assert detect_kind("Postcode") == "postal_code"
    assert detect_kind("state") is None


# The email pattern spells out the characters ``\s`` matches, for speed.
_EMAIL_WITH_CLASS = re.compile(r"[ ]*[^\x00@\s]+@[^\x00@\s.]+(?:\.[^\x00@\s.]+)+[ ]*")


def test_no_whitespace_lies_beyond_the_spelled_out_class() -> None:
    assert not re.search(r"\s", "".join(map(chr, range(0x3001, sys.maxunicode + 1))))


@given(
    st.text(
        alphabet=st.sampled_from("ab.@ \t\n\x0b\x1c\x85\xa0\u1680\u2007\u2028\u202f\u3000\u3001é"),
        max_size=16,
    )
)
def test_email_validity_is_the_whitespace_class_rule(value: str) -> None:
    assert bool(_SINGLE["email"].fullmatch(value)) == bool(_EMAIL_WITH_CLASS.fullmatch(value))


def test_few_and_many_distinct_invalid_values_count_alike() -> None:
    # Batches large enough for the distinct-value paths, with a few invalid
    # values (counted one by one) and with many (counted together).
    names = ["Ann", "Bo", "Cy", "Di"] * 500
    few = names + ["", "9", "42", "7"] * 5
    many = names + [str(i) for i in range(200)]
    for values in (few, many):
        counter = QualityCounter(["first_name"])
        counter.add(0, pa.array(values, pa.string()))
        (summary,) = counter.summary()
        assert summary["valid"] == sum(1 for v in values if _SINGLE["first_name"].fullmatch(v))
        assert summary["non_empty"] == sum(1 for v in values if v)
