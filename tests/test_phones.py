"""The phone rule's fast paths, held to phonenumbers on numbers written every usual way.

:func:`segflow.ingest.phones.normalise_phone` decides numbers of digits
(with a "+", an international prefix, a national prefix or none, and
separators) without phonenumbers; these tests draw such numbers from every
region's example numbers, mutated, and check each answer against
phonenumbers alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata, PhoneNumberType

from segflow.ingest import phones
from segflow.ingest.phones import PHONE_REGIONS, count_valid, normalise_phone
from tests.test_identifiers import _phonenumbers_rule

_TYPES = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
)


def _examples() -> list[tuple[str, int, str]]:
    """(region, country code, national number) of every example number phonenumbers has."""
    found = []
    for region in sorted(PHONE_REGIONS):
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                nsn = phonenumbers.national_significant_number(number)
                found.append((region, number.country_code, nsn))
    for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()):
        if regions == ("001",):
            number = phonenumbers.example_number_for_non_geo_entity(code)
            if number is not None:
                found.append(("001", code, phonenumbers.national_significant_number(number)))
    return found


_EXAMPLES = _examples()
_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_NANP = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])
#: Default regions: every one, with the ones whose rules differ most drawn more often.
_REGIONS = st.sampled_from(["US", "CA", "BM", "JM", "us", "GB", "DE", "FR", "JP", "IT"]) | (
    st.sampled_from(sorted(PHONE_REGIONS) + ["001", "XX", "gb"])
)


def _prefixes(region: str, code: int) -> list[str]:
    md = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    national = [md.national_prefix] if md is not None and md.national_prefix else []
    return ["", "0", "1", "8", *national]


@st.composite
def _digits(draw: st.DrawFn) -> tuple[str, str]:
    """A country code and a national number: an example number, a digit or two changed."""
    region, code, nsn = draw(st.sampled_from(_EXAMPLES))
    if draw(st.integers(0, 9)) == 0:
        code = draw(st.sampled_from(_CODES))
    digits = list(nsn)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(digits)))
        digit = draw(st.sampled_from("0123456789"))
        edit = draw(st.sampled_from(["replace", "insert", "delete"]))
        if edit == "insert" or not digits:
            digits.insert(at, digit)
        elif edit == "replace":
            digits[min(at, len(digits) - 1)] = digit
        else:
            del digits[min(at, len(digits) - 1)]
    prefix = draw(st.sampled_from(_prefixes(region, code)))
    return str(code), prefix + "".join(digits)


@st.composite
def _written(draw: st.DrawFn, default: str) -> str:
    """A number as people write it: country code or not, prefixes, separators."""
    code, national = draw(_digits())
    idd = PhoneMetadata.metadata_for_region(default.upper())
    own_idd = [idd.preferred_international_prefix or "00"] if idd is not None else []
    lead = draw(st.sampled_from(["+", "+", "", "", "00", "011", "0011", *own_idd]))
    shape = draw(st.sampled_from(["with code", "with code", "national", "(0)"]))
    if shape == "national":
        digits = national
    elif shape == "(0)":
        digits = f"{lead}{code}(0){national}"
    else:
        digits = f"{lead}{code}{national}"
    out = []
    for ch in digits:
        out.append(ch)
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "(", ")", " - "])))
    written = "".join(out)
    if draw(st.integers(0, 19)) == 0:
        # Something the fast path leaves to phonenumbers.
        written += draw(st.sampled_from(["/", " x12", "#", "a", "\t", "++"]))
    return written


@st.composite
def _case(draw: st.DrawFn) -> tuple[str, str]:
    region = draw(_REGIONS)
    return draw(_written(region)), region


@given(_case())
def test_digits_in_every_shape_are_kept_exactly_as_phonenumbers_keeps_them(
    case: tuple[str, str],
) -> None:
    raw, region = case
    assert normalise_phone(raw, region) == _phonenumbers_rule(raw, region)


@given(st.lists(_case(), max_size=30), _REGIONS)
def test_a_batch_counts_what_each_value_is(cases: list[tuple[str, str]], region: str) -> None:
    values = [raw for raw, _ in cases] + ["", "  ", "()", "+", "+1 212 555 0100"]
    kept = sum(_phonenumbers_rule(value, region) is not None for value in values)
    assert count_valid(values, region) == kept
    assert count_valid(values, region, {}) == kept


def test_every_example_number_in_its_usual_shapes() -> None:
    # Every region's example numbers: the numbers each region's rules (shared
    # country codes, leading digits, national prefixes) are written for.
    for region, code, nsn in _EXAMPLES:
        home = "US" if region == "001" else region
        prefix = _prefixes(region, code)[-1]
        for default in (home, "US", "GB"):
            for raw in (f"+{code} {nsn}", f"{prefix}{nsn}", f"00{code}{nsn}", f"{code}{nsn}"):
                assert normalise_phone(raw, default) == _phonenumbers_rule(raw, default), (
                    raw,
                    default,
                )


_NANP_TRUNK = st.builds(
    lambda area, rest, gap: f"1{gap}{area}{gap}{rest[:3]}{gap}{rest[3:]}",
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.from_regex(r"[0-9]{7}", fullmatch=True),
    st.sampled_from(["", "-", " ", "."]),
)


@given(_NANP_TRUNK, st.sampled_from(_NANP))
def test_north_american_numbers_with_their_trunk_one(raw: str, region: str) -> None:
    assert normalise_phone(raw, region) == _phonenumbers_rule(raw, region)


@given(st.lists(_NANP_TRUNK | st.sampled_from(["+1 212 555 0100", "212 555 0100"])), _REGIONS)
def test_a_batch_of_north_american_numbers(values: list[str], region: str) -> None:
    # The batch pass takes "1" and ten digits in the regions where parse
    # reads them plainly.
    kept = sum(_phonenumbers_rule(value, region) is not None for value in values)
    assert count_valid(values, region) == kept


@pytest.fixture
def no_phonenumbers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails any call that reaches phonenumbers' parse."""

    def refuse(raw: str, region: str) -> str | None:
        raise AssertionError(f"{raw!r} in {region} reached phonenumbers")

    monkeypatch.setattr(phones, "normalise_phone_slow", refuse)
    yield


# The shapes of the import benchmark's export (bench/import_bench.py) that
# once fell to phonenumbers, at 30-130 us a number.
_EXPORT_SHAPES = [
    "1-212-555-0100",
    "+44 20 7946 0123",
    "+44 (0)20 7946 0123",
    "020 7946 0123",
    "+49 30 12340123",
    "030 12340123",
    "0049 30 12340123",
    "+33 1 42 68 01 23",
    "01 42 68 01 23",
    "011 44 20 7946 0123",
]


@pytest.mark.parametrize("region", ["US", "CA", "GB", "DE"])
@pytest.mark.usefixtures("no_phonenumbers")
def test_the_exports_shapes_are_decided_without_phonenumbers(region: str) -> None:
    expected = [_phonenumbers_rule(raw, region) for raw in _EXPORT_SHAPES]
    assert [normalise_phone(raw, region) for raw in _EXPORT_SHAPES] == expected
    assert count_valid(_EXPORT_SHAPES, region) == sum(e is not None for e in expected)
    if region == "US":
        assert expected == [
            "+12125550100",
            "+442079460123",
            "+442079460123",
            None,
            "+493012340123",
            None,
            None,
            "+33142680123",
            None,
            "+442079460123",
        ]


def test_a_value_too_long_for_phonenumbers_is_its_answer() -> None:
    # phonenumbers refuses input over 250 characters whatever its digits, and
    # the retry with "+" strips the value first.
    assert _phonenumbers_rule("+1 212 555 0100" + " " * 250, "US") is None
    for raw in ["+1 212 555 0100", "1 212 555 0100", "+44 20 7946 0123", "212 555 0100"]:
        for padded in (raw + " " * 250, raw + "-" * 250, raw + " " * 234):
            expected = _phonenumbers_rule(padded, "US")
            assert normalise_phone(padded, "US") == expected
            assert count_valid([padded, raw], "US") == 1 + (expected is not None)


def test_what_the_fast_path_cannot_decide_still_gets_phonenumbers_answer() -> None:
    # Letters, extensions, a national prefix rewrite rule (Argentina's 15),
    # a "+" before no country code.
    for raw, region in [
        ("1-800-FLOWERS", "US"),
        ("+1 212 555 0100 ext. 12", "US"),
        ("011 15 1234 5678", "AR"),
        ("0 11 15 2345 6789", "AR"),
        ("+999 1234 5678", "US"),
        ("+0 212 555 0100", "US"),
    ]:
        assert normalise_phone(raw, region) == _phonenumbers_rule(raw, region)


@settings(max_examples=20)
@given(_case())
def test_the_slow_rule_agrees_on_the_same_numbers(case: tuple[str, str]) -> None:
    raw, region = case
    assert phones.normalise_phone_slow(raw, region) == _phonenumbers_rule(raw, region)
