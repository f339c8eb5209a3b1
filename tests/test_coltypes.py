"""Type inference: the spec by example, and the batch machinery against per-value checks."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segflow import colformats, coltypes
from segflow.coltypes import VALUE_PATTERNS, calendar_ok, widen
from segflow.ingest import checks

CASES = [
    (["1", "2", "-3"], "integer"),
    (["1", "", " 42 "], "integer"),
    (["1", "2.5"], "number"),
    (["1e5", "-0.25"], "number"),
    (["007"], "text"),
    (["+5"], "text"),
    (["1,000"], "text"),  # 1000 or 1.0: two readings
    (["1.234,56", "12,5"], "number"),
    (["31.12.2024"], "date"),
    (["12345678901234567890"], "text"),
    (["inf"], "text"),
    (["nan"], "text"),
    (["1.", ".5"], "text"),
    (["1e999"], "text"),
    (["true", "No", "Y", "f"], "boolean"),
    (["1", "0"], "integer"),
    (["2024-02-29"], "date"),
    (["2023-02-29"], "text"),
    (["2024-13-01"], "text"),
    (["2024-01-01", "2024-01-01T10:00"], "datetime"),
    (["2024-01-01T10:00:00.123456Z", "2024-01-01 10:00:00+05:30"], "datetime"),
    (["2024-01-01T10:00:00+0530"], "text"),
    (["2024-01-01T24:00"], "text"),
    (["", " "], "empty"),
    (["1", "x"], "text"),
    (["yes", "1"], "text"),
    (["2024-01-01", "5"], "text"),
]


@pytest.mark.parametrize(("values", "expected"), CASES)
def test_inference_examples(values: list[str], expected: str) -> None:
    assert coltypes.infer(values) == expected


def test_widening_lattice() -> None:
    assert widen("integer", "number") == "number"
    assert widen("number", "integer") == "number"
    assert widen("date", "datetime") == "datetime"
    assert widen("integer", "empty") == "integer"
    assert widen("empty", "boolean") == "boolean"
    assert widen("integer", "date") == "text"
    assert widen("boolean", "integer") == "text"
    assert widen("text", "integer") == "text"


def test_batches_only_widen() -> None:
    assert coltypes.batch_type("integer", ["2.5"]) == "number"
    assert coltypes.batch_type("number", ["3"]) == "number"
    assert coltypes.batch_type("date", ["x"]) == "text"
    assert coltypes.batch_type("text", ["1"]) == "text"
    assert coltypes.batch_type("boolean", ["", ""]) == "boolean"


def _one(value: str) -> str:
    """Per-value reference: the narrowest type whose pattern and calendar accept it;
    else the other countries' formats it is written in (as a state), else text."""
    stripped = value.strip(" ")
    if coltypes.is_empty_like(value):
        return "empty"
    for kind in ("integer", "number", "boolean", "date", "datetime"):
        if not re.fullmatch(VALUE_PATTERNS[kind], stripped):
            continue
        if kind not in ("date", "datetime") or calendar_ok(kind, [stripped]):
            return kind
    found = colformats.narrow(
        {name: "d" if name in colformats.DATE_FORMATS else "i" for name in colformats.FORMATS},
        [stripped],
    )
    return colformats.state(found) if found else "text"


cells = st.one_of(
    st.integers(-(10**19), 10**19).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "true", "No", "y", "007", "2024-02-29", "2023-02-29"]),
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.text(max_size=8),
).filter(lambda v: "\x00" not in v)


@given(st.lists(st.lists(cells, max_size=6), max_size=5))
def test_batched_inference_equals_folding_each_value(batches: list[list[str]]) -> None:
    current = coltypes.EMPTY
    for batch in batches:
        current = coltypes.batch_type(current, batch)
    expected = coltypes.EMPTY
    for value in (v for batch in batches for v in batch):
        expected = widen(expected, _one(value))
    assert current == expected


@given(st.lists(cells, min_size=1, max_size=8))
def test_every_inferred_value_converts(values: list[str]) -> None:
    kind = coltypes.infer(values)
    if kind not in ("empty", "text"):
        for value in values:
            coltypes.parse_value(kind, value)


@given(st.lists(cells, max_size=12), st.lists(cells, max_size=12))
def test_two_halves_widened_equal_the_whole(first: list[str], second: list[str]) -> None:
    # Helper processes check the halves of a file; their types are merged.
    def fold(values: list[str]) -> str:
        return coltypes.batch_type(coltypes.EMPTY, values)

    assert widen(fold(first), fold(second)) == fold(first + second)


# Values on every edge of the plain-digits check, each inserted among many
# distinct integers.
INTEGERISH = [
    "0", "00", "0123", "-0", "-12", "+5", " 5", "5 ", "\u0663", "\uff11", "", " ", "1.0", "x",
    "123456789012345678", "1234567890123456789", "1_000",
    "1.5", "0.25", "00.5", "05.5", ".5", "5.", "1.2.3", "..", ".", "1.5e3", "12345678901234567.5",
    "123456789012345678.5", "1234567890123456789.5", "\u0663.5",
]  # fmt: skip


@given(
    st.integers(0, 10**17),
    st.lists(st.tuples(st.integers(0, 299), st.sampled_from(INTEGERISH)), max_size=4),
    st.sampled_from(["empty", "integer", "number"]),
)
def test_batches_of_many_distinct_values_equal_folding_each_value(
    start: int, inserts: list[tuple[int, str]], current: str
) -> None:
    # 300 distinct integers: neither the few-distinct-values path nor, once
    # an odd value is inserted, necessarily the plain-digits path.
    values = [str(start + i) for i in range(300)]
    for at, value in inserts:
        values.insert(at, value)
    expected = current
    for value in values:
        expected = widen(expected, _one(value))
    assert coltypes.batch_type(current, values) == expected


@pytest.mark.parametrize("current", ["empty", "integer", "number"])
@pytest.mark.parametrize("value", INTEGERISH)
def test_each_edge_among_many_distinct_integers(value: str, current: str) -> None:
    for at in (0, 150, 300):
        values = [str(10**17 + i) for i in range(300)]
        if current == "number":  # decimals, so that the batch is read as such
            values = [f"{i}.{i % 7}" for i in range(300)]
        values.insert(at, value)
        expected = current
        for one in values:
            expected = widen(expected, _one(one))
        assert coltypes.batch_type(current, values) == expected, (value, at)


arrow_cells = cells | st.sampled_from(
    ["N/A", " 5", "5 ", "1.234,56", "31.12.2024", "12/31/2024", "2024-01-01T10:00", "TRUE", "1e5"]
)


@given(
    st.lists(st.lists(arrow_cells, max_size=8), max_size=5),
    st.sampled_from(["empty", "integer", "number", "boolean", "date", "datetime", "text"]),
    st.booleans(),
)
def test_the_imports_arrow_checks_are_the_reference(
    batches: list[list[str]], current: str, nulls: bool
) -> None:
    """The import decides types with Arrow; the reference is ``coltypes.batch_type``.
    A batch it calls plain must hold only cells a bare cast converts alike."""
    kind, reference = current, current
    for batch in batches:
        cells_in = [None if nulls and v == "" else v for v in batch]
        kind, plain = checks.batch_type(kind, pa.array(cells_in, pa.string()))
        reference = coltypes.batch_type(reference, batch)
        assert kind == reference
        if plain and kind not in ("empty", "text"):
            for value in filter(None, batch):
                assert value == value.strip() and not coltypes.is_empty_like(value)
                assert re.fullmatch(VALUE_PATTERNS[kind], value)
