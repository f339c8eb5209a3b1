"""Identifier-quality counting: batch counting equals checking each value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from segflow.quality import _SINGLE, QualityCounter, detect_kind

HEADER = ["email", "phone", "first_name", "last_name", "country", "zip"]

cells = st.one_of(
    st.sampled_from(["", " ", "a@b.co", "x@y", "US", "usa", "+1 (415) 555-0100", "12", "Ann"]),
    st.text(alphabet="abZ@.+- 0123456789()\u0663\u00e9\t", max_size=14),
)


@given(st.lists(st.lists(cells, min_size=6, max_size=6), max_size=40))
def test_counts_equal_per_value_checks(rows: list[list[str]]) -> None:
    counter = QualityCounter(HEADER)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(HEADER)
    for index, values in enumerate(columns):
        counter.add(index, values)
    for index, summary in enumerate(counter.summary()):
        values = columns[index]
        kind = summary["kind"]
        assert summary["non_empty"] == sum(1 for v in values if v != "")
        assert summary["valid"] == sum(1 for v in values if _SINGLE[kind].fullmatch(v))


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
