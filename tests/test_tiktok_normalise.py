"""TikTok's identifier rules: vectors from TikTok's help pages, and computed ones."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segflow.activation.identifiers import Mapping, Skipped
from segflow.activation.tiktok.normalise import (
    NORMALISATION_VERSION,
    codes_for,
    email_hash,
    normalise_email,
    normalise_phone,
    phone_hash,
    sha256_hex,
)
from segflow.ingest import phones

# (kind, raw, default region, normalised, SHA-256, source)
VECTORS = [
    # TikTok Ads help, "How to create a Custom Audience with a customer file",
    # ID formats table: the normalised and hashed email example.
    (
        "email",
        "janedoe@gmail.com",
        "US",
        "janedoe@gmail.com",
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69",
        "tiktok",
    ),
    # Same page: INTL example +37493828222 whose published hash is of the digits
    # without the "+".
    (
        "phone",
        "+37493828222",
        "US",
        "37493828222",
        "65b7e6dcf6f4310f8d7cbfbd78289a753062fb054d6664fb9aaac5df66a422d4",
        "tiktok",
    ),
    # Computed (TikTok publishes no hash for these): its US example
    # +16577770000 written as a US user would type it.
    (
        "phone",
        "(657)777-0000",
        "US",
        "16577770000",
        "8d7bdaaf75196f351d22942fc0dd79304ffabc3eaf3339460ef9da0773e3aec2",
        "computed",
    ),
    (
        "phone",
        "+1 657 777 0000",
        "GB",
        "16577770000",
        "8d7bdaaf75196f351d22942fc0dd79304ffabc3eaf3339460ef9da0773e3aec2",
        "computed",
    ),
    # Computed: spaces anywhere removed, lower-cased (TikTok: "remove spaces, all lowercase").
    (
        "email",
        "  Jane Doe@GMAIL.com\t",
        "US",
        "janedoe@gmail.com",
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69",
        "computed",
    ),
    # Computed: no Gmail dot or +tag removal (TikTok's current page asks none).
    (
        "email",
        "Jane.Doe+ads@gmail.com",
        "US",
        "jane.doe+ads@gmail.com",
        hashlib.sha256(b"jane.doe+ads@gmail.com").hexdigest(),
        "computed",
    ),
]


@pytest.mark.parametrize(("kind", "raw", "region", "normal", "digest", "source"), VECTORS)
def test_vectors(kind: str, raw: str, region: str, normal: str, digest: str, source: str) -> None:
    if kind == "email":
        assert normalise_email(raw) == normal
        assert email_hash(raw) == digest
    else:
        assert normalise_phone(raw, region) == normal
        assert phone_hash(raw, region) == digest
    assert sha256_hex(normal) == digest


@pytest.mark.parametrize(
    "raw", ["", "   ", "not-an-email", "jane@", "@gmail.com", "jane@localhost", "a@b@c.com"]
)
def test_unusable_emails(raw: str) -> None:
    assert normalise_email(raw) is None


@pytest.mark.parametrize("raw", ["", "555-0100", "+1 555 0100", "12", "phone"])
def test_unusable_phones(raw: str) -> None:
    assert normalise_phone(raw, "US") is None


def test_blank_is_never_hashed() -> None:
    with pytest.raises(ValueError):
        sha256_hex(" ")


def test_codes_in_mapping_order_each_once_with_skips_counted() -> None:
    mapping = Mapping(email=("work", "home"), phone=("mobile", "landline"))
    skipped = Skipped()
    record: dict[str, str | None] = {
        "work": "Jane@Example.com",
        "home": " jane@example.com ",  # same address: sent once
        "mobile": "+44 20 7183 8750",
        "landline": "not a phone",
    }
    codes = codes_for(record, mapping, skipped)
    assert codes == [
        "e:" + sha256_hex("jane@example.com"),
        "p:" + sha256_hex("442071838750"),
    ]
    assert skipped.counts == Counter({"phone": 1})


def test_codes_use_the_default_region() -> None:
    mapping = Mapping(phone=("phone",), default_region="GB")
    codes = codes_for({"phone": "020 7183 8750"}, mapping, Skipped())
    assert codes == ["p:" + sha256_hex("442071838750")]


def test_empty_cells_are_neither_codes_nor_skips() -> None:
    skipped = Skipped()
    assert codes_for({"e": "", "p": None}, Mapping(email=("e",), phone=("p",)), skipped) == []
    assert not skipped.counts


def test_version_is_stored_as_an_int() -> None:
    assert NORMALISATION_VERSION == 1


@given(st.text())
def test_emails_normalise_idempotently_without_spaces_or_capitals(raw: str) -> None:
    email = normalise_email(raw)
    if email is not None:
        assert normalise_email(email) == email
        assert not any(c.isspace() for c in email)
        assert email == email.lower()


@given(st.text(alphabet="0123456789 +-()", max_size=20))
def test_phones_are_segflows_e164_without_the_plus(raw: str) -> None:
    # The reference: segflow's one phone rule, whose E.164 TikTok wants without "+".
    e164 = phones.normalise_phone(raw, "US") if raw.strip() else None
    assert normalise_phone(raw, "US") == (e164[1:] if e164 else None)
