"""A segment kept in a TikTok audience, and one segment in Google, Meta and TikTok at once.

The real TikTok client and sender talk to the local fake over HTTP; the
audience is held to the segment by TikTok's own hashing rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from segflow import segments
from segflow.activation import destinations, links
from segflow.activation.fake import FakeDataManager
from segflow.activation.fake_meta import FakeMeta
from segflow.activation.fake_tiktok import FakeTikTok
from segflow.activation.meta import audiences
from segflow.activation.meta import normalise as meta_normalise
from segflow.activation.tiktok import normalise
from segflow.activation.tiktok import platform as tiktok_platform
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import link_members, sync_log
from segflow.errors import Conflict, InvalidInput
from tests.sync_helpers import (
    HIGH_SPEND,
    LIST_ID,
    NOW,
    Clock,
    converged,
    customers,
    google_destination,
    import_rows,
    run_sync,
    with_spend,
)

ADVERTISER = "7100000000000000001"
TOKEN = "tt-long-term-access-token-1"


@pytest.fixture
def tiktok() -> Iterator[FakeTikTok]:
    # TikTok keeps no customer-file audience under 1,000 people; the suite's
    # segments are smaller, except where that rule is the test.
    with FakeTikTok(min_audience_size=1) as server:
        server.add_token(TOKEN, [ADVERTISER])
        yield server


@pytest.fixture
def settings(tiktok: FakeTikTok) -> Settings:
    return Settings(tiktok_endpoint=tiktok.base_url, sync_timeout=2, sync_lease=30)


def add_tiktok(
    db: Database, settings: Settings, name: str = "tt", token: str = TOKEN, **config: Any
) -> destinations.Destination:
    given = {"advertiser_id": ADVERTISER, **config}
    if "audience_id" not in given:
        given.setdefault("audience_name", "Big spenders")
    return destinations.add_destination(
        db,
        name,
        destinations.TIKTOK,
        given,
        NOW,
        {"access_token": token},
        settings.cipher,
        prepare=tiktok_platform.preparer(settings),
    )


def start(
    db: Database, settings: Settings, rows: list[tuple[str, ...]], **config: Any
) -> destinations.Destination:
    import_rows(db, rows)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    added = add_tiktok(db, settings, **config)
    links.link(db, "big spenders", "tt", NOW)
    return added


def members_as_tiktok_codes(db: Database, kind: str = "e:") -> set[str]:
    page, _ = segments.list_members(db, "big spenders", limit=100_000)
    out = set()
    for item in page:
        record = item["record"]
        if kind == "e:":
            value = normalise.email_hash(record["email"])
        else:
            value = normalise.phone_hash(record["phone"], "US")
        if value is not None:
            out.add(kind + value)
    return out


def stored_config(db: Database, name: str = "tt") -> dict[str, Any]:
    return destinations.get_destination(db, name).config


def test_the_first_upload_makes_the_audience_and_its_id_is_kept(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    rows = customers(200)
    added = start(db, settings, rows)
    assert "audience_id" not in added.config
    assert run_sync(db, settings).ok
    audience = stored_config(db)["audience_id"]
    assert tiktok.members(audience) == members_as_tiktok_codes(db) != set()
    # Leavers leave; the stored id is the one written to from now on.
    changed = [with_spend(r, 0) if i % 2 else r for i, r in enumerate(rows)]
    import_rows(db, changed, NOW + dt.timedelta(minutes=1))
    assert run_sync(db, settings).ok
    assert tiktok.members(audience) == members_as_tiktok_codes(db)
    assert stored_config(db)["audience_id"] == audience
    # The learnt id is the destination's now: settings can still be checked and changed.
    destinations.update_destination(db, "tt", {"id_type": "email"}, NOW)
    with pytest.raises(InvalidInput, match="id_type of destination 'tt' cannot change"):
        destinations.update_destination(db, "tt", {"id_type": "phone"}, NOW)
    raw = [v for row in rows for v in (row[1], row[2])]
    assert not any(
        any(v.encode() in r.body or v in json.dumps(r.query) for v in raw if v)
        for r in tiktok.received
    )


def test_a_lost_answer_to_the_creating_upload_finds_the_audience_by_name(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    start(db, settings, customers(80))
    tiktok.fail_next("lost", path="/create/")
    clock = Clock()
    run_sync(db, settings, clock)
    assert "audience_id" not in stored_config(db)
    clock.advance(hours=1)
    assert run_sync(db, settings, clock).ok
    audience = stored_config(db)["audience_id"]
    assert [a for a in [audience]] and tiktok.members(audience) == members_as_tiktok_codes(db)
    # One audience, not two.
    names = [r for r in tiktok.received if r.path.endswith("/create/")]
    assert len(names) == 1


def test_an_existing_audience_is_checked_when_added(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    audience = tiktok.add_audience(ADVERTISER, name="Old")
    assert add_tiktok(db, settings, audience_id=audience).config["audience_id"] == audience
    with pytest.raises(InvalidInput, match="not added"):
        add_tiktok(db, settings, name="tt2", audience_id="999999")
    with pytest.raises(InvalidInput, match="not added"):
        add_tiktok(db, settings, name="tt3", token="not-a-token")
    assert [d.name for d in destinations.list_destinations(db)] == ["tt"]


def test_a_name_tiktok_already_has_is_refused_with_the_id_to_use(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    audience = tiktok.add_audience(ADVERTISER, name="Big spenders")
    with pytest.raises(InvalidInput, match=f"give audience_id {audience}"):
        add_tiktok(db, settings)
    assert destinations.list_destinations(db) == []


def test_two_destinations_never_write_one_audience(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    add_tiktok(db, settings)
    with pytest.raises(Conflict, match="destination 'tt' already writes to"):
        add_tiktok(db, settings, name="tt2")
    audience = tiktok.add_audience(ADVERTISER, name="Other")
    add_tiktok(db, settings, name="tt3", audience_id=audience)
    with pytest.raises(Conflict, match="destination 'tt3' already writes to"):
        add_tiktok(db, settings, name="tt4", audience_id=audience)


def test_a_revoked_token_pauses_the_link_without_showing_it(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    start(db, settings, customers(40))
    tiktok.revoke(TOKEN)
    (outcome,) = run_sync(db, settings).outcomes
    assert outcome.paused is not None and TOKEN not in outcome.paused
    with db.read() as conn:
        errors = conn.execute(sa.select(sync_log.c.error)).scalars().all()
    assert errors and all(TOKEN not in (e or "") for e in errors)


@pytest.mark.parametrize("kind", ["rate_limit", "500", "system", "drop", "lost"])
def test_failures_and_lost_answers_converge(
    db: Database, tiktok: FakeTikTok, settings: Settings, kind: str
) -> None:
    audience = tiktok.add_audience(ADVERTISER, name="Existing")
    start(db, settings, customers(90), audience_id=audience)
    tiktok.fail_next(kind, path="/update/")
    clock = Clock()
    first = run_sync(db, settings, clock)
    assert not first.ok or kind == "lost"
    clock.advance(hours=1)
    assert run_sync(db, settings, clock).ok
    assert tiktok.members(audience) == members_as_tiktok_codes(db)


def test_a_phone_audience_refuses_members_without_a_phone_and_says_why(
    db: Database, tiktok: FakeTikTok, settings: Settings
) -> None:
    rows = customers(60)
    rows[0] = rows[0][:2] + ("",) + rows[0][3:]
    start(db, settings, rows, id_type="phone")
    assert run_sync(db, settings).ok
    audience = stored_config(db)["audience_id"]
    assert tiktok.members(audience) == members_as_tiktok_codes(db, "p:")
    with db.read() as conn:
        reasons = (
            conn.execute(
                sa.select(link_members.c.rejected).where(link_members.c.rejected.is_not(None))
            )
            .scalars()
            .all()
        )
    wanted = len(segments.list_members(db, "big spenders", limit=1000)[0])
    assert len(reasons) == wanted - len(tiktok.members(audience))
    assert set(reasons) == {"no valid phone number: this TikTok audience holds phone numbers only"}


def test_an_audience_tiktok_would_shrink_under_its_minimum_pauses_the_link(
    db: Database, settings: Settings
) -> None:
    with FakeTikTok(qps=1000) as strict:
        strict.add_token(TOKEN, [ADVERTISER])
        audience = strict.add_audience(ADVERTISER, name="Small")
        here = Settings(tiktok_endpoint=strict.base_url, sync_timeout=2, sync_lease=30)
        start(db, here, customers(50), audience_id=audience)
        (outcome,) = run_sync(db, here).outcomes
    assert outcome.paused is not None and "1000" in outcome.paused
    assert outcome.requests == 1  # no split: no member is at fault


def test_one_segment_kept_in_google_meta_and_tiktok_at_once(
    db: Database, tiktok: FakeTikTok, fake: FakeDataManager
) -> None:
    with FakeMeta() as meta:
        meta.add_account("4455667788")
        meta.add_token("EAAB-meta", accounts=["4455667788"])
        settings = Settings(
            tiktok_endpoint=tiktok.base_url,
            meta_graph_url=meta.url,
            datamanager_endpoint=fake.address,
            sync_timeout=2,
            sync_lease=30,
        )
        rows = customers(240)
        start(db, settings, rows)
        google_destination(db, "ads")
        links.link(db, "big spenders", "ads", NOW)
        fb = destinations.add_destination(
            db,
            "fb",
            destinations.META,
            {
                "ad_account_id": "act_4455667788",
                "audience_name": "Big spenders",
                "customer_file_source": "USER_PROVIDED_ONLY",
            },
            NOW,
            {"access_token": "EAAB-meta"},
            settings.cipher,
            prepare=audiences.preparer(settings),
        )
        links.link(db, "big spenders", "fb", NOW)
        for step in range(3):
            # Imports that add and remove people; every audience follows.
            changed = [with_spend(r, 0 if (i + step) % 3 == 0 else 250) for i, r in enumerate(rows)]
            changed += customers(20, seed=step + 11, start_id=10_000 + step * 100)
            import_rows(db, changed, NOW + dt.timedelta(minutes=step + 1))
            assert run_sync(db, settings).ok
            page, _ = segments.list_members(db, "big spenders", limit=100_000)
            emails = [item["record"]["email"] for item in page]
            assert converged(db, fake, LIST_ID)
            assert meta.hashes(fb.config["audience_id"], "EMAIL") == {
                hashlib.sha256(e.encode()).hexdigest()
                for e in (meta_normalise.normalise_email(x) for x in emails)
                if e
            }
            audience = stored_config(db)["audience_id"]
            assert tiktok.members(audience) == members_as_tiktok_codes(db)
