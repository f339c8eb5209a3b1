"""Google's own formatter test cases, as data, against segflow's normaliser.

The cases are those of the official ``googleads/data-manager-python``
repository's formatter tests (``tests/formatter_test.py``, for its
``google.ads.datamanager_util.Formatter``), written down here as
(input, expected, note) rows: ``expected`` is the normalised value Google's
formatter gives, or ``REFUSED`` where it raises. Where segflow deliberately
answers otherwise the row says so in its note and asserts segflow's answer;
those rows are marked ``differs``.

Google's formatter takes a phone number without a region: it keeps the
digits and puts a "+" in front. segflow parses with the dataset's default
region (``US`` unless the mapping says otherwise) and keeps only numbers
``phonenumbers`` calls valid, so the phone rows are asserted for the default
region and, where the number carries its country code, for others too.
"""

from __future__ import annotations

import base64

import pytest

from segflow.activation.identifiers import (
    normalise_email,
    normalise_name,
    normalise_phone,
    normalise_postal_code,
    normalise_region,
    sha256_hex,
)
from segflow.ingest.phones import DEFAULT_REGION

REFUSED = None

# (input, expected, note)
Case = tuple[str | None, str | None, str]

EMAILS: list[Case] = [
    ("QuinnY@example.com", "quinny@example.com", "case is normalised in the name"),
    ("QuinnY@EXAMPLE.com", "quinny@example.com", "case is normalised in the domain"),
    (
        "Jefferson.Loves.hiking@gmail.com",
        "jeffersonloveshiking@gmail.com",
        "periods are stripped from a gmail.com address",
    ),
    (
        "Jefferson.LOVES.Hiking@googlemail.com",
        "jeffersonloveshiking@googlemail.com",
        "periods are stripped from a googlemail.com address",
    ),
    ("alexz@example.com", "alexz@example.com", "process_email_address variant"),
    ("  alexz@example.com", "alexz@example.com", "leading whitespace is trimmed"),
    ("  ALEXZ@example.com   ", "alexz@example.com", "trimmed and lower-cased"),
    ("  alexz@EXAMPLE.com   ", "alexz@example.com", "trimmed, domain lower-cased"),
    (None, REFUSED, "None"),
    ("", REFUSED, "empty"),
    ("  ", REFUSED, "blank"),
    ("quinn", REFUSED, "not of the form user@domain"),
    (" @googlemail.com", REFUSED, "empty user"),
    (" ...@gmail.com", REFUSED, "gmail user empty once its periods are removed"),
]

# Every one carries its country code (some without the "+"), so the answer
# must not depend on the dataset's default region, except where a row of
# PHONE_DIFFERENCES says how it does.
PHONES: list[Case] = [
    ("1 800 555 0100", "+18005550100", "country code without '+', spaces"),
    ("18005550100", "+18005550100", "country code without '+'"),
    ("+1 800-555-0100", "+18005550100", "'+', spaces and dashes"),
    ("441134960987", "+441134960987", "UK number, country code without '+'"),
    ("+441134960987", "+441134960987", "UK number in E.164"),
    ("+44-113-496-0987", "+441134960987", "UK number with dashes"),
    ("+18005550100", "+18005550100", "process_phone_number variant"),
    ("   +1-800-555-0100", "+18005550100", "leading whitespace is trimmed"),
    ("1-800-555-0100   ", "+18005550100", "trailing whitespace is trimmed"),
    (None, REFUSED, "None"),
    ("", REFUSED, "empty"),
    ("  ", REFUSED, "blank"),
    (" +A BCD EFG ", REFUSED, "no digits"),
]

# (input, default region, Google's formatter answer, segflow's answer, why).
PHONE_DIFFERENCES: list[tuple[str, str, str, str | None, str]] = [
    (
        "555-0100",
        "US",
        "+5550100",
        REFUSED,
        "differs: no country code and too short for any region; Google's formatter "
        "hashes +5550100, a number that cannot match anyone, segflow refuses it",
    ),
    (
        "12345",
        "US",
        "+12345",
        REFUSED,
        "differs: not a valid number anywhere; segflow validates phones",
    ),
    (
        "020 7946 0958",
        "GB",
        "+02079460958",
        "+442079460958",
        "differs: a national number; segflow places it with the dataset's default region "
        "instead of hashing the digits as they are",
    ),
    (
        "020 7946 0958",
        "US",
        "+02079460958",
        REFUSED,
        "differs: a GB national number in a US dataset cannot be placed: refused, not hashed wrong",
    ),
    (
        "18005550100",
        "DE",
        "+18005550100",
        "+4918005550100",
        "differs: without '+', the digits are also a valid German number, and segflow "
        "reads digits without '+' in the dataset's region first (a spreadsheet drops a "
        "national number's leading 0); written '+1 800 555 0100' it is the US number",
    ),
]

GIVEN_NAMES: list[Case] = [
    ("Givenname", "givenname", "lower-cased"),
    ("  GivenName  ", "givenname", "trimmed and lower-cased"),
]

FAMILY_NAMES: list[Case] = [
    ("Familyname", "familyname", "lower-cased"),
    ("  FamilyName ", "familyname", "trimmed and lower-cased"),
]

REGIONS: list[Case] = [
    (" us", "US", "trimmed and upper-cased"),
    (" uS ", "US", "trimmed and upper-cased"),
]

POSTAL_CODES: list[Case] = [
    ("1229-076", "1229-076", "kept as written"),
    (" 1229-076  ", "1229-076", "trimmed"),
]

# (normalised value, hex SHA-256, Base64 SHA-256): segflow sends HEX; the
# Base64 column checks it is the same digest Google's Base64 cases encode.
HASHES: list[tuple[str, str, str | None]] = [
    (
        "alexz@example.com",
        "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a",
        "UJ6TMBm7KFoTSpM0uLtnnf950M4CPVKa9L10TUe0/Yo=",
    ),
    (
        "+18005550100",
        "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30",
        "+09zpuxf23B31WTN0iw1VLQ85JFoVQw7EsVHt4xRezA=",
    ),
    (
        "givenname",
        "128a07bfe2df877c52076e60d7774cf5baaa046c5a6c48daf30ff43ecca2f814",
        "EooHv+Lfh3xSB25g13dM9bqqBGxabEja8w/0Psyi+BQ=",
    ),
    (
        "familyname",
        "77762c287e61ce065bee5c15464012c6fbe088398b8057627d5577249430d574",
        "d3YsKH5hzgZb7lwVRkASxvvgiDmLgFdifVV3JJQw1XQ=",
    ),
]

# Google's hash_string refuses these rather than hash them.
UNHASHABLE = ["", " ", "   "]


def _ids(cases: list[Case]) -> list[str]:
    return [f"{raw!r}: {note}" for raw, _, note in cases]


@pytest.mark.parametrize(("raw", "expected", "note"), EMAILS, ids=_ids(EMAILS))
def test_email(raw: str | None, expected: str | None, note: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(("raw", "expected", "note"), PHONES, ids=_ids(PHONES))
@pytest.mark.parametrize("region", [DEFAULT_REGION, "GB", "FR"])
def test_phone_with_its_country_code(
    raw: str | None, expected: str | None, note: str, region: str
) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "google", "expected", "note"),
    PHONE_DIFFERENCES,
    ids=[f"{raw!r} in {region}" for raw, region, *_ in PHONE_DIFFERENCES],
)
def test_phone_where_segflow_differs(
    raw: str, region: str, google: str, expected: str | None, note: str
) -> None:
    assert note.startswith("differs:")
    assert normalise_phone(raw, region) == expected != google


def test_a_number_read_in_the_region_is_still_the_other_when_written_with_plus() -> None:
    assert normalise_phone("+1 800 555 0100", "DE") == "+18005550100"


@pytest.mark.parametrize(("raw", "expected", "note"), GIVEN_NAMES, ids=_ids(GIVEN_NAMES))
def test_given_name(raw: str | None, expected: str | None, note: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(("raw", "expected", "note"), FAMILY_NAMES, ids=_ids(FAMILY_NAMES))
def test_family_name(raw: str | None, expected: str | None, note: str) -> None:
    assert normalise_name(raw) == expected


@pytest.mark.parametrize(("raw", "expected", "note"), REGIONS, ids=_ids(REGIONS))
def test_region(raw: str | None, expected: str | None, note: str) -> None:
    assert normalise_region(raw) == expected


@pytest.mark.parametrize(("raw", "expected", "note"), POSTAL_CODES, ids=_ids(POSTAL_CODES))
def test_postal_code(raw: str | None, expected: str | None, note: str) -> None:
    assert normalise_postal_code(raw) == expected


@pytest.mark.parametrize(("value", "hex_digest", "b64_digest"), HASHES, ids=[h[0] for h in HASHES])
def test_hash(value: str, hex_digest: str, b64_digest: str) -> None:
    assert sha256_hex(value) == hex_digest
    assert base64.b64encode(bytes.fromhex(sha256_hex(value))).decode() == b64_digest


@pytest.mark.parametrize("value", UNHASHABLE, ids=repr)
def test_blank_values_are_never_hashed(value: str) -> None:
    with pytest.raises(ValueError, match="blank"):
        sha256_hex(value)


def test_a_process_call_is_normalise_then_hash() -> None:
    # Google's process_* cases: every written variant hashes to one digest.
    for raw in ("  ALEXZ@example.com   ", "  alexz@EXAMPLE.com   "):
        assert sha256_hex(normalise_email(raw) or "x") == HASHES[0][1]
    for raw in ("   +1-800-555-0100", "1-800-555-0100   "):
        assert sha256_hex(normalise_phone(raw, DEFAULT_REGION) or "x") == HASHES[1][1]
    assert sha256_hex(normalise_name("  GivenName  ") or "x") == HASHES[2][1]
    assert sha256_hex(normalise_name("  FamilyName ") or "x") == HASHES[3][1]
