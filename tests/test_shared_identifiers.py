"""Members of one list that share an email or a phone (issue 17 item 7).

Google removes every user a removed identifier matches. So when two members
share an email, removing one must leave that email out of the remove, or the
other loses its match. These tests look at what the removal requests carry
and at what a list matching by any identifier, as Google's does, holds after
every request the fake received.
"""

from __future__ import annotations

import io
from typing import Any

import sqlalchemy as sa

from segflow import engine, ingest, segments
from segflow.activation import identifiers as ids
from segflow.activation import links
from segflow.activation.fake import FakeDataManager, member_key
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import upgrade
from segflow.db.schema import link_hashes, link_members
from tests.sync_helpers import ACCOUNT, LIST_ID, NOW, csv_bytes, google_destination, run_sync

HEADER = ("id", "email", "phone", "spend")
SHARED = "family@example.com"
BIG = {"conditions": [{"field": "spend", "operator": "greater_than", "value": 100}]}


def _e(value: str) -> str:
    return f"e:{ids.sha256_hex(value)}"


def _p(value: str) -> str:
    return f"p:{ids.sha256_hex(value)}"


def _import(db: Database, rows: list[tuple[str, ...]]) -> None:
    ingest.import_csv(
        db,
        io.BytesIO(csv_bytes(rows, HEADER)),
        ingest.ImportOptions(dataset="customers", key="id"),
        source="crm.csv",
        now=NOW,
    )
    engine.tick(db, NOW)


def _linked(db: Database, fake: FakeDataManager, rows: list[tuple[str, ...]]) -> Settings:
    _import(db, rows)
    segments.create_segment(db, name="big", dataset="customers", rules_json=BIG, now=NOW)
    google_destination(db)
    links.link(db, "big", "ads", NOW)
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=5)
    run_sync(db, settings)
    return settings


def _as_google_holds(fake: FakeDataManager) -> set[tuple[str, ...]]:
    """The list after every accepted request, matching members by any identifier."""
    held: set[tuple[str, ...]] = set()
    for received in fake.received:
        if received.outcome != "OK":
            continue
        for member in received.request.audience_members:
            key = member_key(member)
            if received.method == "IngestAudienceMembers":
                held.add(key)
            else:
                held = {entry for entry in held if not set(entry) & set(key)}
    return held


def _removed_codes(fake: FakeDataManager) -> list[tuple[str, ...]]:
    return [
        member_key(m) for r in fake.requests("RemoveAudienceMembers") for m in r.audience_members
    ]


def _codes_held(db: Database) -> dict[int, set[int]]:
    """The keys of the codes each member holds, as the table has them."""
    with db.read() as conn:
        rows: list[Any] = conn.execute(sa.select(link_hashes.c.rid, link_hashes.c.h)).all()
    out: dict[int, set[int]] = {}
    for rid, key in rows:
        out.setdefault(rid, set()).add(key)
    return out


def _keys(codes: tuple[str, ...]) -> set[int]:
    return {ids.code_key(c) for c in codes}


def test_removing_a_member_keeps_the_email_another_member_shares(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [
        ("1", SHARED, "(415) 555-0101", "500"),
        ("2", SHARED, "(415) 555-0102", "500"),
        ("3", "solo@example.com", "", "500"),
    ]
    settings = _linked(db, fake, rows)
    ann = tuple(sorted([_e(SHARED), _p("+14155550101")]))
    bo = tuple(sorted([_e(SHARED), _p("+14155550102")]))
    solo = (_e("solo@example.com"),)
    assert fake.members(LIST_ID) == {ann, bo, solo}
    assert _codes_held(db) == {1: _keys(ann), 2: _keys(bo), 3: _keys(solo)}

    _import(db, [("1", SHARED, "(415) 555-0101", "5"), *rows[1:]])  # member 1 leaves
    run_sync(db, settings)

    assert _removed_codes(fake) == [(_p("+14155550101"),)]
    assert _as_google_holds(fake) == {bo, solo}
    assert bo in fake.members(LIST_ID)
    assert _codes_held(db) == {2: _keys(bo), 3: _keys(solo)}


def test_a_member_whose_identifiers_are_all_shared_leaves_without_a_request(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [("1", SHARED, "", "500"), ("2", SHARED, "(415) 555-0102", "500")]
    settings = _linked(db, fake, rows)
    _import(db, [("1", SHARED, "", "5"), rows[1]])
    report = run_sync(db, settings)

    assert list(fake.requests("RemoveAudienceMembers")) == []
    assert report.outcomes[0].error is None
    bo = tuple(sorted([_e(SHARED), _p("+14155550102")]))
    held = _as_google_holds(fake)
    # Member 1's entry is member 2's email now: nothing held is not member 2's.
    assert bo in held and set().union(*held) == set(bo)
    with db.read() as conn:
        left = conn.execute(sa.select(link_members.c.rid, link_members.c.pending)).all()
    assert [tuple(r) for r in left] == [(2, 0)]  # member 1 is settled, nothing pending


def test_a_changed_phone_removes_the_old_phone_but_not_the_shared_email(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [("1", SHARED, "(415) 555-0101", "500"), ("2", SHARED, "(415) 555-0102", "500")]
    settings = _linked(db, fake, rows)
    _import(db, [("1", SHARED, "(415) 555-0109", "500"), rows[1]])
    run_sync(db, settings)

    assert _removed_codes(fake) == [(_p("+14155550101"),)]
    assert _as_google_holds(fake) == {
        tuple(sorted([_e(SHARED), _p("+14155550109")])),
        tuple(sorted([_e(SHARED), _p("+14155550102")])),
    }
    assert _codes_held(db)[1] == _keys((_e(SHARED), _p("+14155550109")))


def test_once_the_sharer_has_left_the_shared_email_is_removed_with_the_last(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [("1", SHARED, "(415) 555-0101", "500"), ("2", SHARED, "(415) 555-0102", "500")]
    settings = _linked(db, fake, rows)
    _import(db, [("1", SHARED, "(415) 555-0101", "5"), rows[1]])
    run_sync(db, settings)
    _import(db, [("1", SHARED, "(415) 555-0101", "5"), ("2", SHARED, "(415) 555-0102", "5")])
    run_sync(db, settings)

    assert _removed_codes(fake)[-1] == tuple(sorted([_e(SHARED), _p("+14155550102")]))
    assert _as_google_holds(fake) == set()
    assert _codes_held(db) == {}


def test_a_code_a_member_no_longer_holds_does_not_keep_a_leaver_on_the_list(
    db: Database, fake: FakeDataManager
) -> None:
    # Member 1's first email is refused with its whole request: its `sent` is
    # cleared, its rows for that email stay. Once it holds another email, the
    # old one must not count as its when member 3, who has it, leaves.
    old, new = "old@example.com", "new@example.com"
    fake.refuse = {_e(old)}
    settings = _linked(db, fake, [("1", old, "", "500"), ("2", "two@example.com", "", "500")])
    with db.read() as conn:
        (rejected,) = conn.execute(
            sa.select(link_members.c.rejected).where(link_members.c.rid == 1)
        ).one()
    assert rejected is not None
    fake.refuse = set()
    _import(db, [("1", new, "", "5"), ("2", "two@example.com", "", "500")])
    run_sync(db, settings)  # member 1 leaves (nothing was held)...
    _import(
        db,
        [("1", new, "", "500"), ("2", "two@example.com", "", "500"), ("3", old, "", "500")],
    )
    run_sync(db, settings)  # ...and comes back with its new email; member 3 has the old one
    assert (_e(old),) in fake.members(LIST_ID)

    _import(
        db,
        [("1", new, "", "500"), ("2", "two@example.com", "", "500"), ("3", old, "", "5")],
    )
    run_sync(db, settings)

    assert _removed_codes(fake) == [(_e(old),)]
    assert _as_google_holds(fake) == {(_e(new),), (_e("two@example.com"),)}


def test_members_sent_before_the_upgrade_keep_a_shared_email(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [
        ("1", SHARED, "(415) 555-0101", "500"),
        ("2", SHARED, "(415) 555-0102", "500"),
    ]
    settings = _linked(db, fake, rows)
    held_before = _codes_held(db)
    # As a database whose members were sent before migration 8 existed.
    with db.write() as conn:
        conn.exec_driver_sql("DROP TABLE sf_link_hashes")
        conn.exec_driver_sql("DELETE FROM sf_schema_migrations WHERE version = 8")
    _upgrade_keeps_the_shared_email(db, fake, settings, 8, held_before)

    bo = tuple(sorted([_e(SHARED), _p("+14155550102")]))
    assert _as_google_holds(fake) == {bo}


def _upgrade_keeps_the_shared_email(
    db: Database, fake: FakeDataManager, settings: Settings, version: int, held: dict[int, set[int]]
) -> None:
    """Migration ``version`` runs alone and keeps the codes held, which still keep the
    email member 2 shares out of member 1's remove."""
    assert [m.version for m in upgrade(db)] == [version]
    assert _codes_held(db) == held

    _import(db, [("1", SHARED, "(415) 555-0101", "5"), ("2", SHARED, "(415) 555-0102", "500")])
    run_sync(db, settings)
    assert _removed_codes(fake) == [(_p("+14155550101"),)]


def _held_by_link(db: Database) -> dict[int, int]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(link_hashes.c.link_id, sa.func.count()).group_by(link_hashes.c.link_id)
        ).all()
    return {link_id: count for link_id, count in rows}


def test_a_links_held_codes_go_with_it_and_no_other_links(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [("1", SHARED, "(415) 555-0101", "500"), ("2", "solo@example.com", "", "500")]
    settings = _linked(db, fake, rows)
    fake.add_list(ACCOUNT, "999")
    google_destination(db, "ads2", list_id="999")
    links.link(db, "big", "ads2", NOW)
    run_sync(db, settings)
    first, second = sorted(_held_by_link(db))
    assert _held_by_link(db) == {first: 3, second: 3}

    links.unlink(db, "big", "ads")
    assert _held_by_link(db) == {second: 3}
    # However a link row goes, its codes go with it (a trigger, not a foreign key).
    with db.write() as conn:
        conn.exec_driver_sql(f"DELETE FROM sf_links WHERE id = {second}")
    assert _held_by_link(db) == {}


def test_codes_held_before_migration_12_are_kept_and_go_with_their_link(
    db: Database, fake: FakeDataManager
) -> None:
    rows = [("1", SHARED, "(415) 555-0101", "500"), ("2", SHARED, "(415) 555-0102", "500")]
    settings = _linked(db, fake, rows)
    held_before = _codes_held(db)
    # As a database migrated to 11: the table with its foreign key, no trigger.
    with db.write() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER sf_links_drop_hashes" + (" ON sf_links" if db.is_postgres else "")
        )
        conn.exec_driver_sql("ALTER TABLE sf_link_hashes RENAME TO sf_link_hashes_11")
        conn.exec_driver_sql(
            "CREATE TABLE sf_link_hashes (link_id INTEGER NOT NULL REFERENCES sf_links (id)"
            " ON DELETE CASCADE, h BIGINT NOT NULL, rid BIGINT NOT NULL,"
            " PRIMARY KEY (link_id, h, rid))" + ("" if db.is_postgres else " WITHOUT ROWID")
        )
        conn.exec_driver_sql("INSERT INTO sf_link_hashes SELECT * FROM sf_link_hashes_11")
        conn.exec_driver_sql("DROP TABLE sf_link_hashes_11")
        conn.exec_driver_sql("DELETE FROM sf_schema_migrations WHERE version = 12")
    _upgrade_keeps_the_shared_email(db, fake, settings, 12, held_before)
    links.unlink(db, "big", "ads")
    assert _codes_held(db) == {}
