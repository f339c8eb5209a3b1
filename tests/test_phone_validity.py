"""Phones phonenumbers does not call valid: counted invalid at import, never sent (issue 16)."""

from __future__ import annotations

from segflow.activation import identifiers as ids
from segflow.activation import links, mapping
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database
from segflow.demo import HEADER
from tests.helpers import do_import
from tests.sync_helpers import LIST_ID, NOW, customers, run_sync, setup_link, with_spend


def _phone_quality(summary: dict[str, object]) -> dict[str, object]:
    identifiers = summary["identifiers"]
    assert isinstance(identifiers, list)
    (phone,) = [q for q in identifiers if q["kind"] == "phone"]
    return dict(phone)


def test_the_import_counts_possible_but_invalid_phones_as_invalid(db: Database) -> None:
    data = b"id,phone\n1,555-0100\n2,+1 555 0100\n3,(415) 555-0100\n4,441134960987\n"
    quality = _phone_quality(do_import(db, data))
    assert (quality["non_empty"], quality["valid"], quality["invalid"]) == (4, 2, 2)


def test_the_import_counts_phones_in_the_datasets_default_region(db: Database) -> None:
    data = b"id,phone\n1,020 7946 0958\n2,020 7946 0959\n3,(415) 555-0100\n"
    assert _phone_quality(do_import(db, data))["valid"] == 1  # US: only the 415 number
    mapping.set_mapping(db, "people", {"default_region": "GB"}, NOW)
    assert _phone_quality(do_import(db, data))["valid"] == 2  # GB: the two 020 numbers


def test_sync_skips_invalid_phones_and_says_why(db: Database, fake: FakeDataManager) -> None:
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=30)
    rows = [with_spend(r, 500) for r in customers(3)]
    email, phone = HEADER.index("email"), HEADER.index("phone")
    only_bad_phone = list(rows[0])
    only_bad_phone[email], only_bad_phone[phone] = "", "555-0100"
    good = list(rows[1])
    good[phone] = "+1 555 0100"  # dropped; the email still goes
    rows[0], rows[1] = tuple(only_bad_phone), tuple(good)
    link = setup_link(db, rows)
    # Only the identifiers columns that take part: no address for these rows.
    mapping.set_mapping(db, "customers", {"first_name": None}, NOW)

    assert run_sync(db, settings).ok

    failed = links.failed_members(db, link.id)
    assert [reason for _, reason in failed] == [
        "no usable identifier (phone invalid, the rest empty)"
    ]
    sent = fake.members(LIST_ID)
    assert len(sent) == 2
    email_only = (f"e:{ids.sha256_hex(ids.normalise_email(good[email]) or '')}",)
    assert email_only in sent
    never = f"p:{ids.sha256_hex('+15550100')}"
    assert not any(never in member for member in sent)


def test_a_members_reason_names_only_its_own_invalid_values(
    db: Database, fake: FakeDataManager
) -> None:
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=30)
    rows = [list(with_spend(r, 500)) for r in customers(2)]
    email, phone = HEADER.index("email"), HEADER.index("phone")
    rows[0][phone] = "555-0100"  # invalid, but its email goes
    rows[1][email], rows[1][phone] = "", ""
    link = setup_link(db, [tuple(r) for r in rows])
    mapping.set_mapping(db, "customers", {"first_name": None}, NOW)

    assert run_sync(db, settings).ok

    failed = links.failed_members(db, link.id)
    assert [reason for _, reason in failed] == [
        "no usable identifier (email, phone and address are empty)"
    ]
    assert len(fake.members(LIST_ID)) == 1
