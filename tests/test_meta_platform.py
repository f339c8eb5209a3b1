"""Meta as a platform: a member's codes, one request's schema and rows, the settings checked."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segflow.activation.identifiers import Mapping, Skipped
from segflow.activation.meta import config, normalise
from segflow.errors import InvalidInput

MAPPING = Mapping(
    email=("Email", "Work Email"),
    phone=("Phone",),
    first_name="First",
    last_name="Last",
    country="Country",
    postal_code="Zip",
)
PLACES = normalise.MetaColumns(city="City", state="State")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_a_member_is_sent_as_each_identifier_and_one_person_code() -> None:
    record = {
        "Email": " Ann@Example.com",
        "Work Email": "ann@example.com",  # the same address: sent once
        "Phone": "(415) 555-0100",
        "First": "Ann",
        "Last": "Lee",
        "Country": "US",
        "Zip": "94025-1234",
        "City": "Menlo Park",
        "State": "California",
    }
    codes = normalise.member_codes(record, MAPPING, columns=PLACES, key="C-1")
    person = ":".join(sha(v) for v in ("ann", "lee", "94025", "menlopark", "ca", "us"))
    assert codes == [
        f"e:{sha('ann@example.com')}",
        f"p:{sha('14155550100')}",
        f"a:{person}",
        f"x:{sha('C-1')}",
    ]


def test_missing_person_keys_stay_empty_in_the_person_code() -> None:
    codes = normalise.member_codes({"Email": "a@b.co", "Last": "Lee"}, MAPPING)
    assert codes[0] == f"e:{sha('a@b.co')}"
    assert codes[1] == "a::" + sha("lee") + "::::"


def test_a_member_naming_no_one_has_no_codes() -> None:
    skipped = Skipped()
    assert (
        normalise.member_codes({"Email": "not an email", "First": "Ann"}, MAPPING, skipped=skipped)
        == []
    )
    assert skipped.counts["email"] == 1


def test_request_rows_fill_one_schema_for_members_of_different_shapes() -> None:
    one = normalise.member_codes(
        {"Email": "a@b.co", "Work Email": "c@d.co", "Phone": "+44 20 7183 8750"}, MAPPING
    )
    two = normalise.member_codes({"First": "Bo", "Last": "Li", "Country": "FR"}, MAPPING)
    three = normalise.member_codes({"Phone": "+1 415 555 0100"}, MAPPING)
    schema, rows = normalise.request_rows([one, two, three])
    assert schema == [
        "EMAIL", "EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY"
    ]  # fmt: skip
    assert rows[0] == [sha("a@b.co"), sha("c@d.co"), sha("442071838750"), "", "", "", "", "", ""]
    assert rows[1] == ["", "", "", sha("bo"), sha("li"), "", "", "", sha("fr")]
    assert rows[2][2] == sha("14155550100") and set(rows[2][3:]) == {""}


def test_extern_id_only_when_a_member_carries_one() -> None:
    with_key = normalise.member_codes({"Email": "a@b.co"}, MAPPING, key="K1")
    schema, rows = normalise.request_rows([with_key, ["e:" + sha("x@y.co")]])
    assert schema == ["EMAIL", "EXTERN_ID"]
    assert rows == [[sha("a@b.co"), sha("K1")], [sha("x@y.co"), ""]]


_hex = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_member = st.tuples(
    st.lists(_hex, max_size=3, unique=True),
    st.lists(_hex, max_size=3, unique=True),
    st.none() | st.lists(st.just("") | _hex, min_size=6, max_size=6),
    st.none() | _hex,
)


@given(st.lists(_member, min_size=1, max_size=20))
def test_every_row_says_exactly_what_its_member_codes_say(members: list) -> None:
    codes = []
    for emails, phones, person, extern in members:
        c = [f"e:{h}" for h in emails] + [f"p:{h}" for h in phones]
        if person is not None and any(person):
            c.append("a:" + ":".join(person))
        if extern is not None:
            c.append(f"x:{extern}")
        codes.append(c)
    schema, rows = normalise.request_rows(codes)
    assert all(len(row) == len(schema) for row in rows)
    for member, row in zip(codes, rows, strict=True):
        by_key: dict[str, list[str]] = {}
        for key, value in zip(schema, row, strict=True):
            if value:
                by_key.setdefault(key, []).append(value)
        assert by_key.get("EMAIL", []) == [c[2:] for c in member if c[0] == "e"]
        assert by_key.get("PHONE", []) == [c[2:] for c in member if c[0] == "p"]
        assert by_key.get("EXTERN_ID", []) == [c[2:] for c in member if c[0] == "x"]
        person = next((c[2:].split(":") for c in member if c[0] == "a"), [""] * 6)
        assert [v for k in normalise.PERSON_KEYS for v in by_key.get(k, [])] == [
            v for v in person if v
        ]


def test_city_and_state_columns_are_found_by_their_header_names() -> None:
    found = normalise.detect_columns(["Email", "Town", "State/Province", "City"])
    assert found == normalise.MetaColumns(city="Town", state="State/Province")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"audience_id": "1"}, "needs ad_account_id"),
        ({"ad_account_id": "acct_1", "audience_id": "1"}, "act_1234567890"),
        ({"ad_account_id": "act_1"}, "needs audience_id, or audience_name"),
        ({"ad_account_id": "1", "audience_id": "2", "audience_name": "x"}, "not both"),
        ({"ad_account_id": "1", "audience_name": "VIP"}, "USER_PROVIDED_ONLY"),
        ({"ad_account_id": "1", "audience_id": "12a"}, "numeric audience id"),
        ({"ad_account_id": "1", "audience_id": "2", "ad_user_data": "granted"}, "ad_user_data"),
        ({"ad_account_id": "1", "audience_id": "2", "limited_data_use": "maybe"}, "true or false"),
    ],
)
def test_settings_meta_would_refuse_are_refused_with_what_is_wrong(raw: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        config.check_config(raw)


def test_settings_are_stored_in_one_form() -> None:
    checked = config.check_config(
        {
            "ad_account_id": " act_123 ",
            "audience_name": "VIP",
            "customer_file_source": "user_provided_only",
            "limited_data_use": "yes",
        }
    )
    assert checked == {
        "ad_account_id": "123",
        "audience_name": "VIP",
        "customer_file_source": "USER_PROVIDED_ONLY",
        "limited_data_use": True,
        "send_extern_id": False,
        "terms_accepted": False,
    }


def test_a_bad_token_is_refused_without_being_echoed() -> None:
    with pytest.raises(InvalidInput) as refused:
        config.check_secret({"access_token": "EAAB secret-part"})
    assert "secret-part" not in str(refused.value)
    with pytest.raises(InvalidInput, match="needs an access token"):
        config.check_secret(None)
    assert config.describe_token("EAABtoken")["fingerprint"] == sha("EAABtoken")[:12]
