"""Countries are ISO 3166-1 (pycountry), written as codes or names (issue 16 item 8)."""

from __future__ import annotations

import pytest

from segflow.activation import identifiers as ids
from segflow.activation import mapping
from segflow.db import Database
from segflow.errors import InvalidInput
from tests.helpers import do_import
from tests.sync_helpers import NOW

# ISO 3166-1 codes phonenumbers has no plan for, and plan regions that are not ISO 3166-1.
NO_PHONE_PLAN = ["AQ", "BV", "GS", "HM", "PN", "TF", "UM"]
NOT_ISO = ["AC", "TA", "XK"]


@pytest.mark.parametrize("code", NO_PHONE_PLAN)
def test_every_iso_country_is_a_country(code: str) -> None:
    assert ids.normalise_region(code.lower()) == code


@pytest.mark.parametrize("code", NOT_ISO)
def test_phone_plan_regions_outside_iso_3166_are_not_countries(code: str) -> None:
    assert ids.normalise_region(code) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("UK", "GB"),
        (" uk ", "GB"),
        ("United States", "US"),
        ("united kingdom", "GB"),
        ("Germany", "DE"),
        ("Deutschland", "DE"),  # pycountry's German translation
        ("Allemagne", "DE"),
        ("DEU", "DE"),
        ("Narnia", None),
        ("", None),
    ],
)
def test_countries_are_accepted_by_code_and_by_name(raw: str, expected: str | None) -> None:
    assert ids.normalise_region(raw) == expected


def test_an_address_country_written_as_a_name_is_sent_as_its_code() -> None:
    m = ids.Mapping(first_name="f", last_name="l", country="c", postal_code="z")
    found = ids.identifiers_for({"f": "Ann", "l": "Lee", "c": "Deutschland", "z": "10115"}, m)
    assert found.address is not None and found.address.region_code == "DE"
    assert ids.encode(found)[0].endswith(":DE:10115")


def test_the_default_phone_region_takes_names_and_uk(db: Database) -> None:
    do_import(db, b"id,phone\n1,020 7946 0958\n")
    assert mapping.set_mapping(db, "people", {"default_region": "UK"}, NOW).default_region == "GB"
    changed = mapping.set_mapping(db, "people", {"default_region": "Deutschland"}, NOW)
    assert changed.default_region == "DE"
    assert mapping.show_mapping(db, "people")[0].default_region == "DE"


@pytest.mark.parametrize("code", ["AQ", "BV"])
def test_a_country_without_a_phone_plan_cannot_be_the_phone_region(db: Database, code: str) -> None:
    do_import(db, b"id,phone\n1,020 7946 0958\n")
    with pytest.raises(InvalidInput, match=f"default region {code} has no telephone numbering"):
        mapping.set_mapping(db, "people", {"default_region": code}, NOW)
    with pytest.raises(InvalidInput, match="default region must be a country.*'XK'"):
        mapping.set_mapping(db, "people", {"default_region": "XK"}, NOW)
    assert mapping.show_mapping(db, "people")[0].default_region == "US"
