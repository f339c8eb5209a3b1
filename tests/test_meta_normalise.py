"""Meta Custom Audience identifiers: vectors from Meta's docs, SDKs and tools, and member rows.

Sources of the vectors below (cited per row):

- [docs] Meta Marketing API, "Customer File Custom Audiences", hashing and
  normalising table:
  https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences
- [help] Meta Business Help Centre, "How to format a customer list when
  creating a custom audience" (help article 2082575038703844).
- [uploader] Meta's customer-file uploader, facebookarchive/offline-conversion-file-uploader
  at c03849938f9b: the examples of its PII schema (src/uploader/SignalsUploaderLibrary.js,
  "basic_pii_schema"), and the hashes it sent for row 1 and 3 of
  e2e-test/shared/ca-rich.csv, recorded in e2e-test/case-4-2/api.log.
- [py-sdk] facebook/facebook-python-business-sdk, facebook_business/test/unit.py
  (CustomAudienceTestCase).
- [php-sdk] facebook/facebook-php-business-sdk,
  test/FacebookAdsTest/Object/CustomAudienceNormalizers/EmailNormalizerTest.php.
"""

from __future__ import annotations

import hashlib

import pytest

from segflow.activation import identifiers
from segflow.activation.identifiers import Mapping, Skipped
from segflow.activation.meta import normalise as meta
from segflow.errors import InvalidInput

# key, raw value, member's country (for ZIP and ST), normalised value (None: not sent)
NORMALISED = [
    # [docs] EMAIL: trim leading and trailing white space, lower-case.
    (meta.EMAIL, "  Emily@Example.com ", None, "emily@example.com"),
    # [help] examples of accepted emails.
    (meta.EMAIL, "your.name@gmail.com", None, "your.name@gmail.com"),
    (meta.EMAIL, "username@hotmail.co.uk", None, "username@hotmail.co.uk"),
    # [docs] no Gmail rule: dots and "+tag" stay (Google removes both).
    (meta.EMAIL, "John.Doe+ads@GMAIL.com", None, "john.doe+ads@gmail.com"),
    # [php-sdk] EmailNormalizerTest: control characters and a trailing dot trimmed.
    (meta.EMAIL, "foo@fb.com\t\r\n\0\x0b.", None, "foo@fb.com"),
    (meta.EMAIL, "not an email", None, None),
    # [help] phone examples: with the country code, with or without punctuation.
    (meta.PHONE, "1-234-567-8910", "US", "12345678910"),
    (meta.PHONE, "12345678910", "US", "12345678910"),
    (meta.PHONE, "+44 844 412 4653", "US", "448444124653"),
    # [docs] "remove ... any leading zeroes": the 00 international prefix.
    (meta.PHONE, "0044 20 7183 8750", "US", "442071838750"),
    # [uploader] examples "1(222)333-4444" and "+12223334444": 222 is no US
    # area code, and segflow sends only numbers phonenumbers calls valid.
    (meta.PHONE, "+12223334444", "US", None),
    # [help] / [uploader] first names "John", "F.", with or without accents: "Émilie".
    (meta.FN, "John", None, "john"),
    (meta.FN, "F.", None, "f"),
    (meta.FN, "Émilie", None, "émilie"),
    # The same name typed with a combining accent (NFD) is the same name.
    (meta.FN, "E\u0301milie", None, "émilie"),
    # [uploader] last-name examples; [docs] no punctuation.
    (meta.LN, "Smith", None, "smith"),
    (meta.LN, "Jacobs-Anderson", None, "jacobsanderson"),
    (meta.LN, "O'Neil", None, "oneil"),
    # [py-sdk] test_multi_key_params: "..test.." as a last name hashes as "test".
    (meta.LN, "..test..", None, "test"),
    # [uploader] city examples; [docs] a-z only, no white space.
    (meta.CT, "Menlo Park", None, "menlopark"),
    (meta.CT, "London", None, "london"),
    # [docs] "no special characters" in a city: deleted, as Meta's tools do.
    (meta.CT, "São Paulo", None, "sopaulo"),
    (meta.CT, "東京", None, None),
    # [docs] ST: the 2-character ANSI code for US states, lower-case
    # ([uploader] examples "CA", "California", "Texas").
    (meta.ST, "CA", "US", "ca"),
    (meta.ST, "California", "US", "ca"),
    (meta.ST, "Texas", "US", "tx"),
    (meta.ST, "District of Columbia", "US", "dc"),
    # [docs] states outside the US: lower-case, no punctuation or white space.
    (meta.ST, "Île-de-France", "FR", "ledefrance"),
    (meta.ST, "Nova Scotia", "CA", "novascotia"),
    # [uploader] zip examples; [docs] first 5 digits for the US.
    (meta.ZIP, "94025", "US", "94025"),
    (meta.ZIP, "94025-3215", "US", "94025"),
    (meta.ZIP, "940253215", "US", "94025"),
    (meta.ZIP, "9402", "US", None),
    # [uploader] "L3T 5M7" (Canada); [docs] lower-case, no white space.
    (meta.ZIP, "L3T 5M7", "CA", "l3t5m7"),
    # [docs] the UK in Area/District/Sector format.
    (meta.ZIP, "SW1A 1AA", "GB", "sw1a1"),
    (meta.ZIP, "m1 1ae", "GB", "m11"),
    (meta.ZIP, "SW1A 1", "GB", "sw1a1"),
    (meta.ZIP, "75008", "FR", "75008"),
    # [uploader] country examples; [docs] ISO 3166-1 alpha-2, lower-case.
    (meta.COUNTRY, "US", None, "us"),
    (meta.COUNTRY, "GB", None, "gb"),
    (meta.COUNTRY, "FR", None, "fr"),
    (meta.COUNTRY, "United Kingdom", None, "gb"),
    (meta.COUNTRY, "Deutschland", None, "de"),
    (meta.COUNTRY, "Atlantis", None, None),
    # [py-sdk] test_extern_id_key_single: external ids as given.
    (meta.EXTERN_ID, "abc123def", None, "abc123def"),
    (meta.EXTERN_ID, " Cust-0042 ", None, "Cust-0042"),
]


def _normalise(key: str, raw: str, country: str | None) -> str | None:
    if key == meta.EMAIL:
        return meta.normalise_email(raw)
    if key == meta.PHONE:
        return meta.normalise_phone(raw, country or "US")
    if key in (meta.FN, meta.LN):
        return meta.normalise_name(raw)
    if key == meta.CT:
        return meta.normalise_city(raw)
    if key == meta.ST:
        return meta.normalise_state(raw, country)
    if key == meta.ZIP:
        return meta.normalise_postal_code(raw, country)
    if key == meta.COUNTRY:
        return meta.normalise_country(raw)
    return meta.normalise_extern_id(raw)


@pytest.mark.parametrize(("key", "raw", "country", "expected"), NORMALISED)
def test_values_normalise_as_meta_documents(
    key: str, raw: str, country: str | None, expected: str | None
) -> None:
    assert _normalise(key, raw, country) == expected


# key, raw value, member's country, SHA-256 Meta's own code sent or expects
HASHED = [
    # [uploader] ca-rich.csv row 1, as hashed in case-4-2/api.log.
    (
        meta.EMAIL,
        "qgyrncdncw_1472790966@tfbnw.net",
        "US",
        "c745194cea8081505941357dade02ab0437401755193a08fb9e977056d4759b5",
    ),
    (meta.FN, "Will", "US", "bc16f5825a9dafc8c245dc7cd93f4e671a9885035a73e6ef29c04f2d3863bfab"),
    (
        meta.LN,
        "Sidhuberg",
        "US",
        "e8a8cb5f2c5d2fd6348205b4f7526e440cfa4da5a55deebb0543ddd5c86ea7c7",
    ),
    (
        meta.CT,
        "Menlo Park",
        "US",
        "0007a3d64c01e23d5075203c5977c14e4f7e01a3fc570686fcc50b5e1dd42685",
    ),
    (meta.ZIP, "94025", "US", "b9a9cf3cd3723a2e91b7c23ecf68456e872b6e5d86e5cab7f3d45a7302da32c7"),
    (
        meta.COUNTRY,
        "US",
        "US",
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
    ),
    # [uploader] ca-rich.csv row 3.
    (
        meta.EMAIL,
        "mwsbhzruia_1472791025@tfbnw.net",
        "US",
        "221f003d1fbc59da9172d894fa65a7a9c37ecb5f7aef8471375ed5eb8578e79a",
    ),
    (meta.FN, "David", "US", "07d046d5fac12b3f82daf5035b9aae86db5adc8275ebfbf05ec83005a4a8ba3e"),
    (meta.LN, "Sorgman", "US", "c111aec7a40222945b78eda72e99d6db41997e917ac7b6ed9da2452cc4f8ae1a"),
    (
        meta.CT,
        "Washington",
        "US",
        "1865e4f9be9639fc76d7d4da8ee25eaa7421f6837accb67516937e69469ea7e4",
    ),
    (meta.ZIP, "20003", "US", "81efd660a2810b480af90cf521cac5f72ca8f1f6c3d0a2130f4e9de456097fbb"),
    # [py-sdk] test_format_params / test_multi_key_params: "  TEST " as a first
    # name and "..test.." as a last name hash as "test".
    (meta.FN, "  TEST ", None, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    (meta.LN, "..test..", None, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
]


@pytest.mark.parametrize(("key", "raw", "country", "expected"), HASHED)
def test_hashes_match_what_metas_own_code_sends(
    key: str, raw: str, country: str | None, expected: str
) -> None:
    value = _normalise(key, raw, country)
    assert value is not None
    assert meta.sha256_hex(value) == expected


def test_us_states_follow_the_docs_not_the_uploader() -> None:
    # [uploader] hashed "California" as "california" (7e8eea5c...) and
    # "District of Columbia" as "districtofcolumbia" (ad30e7e2...); the docs
    # ask for the ANSI code, so segflow sends "ca" and "dc".
    assert meta.normalise_state("California", "US") == "ca"
    assert meta.sha256_hex("california") == (
        "7e8eea5cc60980270c9ceb75ce8c087d48d726110fd3d17921f774eefd8e18d8"
    )
    assert meta.sha256_hex(meta.normalise_state("California", "US") or "") != (
        "7e8eea5cc60980270c9ceb75ce8c087d48d726110fd3d17921f774eefd8e18d8"
    )
    # Outside the US a state's name is not turned into a US code.
    assert meta.normalise_state("Georgia", "GE") == "georgia"


def test_accented_names_follow_the_docs_not_the_sdk_helper() -> None:
    # Meta's Python SDK (CustomAudienceMixin.normalize_key) deletes every
    # character outside a-zA-Z from FN and LN: "Émilie" would be sent as
    # "milie" and "Müller" as "mller". Meta's docs accept special characters
    # in UTF-8 and its help page lists "Émilie": the accented letters stay.
    sdk_style = hashlib.sha256(b"milie").hexdigest()
    ours = meta.sha256_hex(meta.normalise_name("Émilie") or "")
    assert ours == hashlib.sha256("émilie".encode()).hexdigest()
    assert ours != sdk_style
    assert meta.normalise_name("Müller") == "müller"
    assert meta.normalise_name("Zoë-Ann d'Arc") == "zoëanndarc"
    assert meta.normalise_name("Ελένη") == "ελένη"


def test_email_keeps_what_google_would_strip() -> None:
    raw = "Jane.Doe+news@googlemail.com"
    assert meta.normalise_email(raw) == "jane.doe+news@googlemail.com"
    assert identifiers.normalise_email(raw) == "janedoe@googlemail.com"


def _mapping(**changes: object) -> Mapping:
    base: dict[str, object] = {
        "email": ("email", "email2"),
        "phone": ("phone",),
        "first_name": "first",
        "last_name": "last",
        "country": "country",
        "postal_code": "zip",
    }
    base.update(changes)
    return Mapping(**base)  # type: ignore[arg-type]


COLUMNS = meta.MetaColumns(city="city", state="state")
RECORD: dict[str, str | None] = {
    "email": " Ana.Silva+shop@Gmail.com ",
    "email2": "ana@example.org",
    "phone": "(415) 555-2671",
    "first": "Ana-Lúcia",
    "last": "Silva",
    "country": "United States",
    "zip": "94103-1234",
    "city": "San Francisco",
    "state": "California",
}


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_member_row_follows_the_schema_with_every_field_hashed() -> None:
    mapping = _mapping()
    schema = meta.schema_for(mapping, COLUMNS, extern_id=True)
    assert schema == (
        "EMAIL",
        "EMAIL",
        "PHONE",
        "FN",
        "LN",
        "ZIP",
        "CT",
        "ST",
        "COUNTRY",
        "EXTERN_ID",
    )
    row = meta.member_row(RECORD, mapping, schema, columns=COLUMNS, key="cust-7")
    assert row == (
        _h("ana.silva+shop@gmail.com"),
        _h("ana@example.org"),
        _h("14155552671"),
        _h("analúcia"),
        _h("silva"),
        _h("94103"),
        _h("sanfrancisco"),
        _h("ca"),
        _h("us"),
        _h("cust-7"),
    )
    # Nothing raw leaves: every value is a 64-digit hex hash.
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in row)


def test_extern_id_travels_in_clear_only_when_asked() -> None:
    mapping = _mapping()
    schema = (meta.EMAIL, meta.EXTERN_ID)
    row = meta.member_row(RECORD, mapping, schema, key=" cust-7 ", hash_extern_id=False)
    assert row == (_h("ana.silva+shop@gmail.com"), "cust-7")


def test_missing_and_unusable_values_are_empty_and_counted() -> None:
    mapping = _mapping()
    schema = meta.schema_for(mapping, COLUMNS)
    record: dict[str, str | None] = {
        "email": "not-an-email",
        "email2": None,
        "phone": "555-0100",  # possible but not a valid number
        "first": "Ana",
        "last": "Silva",
        "country": "Narnia",
        "zip": "  ",
        "city": "東京",
        "state": None,
    }
    skipped = Skipped()
    row = meta.member_row(record, mapping, schema, columns=COLUMNS, skipped=skipped)
    assert row is not None
    by_key = list(zip(schema, row, strict=True))
    assert by_key == [
        ("EMAIL", ""),
        ("EMAIL", ""),
        ("PHONE", ""),
        ("FN", _h("ana")),
        ("LN", _h("silva")),
        ("ZIP", ""),
        ("CT", ""),
        ("ST", ""),
        ("COUNTRY", ""),
    ]
    assert skipped.counts == {"email": 1, "phone": 1, "country": 1, "city": 1}


def test_a_row_that_names_no_one_is_not_sent() -> None:
    mapping = _mapping()
    schema = meta.schema_for(mapping, COLUMNS)
    record: dict[str, str | None] = {"first": "Ana", "city": "Lisbon", "country": "PT"}
    assert meta.member_row(record, mapping, schema, columns=COLUMNS) is None
    # An external id alone is enough: Meta matches it against earlier uploads.
    schema = (*schema, meta.EXTERN_ID)
    row = meta.member_row(record, mapping, schema, columns=COLUMNS, key="k1")
    assert row is not None and row[-1] == _h("k1")


def test_repeated_emails_take_distinct_values_in_mapping_order() -> None:
    mapping = _mapping(email=("a", "b", "c", "d"))
    schema = meta.schema_for(mapping)
    assert schema.count(meta.EMAIL) == 3  # Meta's limit per person
    record: dict[str, str | None] = {
        "a": "X@ex.com",
        "b": "x@ex.com ",
        "c": "y@ex.com",
        "d": "z@ex",
    }
    row = meta.member_row(record, mapping, schema)
    assert row is not None
    assert row[:3] == (_h("x@ex.com"), _h("y@ex.com"), "")


def test_postal_code_and_state_use_the_datasets_region_without_a_country() -> None:
    mapping = _mapping(country=None, default_region="GB")
    schema = (meta.EMAIL, meta.ZIP, meta.ST)
    record: dict[str, str | None] = {
        "email": "a@b.co",
        "zip": "EC1A 1BB",
        "state": "Greater London",
    }
    row = meta.member_row(record, mapping, schema, columns=COLUMNS)
    assert row == (_h("a@b.co"), _h("ec1a1"), _h("greaterlondon"))


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ((), "at least one key"),
        (("EMAIL", "MADID"), "unknown Meta schema key 'MADID'"),
        (("FN", "FN"), "FN appears 2 times; at most 1"),
        (("EMAIL",) * 4, "EMAIL appears 4 times; at most 3"),
    ],
)
def test_a_schema_meta_would_refuse_is_refused_clearly(
    schema: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        meta.member_row(RECORD, _mapping(), schema)


def test_blank_values_are_never_hashed() -> None:
    with pytest.raises(ValueError, match="blank"):
        meta.sha256_hex(" ")
