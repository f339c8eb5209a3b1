"""A segment kept in a Meta Custom Audience: the real SDK against the local Graph fake.

Each test adds a ``meta`` destination as a user does (the account, its terms
and the audience asked of the fake), links a segment and syncs, then holds
the audience to the segment: every member's email hashed by Meta's rules,
nothing more, nothing raw.
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
from segflow.activation import destinations, links, platforms, transport
from segflow.activation.fake_meta import FakeMeta
from segflow.activation.meta import audiences, normalise
from segflow.activation.meta.sender import MetaSender
from segflow.activation.transport import OutMember
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import link_members, sync_log
from segflow.errors import InvalidInput
from tests.sync_helpers import (
    HIGH_SPEND,
    NOW,
    Clock,
    customers,
    import_rows,
    run_sync,
    with_spend,
)

ACCOUNT = "4455667788"
TOKEN = "EAAB-test-system-user-token"


@pytest.fixture
def meta() -> Iterator[FakeMeta]:
    with FakeMeta() as server:
        server.add_account(ACCOUNT, business=("9900", "Shop"))
        server.add_token(TOKEN, accounts=[ACCOUNT])
        yield server


@pytest.fixture
def settings(meta: FakeMeta) -> Settings:
    return Settings(meta_graph_url=meta.url, sync_timeout=2, sync_lease=30)


def add_meta(
    db: Database, settings: Settings, name: str = "fb", token: str = TOKEN, **config: Any
) -> destinations.Destination:
    given = {"ad_account_id": f"act_{ACCOUNT}", **config}
    if "audience_id" not in given:
        given.setdefault("audience_name", "Big spenders")
        given.setdefault("customer_file_source", "USER_PROVIDED_ONLY")
    return destinations.add_destination(
        db,
        name,
        destinations.META,
        given,
        NOW,
        {"access_token": token},
        settings.cipher,
        prepare=audiences.preparer(settings),
    )


def link_segment(
    db: Database, settings: Settings, rows: list[tuple[str, ...]], **config: Any
) -> destinations.Destination:
    import_rows(db, rows)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    added = add_meta(db, settings, **config)
    links.link(db, "big spenders", "fb", NOW)
    return added


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def wanted_emails(db: Database) -> set[str]:
    """The segment's members' emails, hashed as Meta asks (trimmed, lower case, no Gmail rule)."""
    page, _ = segments.list_members(db, "big spenders", limit=100_000)
    out = set()
    for item in page:
        email = normalise.normalise_email(item["record"]["email"])
        if email is not None:
            out.add(sha(email))
    return out


def test_a_new_audience_is_created_and_filled_with_the_segment(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    rows = customers(300)
    added = link_segment(db, settings, rows)
    audience = added.config["audience_id"]
    assert meta.audiences(ACCOUNT) == [audience]
    assert added.config["terms_accepted"] is True
    assert TOKEN not in json.dumps(added.public())
    assert added.public()["config"]["credentials"]["fingerprint"] == sha(TOKEN)[:12]

    report = run_sync(db, settings)
    assert report.ok, report.outcomes
    assert meta.hashes(audience, "EMAIL") == wanted_emails(db) != set()
    # Only hashes reached Meta.
    raw = [v for row in rows for v in (row[1], row[2], row[3], row[4])]
    assert not meta.saw_raw(raw)


def test_people_who_leave_the_segment_leave_the_audience(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    rows = customers(200)
    added = link_segment(db, settings, rows)
    audience = added.config["audience_id"]
    run_sync(db, settings)
    before = meta.hashes(audience, "EMAIL")
    # Everyone spends nothing now: all leave; then a few come back.
    changed = [with_spend(r, 0) for r in rows]
    changed[:5] = [with_spend(r, 500) for r in rows[:5]]
    import_rows(db, changed, NOW + dt.timedelta(minutes=1))
    report = run_sync(db, settings)
    assert report.ok, report.outcomes
    after = meta.hashes(audience, "EMAIL")
    assert after == wanted_emails(db)
    assert len(after) == 5 < len(before)
    removes = meta.requests("DELETE", "/users")
    assert removes and all(r.status == 200 for r in removes)


def test_an_existing_audience_is_checked_and_kept(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    audience = meta.add_audience(ACCOUNT, "Existing")
    added = add_meta(db, settings, audience_id=audience)
    assert added.config["audience_id"] == audience
    assert added.config["customer_file_source"] == "USER_PROVIDED_ONLY"
    assert meta.audiences(ACCOUNT) == [audience]


def test_adding_with_an_audience_meta_does_not_know_stores_nothing(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        add_meta(db, settings, audience_id="123456")
    with pytest.raises(InvalidInput, match="Invalid OAuth access token"):
        add_meta(db, settings, token="EAAB-not-a-token")
    assert destinations.list_destinations(db) == []


def test_terms_not_accepted_refuse_a_new_audience_and_pause_an_existing_one(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    meta.accept_tos(ACCOUNT, False)
    with pytest.raises(InvalidInput, match="Custom Audience terms"):
        add_meta(db, settings)
    assert destinations.list_destinations(db) == []
    audience = meta.add_audience(ACCOUNT, "Existing")
    import_rows(db, customers(50))
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    added = add_meta(db, settings, audience_id=audience)
    assert added.config["terms_accepted"] is False
    links.link(db, "big spenders", "fb", NOW)
    report = run_sync(db, settings)
    (outcome,) = report.outcomes
    assert outcome.paused is not None and "Custom Audience terms" in outcome.paused
    assert "business.facebook.com" in outcome.paused
    assert meta.entries(audience) == set()
    # Accepted at Meta, the resumed link fills the audience.
    meta.accept_tos(ACCOUNT)
    links.resume(db, "big spenders", "fb", retry_failed=False)
    assert run_sync(db, settings).ok
    assert meta.hashes(audience, "EMAIL") == wanted_emails(db)


def test_a_revoked_token_pauses_the_link_with_metas_reason_and_no_token(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    link_segment(db, settings, customers(40))
    meta.revoke(TOKEN)
    report = run_sync(db, settings)
    (outcome,) = report.outcomes
    assert outcome.paused is not None
    assert "code 190" in outcome.paused and "--token-file" in outcome.paused
    assert TOKEN not in outcome.paused
    with db.read() as conn:
        errors = conn.execute(sa.select(sync_log.c.error)).scalars().all()
    assert all(TOKEN not in (e or "") for e in errors)


def test_a_rate_limit_waits_as_long_as_meta_says(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    link_segment(db, settings, customers(40))
    meta.fail_next("account_limit")
    clock = Clock()
    report = run_sync(db, settings, clock)
    (outcome,) = report.outcomes
    assert outcome.retry_at is not None and outcome.error is not None
    assert "code 80003" in outcome.error
    # The fake's usage header names at least a minute until access returns;
    # the retry policy alone would try again within seconds.
    assert outcome.retry_at - clock.now >= dt.timedelta(seconds=59)


@pytest.mark.parametrize("kind", ["transient", "unavailable", "drop", "lost"])
def test_failures_and_lost_answers_converge_on_the_next_pass(
    db: Database, meta: FakeMeta, settings: Settings, kind: str
) -> None:
    added = link_segment(db, settings, customers(120))
    meta.fail_next(kind)
    clock = Clock()
    run_sync(db, settings, clock)
    clock.advance(hours=1)
    assert run_sync(db, settings, clock).ok
    assert meta.hashes(added.config["audience_id"], "EMAIL") == wanted_emails(db)


def test_limited_data_use_travels_with_every_batch(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    link_segment(db, settings, customers(40), limited_data_use=True)
    assert run_sync(db, settings).ok
    (add,) = meta.requests("POST", "/users")
    payload = json.loads(add.params["payload"])
    assert payload["data_processing_options"] == ["LDU"]
    assert payload["data_processing_options_country"] == 0


def test_members_whose_records_deny_ad_use_are_never_sent(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    header = ("id", "email", "lifetime_spend", "ad_user_data")
    import io

    from segflow import engine, ingest
    from tests.sync_helpers import csv_bytes  # the demo header has no consent column

    data = csv_bytes(
        [
            ("1", "yes@x.co", "500", "granted"),
            ("2", "no@x.co", "500", "denied"),
            ("3", "e@x.co", "500", ""),
        ],
        header,
    )
    ingest.import_csv(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(dataset="customers", key="id"),
        source="c.csv",
        now=NOW,
    )
    engine.tick(db, NOW)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    added = add_meta(db, settings)
    links.link(db, "big spenders", "fb", NOW)
    assert run_sync(db, settings).ok
    assert meta.hashes(added.config["audience_id"], "EMAIL") == {sha("yes@x.co"), sha("e@x.co")}
    assert not meta.saw_raw(["no@x.co"])
    with db.read() as conn:
        refused = (
            conn.execute(
                sa.select(link_members.c.rejected).where(link_members.c.rejected.is_not(None))
            )
            .scalars()
            .all()
        )
    assert len(refused) == 1 and "ad_user_data" in refused[0]


def test_a_10000_member_remove_travels_in_the_body(meta: FakeMeta, settings: Settings) -> None:
    audience = meta.add_audience(ACCOUNT, "Big")
    config = {"ad_account_id": ACCOUNT, "audience_id": audience}
    sender = MetaSender(config, TOKEN, Settings(meta_graph_url=meta.url, sync_timeout=30))
    members = [OutMember(i, (f"e:{sha(f'p{i}@x.co')}", f"x:{sha(str(i))}")) for i in range(10_000)]
    try:
        sender.send(transport.INGEST, members)
        assert len(meta.entries(audience)) == 10_000
        receipt = sender.send(transport.REMOVE, members)
    finally:
        sender.close()
    assert meta.entries(audience) == set()
    assert "received 10,000" in receipt
    (remove,) = meta.requests("DELETE", "/users")
    assert remove.request_line_length < 200  # the payload went in the body


def test_the_sdks_own_remove_of_10000_members_is_not_answered(meta: FakeMeta) -> None:
    """Why the sender does not call ``CustomAudience.delete_users``: Meta drops the line."""
    import requests
    from facebook_business.adobjects.customaudience import CustomAudience

    from segflow.activation.meta import client

    audience = meta.add_audience(ACCOUNT, "Big")
    api = client.connect(TOKEN, Settings(meta_graph_url=meta.url, sync_timeout=30))
    payload = {"schema": ["EMAIL"], "data": [[sha(f"p{i}@x.co")] for i in range(10_000)]}
    with pytest.raises(requests.ConnectionError):
        CustomAudience(audience, api=api).delete_users(params={"payload": payload})


def test_one_segment_feeds_google_and_meta_at_once(db: Database, meta: FakeMeta, fake: Any) -> None:
    from tests.sync_helpers import LIST_ID, converged, google_destination

    settings = Settings(
        meta_graph_url=meta.url, datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=30
    )
    rows = customers(150)
    added = link_segment(db, settings, rows)
    google_destination(db, "ads")
    links.link(db, "big spenders", "ads", NOW)
    assert run_sync(db, settings).ok
    changed = [with_spend(r, 0) if i % 3 == 0 else r for i, r in enumerate(rows)]
    import_rows(db, changed, NOW + dt.timedelta(minutes=1))
    assert run_sync(db, settings).ok
    assert converged(db, fake, LIST_ID)
    assert meta.hashes(added.config["audience_id"], "EMAIL") == wanted_emails(db)


def test_the_platform_registry_knows_every_kind() -> None:
    assert set(platforms.PLATFORMS) == set(destinations.KINDS)
    with pytest.raises(InvalidInput, match="unknown destination kind"):
        platforms.platform_for("snapchat")


def test_a_member_who_withdraws_consent_leaves_the_audience(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    import io

    from segflow import engine, ingest
    from tests.sync_helpers import csv_bytes

    header = ("id", "email", "lifetime_spend", "ad_personalization")

    def load(rows: list[tuple[str, ...]], minute: int) -> None:
        when = NOW + dt.timedelta(minutes=minute)
        ingest.import_csv(
            db,
            io.BytesIO(csv_bytes(rows, header)),
            ingest.ImportOptions(dataset="customers", key="id"),
            source="c.csv",
            now=when,
        )
        engine.tick(db, when)

    load([("1", "a@x.co", "500", "granted"), ("2", "b@x.co", "500", "yes")], 0)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    added = add_meta(db, settings)
    audience = added.config["audience_id"]
    links.link(db, "big spenders", "fb", NOW)
    assert run_sync(db, settings).ok
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.co"), sha("b@x.co")}
    # Person 2 withdraws: still in the segment, but gone from Meta's audience.
    load([("1", "a@x.co", "500", "granted"), ("2", "b@x.co", "500", "withdrawn")], 1)
    report = run_sync(db, settings)
    assert report.ok, report.outcomes
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.co")}
    with db.read() as conn:
        rows = conn.execute(
            sa.select(link_members.c.have, link_members.c.pending, link_members.c.rejected).where(
                link_members.c.rejected.is_not(None)
            )
        ).all()
    assert len(rows) == 1 and rows[0].have == 0 and rows[0].pending == 0
    # Granted again, the person comes back.
    assert destinations.update_destination(db, "fb", {"audience_name": "Big spenders"}, NOW)
    load([("1", "a@x.co", "500", "granted"), ("2", "b@x.co", "500", "granted")], 2)
    assert run_sync(db, settings).ok
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.co"), sha("b@x.co")}


def test_short_batches_and_full_ones_mix_in_one_pass(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    rows = customers(300)
    # A member with no usable identifier makes its batch one short.
    rows[3] = rows[3][:1] + ("", "") + rows[3][3:]
    added = link_segment(db, settings, rows)
    small = Settings(**{**settings.__dict__, "sync_batch": 10})
    report = run_sync(db, small)
    assert report.ok, report.outcomes
    assert meta.hashes(added.config["audience_id"], "EMAIL") == wanted_emails(db)
    sessions = [json.loads(r.params["session"]) for r in meta.requests("POST", "/users")]
    assert len({s["session_id"] for s in sessions}) == len(sessions) > 2


def test_a_token_meta_repeats_in_its_message_is_masked() -> None:
    from facebook_business.exceptions import FacebookRequestError

    from segflow.activation.meta import client

    token = "EAABsecretTOKENxyz1234567890"
    body = {"error": {"message": f"Malformed access token {token[:20]}", "code": 190}}
    error = FacebookRequestError("x", {}, 400, {}, json.dumps(body))
    refused = client.classify(error, token)
    assert isinstance(refused, transport.LinkBroken)
    assert "[access token]" in str(refused)
    # No run of the token longer than a few characters survives, whole,
    # cut short or URL-encoded.
    for text in (token, token[:20], token[5:], "x" + token[3:17] + "y"):
        masked = client.mask(f"Malformed access token {text}.", token)
        assert all(token[i : i + 8] not in masked for i in range(len(token) - 7)), masked
    odd = "EAAB+abc/def=ghi+jkl/mno"
    assert odd not in client.mask(f"token {odd} and %s" % client.quote(odd, safe=""), odd)
    assert client.quote(odd, safe="") not in client.mask("t " + client.quote(odd, safe=""), odd)


def test_a_token_no_platform_issues_is_refused_before_any_request(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    with pytest.raises(InvalidInput, match="printable ASCII"):
        add_meta(db, settings, token="tök€n-abc")
    assert meta.request_count == 0


def test_a_remove_meta_refuses_for_a_withdrawn_member_pauses_the_link(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    import io

    from segflow import engine, ingest
    from tests.sync_helpers import csv_bytes

    header = ("id", "email", "lifetime_spend", "ad_user_data")

    def load(consent: str, minute: int) -> None:
        when = NOW + dt.timedelta(minutes=minute)
        rows = [("1", "a@x.co", "500", "granted"), ("2", "b@x.co", "500", consent)]
        data = io.BytesIO(csv_bytes(rows, header))
        options = ingest.ImportOptions(dataset="customers", key="id")
        ingest.import_csv(db, data, options, source="c.csv", now=when)
        engine.tick(db, when)

    load("granted", 0)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    audience = add_meta(db, settings).config["audience_id"]
    links.link(db, "big spenders", "fb", NOW)
    assert run_sync(db, settings).ok

    class RefusesRemoves:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def send(self, operation: str, members: Any) -> str:
            if operation == transport.REMOVE:
                raise transport.RequestRejected("Meta: Invalid parameter [code 100]")
            return str(self.inner.send(operation, members))

        def close(self) -> None:
            self.inner.close()

    load("denied", 1)
    report = run_sync(
        db, settings, senders=lambda d, s, st: RefusesRemoves(platforms.build_sender(d, s, st))
    )
    (outcome,) = report.outcomes
    assert outcome.paused is not None and "withdrew consent" in outcome.paused
    assert sha("b@x.co") in meta.hashes(audience, "EMAIL")
    # Resumed, with Meta taking removes again, the person leaves.
    links.resume(db, "big spenders", "fb", retry_failed=False)
    assert run_sync(db, settings).ok
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.co")}


def test_after_a_request_left_unanswered_the_retry_waits_out_the_timeout(
    db: Database, meta: FakeMeta, settings: Settings
) -> None:
    link_segment(db, settings, customers(40))
    # Answered (and applied) after the client gave up.
    meta.fail_next("slow", sleep=settings.sync_timeout + 1.5)
    clock = Clock()
    (outcome,) = run_sync(db, settings, clock).outcomes
    assert outcome.retry_at is not None
    # The backoff alone would try again after 1 s; the request might still land.
    assert outcome.retry_at - clock.now >= dt.timedelta(seconds=settings.sync_timeout - 0.1)
