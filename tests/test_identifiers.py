"""Customer Match identifier normalisation and hashing, against Google's published vectors."""

from __future__ import annotations

import dataclasses
import json

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.activation.identifiers import (
    Mapping,
    Skipped,
    codes_json,
    encode,
    identifiers_for,
    normalise_email,
    normalise_phone,
    normalise_postal_code,
    normalise_region,
    sha256_hex,
)
from segflow.ingest.phones import count_valid, normalise_phone_slow


def test_google_published_vectors() -> None:
    assert sha256_hex(normalise_email("alexz@example.com") or "") == (
        "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a"
    )
    assert sha256_hex(normalise_phone("+18005550100", "US") or "") == (
        "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"
    )


def test_text_typed_two_unicode_ways_hashes_alike() -> None:
    nfc, nfd = "Jos\u00e9", "Jose\u0301"
    assert nfc != nfd
    record = {"email": f"{nfd}@example.com", "first": nfd, "last": "Mu\u0308ller"}
    record |= {"country": "u\u0073", "zip": "94043"}
    nfd_ids = identifiers_for(record, MAPPING)
    nfc_ids = identifiers_for(
        {
            "email": f"{nfc}@example.com",
            "first": nfc,
            "last": "M\u00fcller",
            "country": "US",
            "zip": "94043",
        },
        MAPPING,
    )
    assert nfd_ids == nfc_ids
    assert nfd_ids.email_hashes == (sha256_hex("jos\u00e9@example.com"),)
    assert nfd_ids.address is not None
    assert nfd_ids.address.given_name_sha256 == sha256_hex("jos\u00e9")
    assert nfd_ids.address.family_name_sha256 == sha256_hex("m\u00fcller")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  AlexZ@Example.com ", "alexz@example.com"),
        ("Alex.Z+promo@gmail.com", "alexz@gmail.com"),
        ("a.l.e.x@GoogleMail.com", "alex@googlemail.com"),
        ("alex.z+promo@example.com", "alex.z+promo@example.com"),
        ("not-an-email", None),
        ("two@@example.com", None),
        ("a@b", None),
        ("+tag@gmail.com", None),
        ("", None),
    ],
)
def test_email_normalisation(raw: str, expected: str | None) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(800) 555-0100", "US", "+18005550100"),
        ("800.555.0100", "us", "+18005550100"),
        ("+1 800 555 0100", "GB", "+18005550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("12345", "US", None),
        ("call me", "US", None),
        # Possible but not valid: a hash that could never match (issue 16).
        ("555-0100", "US", None),
        ("+1 555 0100", "US", None),
        ("+1 555 0100", "GB", None),
        # Written with the country code but no "+" (one of Google's formatter cases).
        ("441134960987", "US", "+441134960987"),
        ("18005550100", "GB", "+18005550100"),
        ("44 113 496 0987", "us", "+441134960987"),
        ("", "US", None),
    ],
)
def test_phone_normalisation_adds_the_country_code(
    raw: str, region: str, expected: str | None
) -> None:
    assert normalise_phone(raw, region) == expected


def test_regions_and_postal_codes_are_checked_and_sent_in_clear() -> None:
    assert normalise_region(" us ") == "US"
    assert normalise_region("USA") == "US"
    assert normalise_region("XX") is None
    assert normalise_postal_code(" 94043 ") == "94043"
    assert normalise_postal_code("SW1A 1AA") == "SW1A 1AA"
    assert normalise_postal_code("94043!") is None


MAPPING = Mapping(
    email=("email",),
    phone=("phone",),
    first_name="first",
    last_name="last",
    country="country",
    postal_code="zip",
    default_region="US",
)


def test_an_address_needs_all_four_parts_and_bad_values_are_skipped_and_counted() -> None:
    skipped = Skipped()
    full = identifiers_for(
        {
            "email": "Alex.Z@gmail.com",
            "phone": "(415) 555-0100",
            "first": " Alex ",
            "last": "Zed",
            "country": "us",
            "zip": "94043",
        },
        MAPPING,
        skipped,
    )
    assert full.email_hashes == (sha256_hex("alexz@gmail.com"),)
    assert full.phone_hashes == (sha256_hex("+14155550100"),)
    assert full.address is not None
    assert (full.address.given_name_sha256, full.address.region_code) == (sha256_hex("alex"), "US")
    partial = identifiers_for(
        {"email": "nope", "phone": "12", "first": "Alex", "last": "Zed", "country": "US"},
        MAPPING,
        skipped,
    )
    assert partial.address is None and not partial
    bad_region = identifiers_for(
        {"first": "A", "last": "Z", "country": "Narnia", "zip": "1"}, MAPPING, skipped
    )
    assert bad_region.address is None
    assert dict(skipped.counts) == {"email": 1, "phone": 1, "address": 1}


_names = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() not in ("", "US", "94043"))


@given(st.emails(), _names, _names)
def test_no_raw_value_survives_into_the_identifiers(email: str, first: str, last: str) -> None:
    record = {"email": email, "first": first, "last": last, "country": "US", "zip": "94043"}
    result = identifiers_for(record, MAPPING)
    sent = [v for v in dataclasses.astuple(result) if v is not None]
    flat = []
    for value in sent:
        flat.extend(value if isinstance(value, tuple) else [value])
    for raw in (email, first, last, email.lower(), first.strip().lower(), last.strip().lower()):
        assert raw not in flat
    for value in flat:
        assert value in ("US", "94043") or len(value) == 64


@settings(deadline=None)  # the first country name looked up loads the translations
@given(
    st.emails(),
    _names,
    _names,
    st.sampled_from(["US", "de", "United Kingdom", "Deutschland"]) | st.text(max_size=20),
    st.from_regex(r"[A-Za-z0-9 -]{1,16}", fullmatch=True) | st.text(max_size=20),
)
def test_stored_codes_are_their_json(
    email: str, first: str, last: str, country: str, postal: str
) -> None:
    # `sent` is written without the JSON encoder: whatever a record holds,
    # the codes must read back as they were encoded.
    record = {"email": email, "first": first, "last": last, "country": country, "zip": postal}
    codes = encode(identifiers_for(record, MAPPING))
    assert codes_json(codes) == json.dumps(codes)
    assert json.loads(codes_json(codes)) == codes


@st.composite
def _written_phone(draw: st.DrawFn) -> str:
    """Phone numbers as people type them: digits, separators, an optional +."""
    digits = draw(
        st.text("0123456789", min_size=5, max_size=13)
        | st.from_regex(r"[2-9][0-9]{9}", fullmatch=True)
    )
    if draw(st.booleans()):
        digits = draw(st.sampled_from(["1", "+1", "+", "+44", "001"])) + digits
    out = []
    for ch in digits:
        out.append(ch)
        if draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "(", ")", "/"])))
    return "".join(out)


def _phonenumbers_rule(raw: str, region: str) -> str | None:
    """The rule by phonenumbers alone, spelled out here apart from the code under test."""
    for text, default in ((raw, region.upper()), ("+" + raw.strip(), None)):
        if default is None and "+" in raw:
            break
        try:
            number = phonenumbers.parse(text, default)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return None


@given(
    _written_phone(),
    st.sampled_from(["US", "CA", "GB", "DE", "us", "JM", "PR", "BM", "AG", "DO"]),
)
def test_the_phone_fast_path_agrees_with_phonenumbers(raw: str, region: str) -> None:
    """Fast path, slow path and phonenumbers' own validity agree on every number."""
    result = normalise_phone(raw, region)
    assert result == normalise_phone_slow(raw, region) == _phonenumbers_rule(raw, region)
    if result is not None:
        assert phonenumbers.is_valid_number(phonenumbers.parse(result))


_NANP_AREAS = ["201", "212", "268", "441", "555", "787", "800", "809", "876", "900", "939"]


@given(st.sampled_from(_NANP_AREAS) | st.from_regex(r"[2-9][0-9]{2}", fullmatch=True))
def test_the_north_american_validity_pattern_is_phonenumbers(area: str) -> None:
    """Every exchange of an area code (Caribbean ones have their own region rules)."""
    for exchange in range(200, 1000, 7):
        national = f"{area}{exchange}0123"
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(national))
        expected = "+1" + national if phonenumbers.is_valid_number(number) else None
        assert normalise_phone("+1" + national, "GB") == expected


@given(
    st.lists(
        _written_phone() | st.sampled_from(["", " ", "555-0100", "n/a", "+1\x00212"]) | st.text(),
        max_size=40,
    ),
    st.sampled_from(["US", "CA", "GB", "DE", "JM"]),
)
def test_counting_a_batch_of_phones_agrees_with_each_phone(values: list[str], region: str) -> None:
    # The import's quality summary counts a whole batch at once; it must say
    # what the sync pass will do with each value.
    kept = sum(1 for value in values if normalise_phone(value, region) is not None)
    assert count_valid(values, region) == kept
    assert count_valid(values + values, region) == 2 * kept
    remembered: dict[str, bool] = {}  # as one import's batches share it
    assert [count_valid(values, region, remembered) for _ in range(2)] == [kept, kept]
