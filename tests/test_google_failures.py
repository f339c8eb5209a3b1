"""Google's refusals, quotas and credentials, with the real client against the strict fake.

How many requests a refusal costs is read from what the fake received; what
a user sees is read from the link's status. Every scenario runs on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from segflow import cli, datasets, engine, segments
from segflow.activation import destinations, links, pacing, platforms, transport
from segflow.activation.fake import Failure, FakeDataManager
from segflow.activation.google.client import Connections
from segflow.activation.sync import request_cap
from segflow.config import Settings
from segflow.db import Database, records
from segflow.db.schema import link_members, sync_log
from segflow.db.schema import links as links_table
from segflow.errors import InvalidInput
from segflow.worker import Worker
from tests.sync_helpers import (
    ACCOUNT,
    LIST_ID,
    NOW,
    Clock,
    converged,
    customers,
    expected_members,
    google_destination,
    import_rows,
    run_sync,
    setup_link,
)

EVERYONE = {"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]}


@pytest.fixture
def settings(fake: FakeDataManager) -> Settings:
    return Settings(datamanager_endpoint=fake.address, sync_timeout=5, sync_lease=60)


def _status(db: Database) -> links.LinkStatus:
    (only,) = links.status(db)
    return only


def _attempts(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(links_table.c.attempts)).scalar_one())


# -- refusals


def test_a_wrong_list_id_costs_one_request_and_pauses_the_link_with_googles_reason(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(1_000), rules=EVERYONE, list_id="4040")

    report = run_sync(db, settings)

    # Today's code split this into 1,999 requests and refused every member.
    assert len(fake.received) == 1 and report.outcomes[0].requests == 1
    status = _status(db)
    assert status.paused_reason == (
        "Google refused the list: INVALID_USER_LIST_ID (destinations[0].product_destination_id): "
        f"no user list 4040 in account {ACCOUNT}"
    )
    assert (status.failed, status.pending_adds) == (0, 1_000)
    # Fixed at Google, resumed: everyone goes, nobody was lost.
    fake.add_list(ACCOUNT, "4040")
    links.resume(db, "big spenders", "ads", retry_failed=False)
    assert run_sync(db, settings).ok
    assert converged(db, fake, "4040")


def test_a_login_account_that_does_not_manage_the_account_pauses_the_link(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(200), login_account_id="5550001111")
    run_sync(db, settings)
    assert len(fake.received) == 1
    reason = _status(db).paused_reason or ""
    assert reason.startswith("Google refused the login account: PERMISSION_DENIED")
    assert "destinations[0].login_account" in reason


def test_one_bad_member_in_10000_costs_two_requests(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(10_000, seed=3), rules=EVERYONE)
    wanted = sorted(expected_members(db))
    bad = wanted[5_000]
    fake.refuse = {bad[0]}

    report = run_sync(db, settings)

    # Today's code: 29 requests, splitting in halves.
    assert [r.outcome for r in fake.received] == ["INVALID_ARGUMENT", "OK"]
    assert [len(r.request.audience_members) for r in fake.received] == [10_000, 9_999]
    assert (report.outcomes[0].requests, report.outcomes[0].rejected) == (2, 1)
    assert fake.members(LIST_ID) == set(wanted) - {bad}
    status = _status(db)
    assert (status.failed, status.pending_adds, status.paused_reason) == (1, 0, None)
    ((_, reason),) = links.failed_members(db, status.link.id)
    assert reason.startswith("INVALID_AUDIENCE_MEMBER: ")


def test_a_second_answer_naming_other_members_is_handled_the_same_way(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(300))
    wanted = sorted(expected_members(db))
    fake.fail_next(
        Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            "There was a problem with the request.",
            reason="INVALID_ARGUMENT",
            violations=[("audience_members.audience_members[0]", "INVALID_SHA256_FORMAT")],
        ),
        Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            "There was a problem with the request.",
            reason="INVALID_ARGUMENT",
            violations=[("audience_members.audience_members[0]", "INVALID_HEX_ENCODING")],
        ),
    )
    report = run_sync(db, settings)
    sizes = [len(r.request.audience_members) for r in fake.received]
    assert sizes == [len(wanted), len(wanted) - 1, len(wanted) - 2]
    assert report.outcomes[0].rejected == 2
    reasons = sorted(r for _, r in links.failed_members(db, _status(db).link.id))
    assert reasons == ["INVALID_HEX_ENCODING", "INVALID_SHA256_FORMAT"]
    assert len(fake.members(LIST_ID)) == len(wanted) - 2


def test_a_refusal_naming_nothing_of_the_whole_request_pauses_after_three_requests(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(1_000), rules=EVERYONE)
    unnamed = Failure(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.")
    fake.fail_next(unnamed, unnamed, unnamed)

    report = run_sync(db, settings)

    assert [len(r.request.audience_members) for r in fake.received] == [1_000, 500, 500]
    assert report.outcomes[0].paused is not None
    status = _status(db)
    assert "Request contains an invalid argument" in (status.paused_reason or "")
    assert (status.failed, status.pending_adds) == (0, 1_000)


def test_a_refusal_of_the_whole_request_refuses_no_member_of_a_two_member_batch(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(2), rules=EVERYONE)
    unnamed = Failure(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.")
    fake.fail_next(unnamed, unnamed, unnamed)

    report = run_sync(db, settings)

    # Each half holds one member: neither may be taken for a bad member.
    assert [len(r.request.audience_members) for r in fake.received] == [2, 1, 1]
    assert report.outcomes[0].paused is not None
    status = _status(db)
    assert (status.failed, status.pending_adds) == (0, 2)


def test_on_a_list_holding_members_a_refusal_naming_nothing_pauses_after_two_requests(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100), rules=EVERYONE)
    run_sync(db, settings)
    held_before = fake.members(LIST_ID)
    import_rows(db, customers(300, seed=8, start_id=101))
    fake.received.clear()
    unnamed = Failure(grpc.StatusCode.INVALID_ARGUMENT, "Request contains an invalid argument.")
    fake.fail_next(unnamed, unnamed, unnamed)

    report = run_sync(db, settings)

    # The new batch, then one member the list holds, alone: refused too.
    assert [len(r.request.audience_members) for r in fake.received] == [300, 1]
    assert report.outcomes[0].paused is not None
    status = _status(db)
    assert "whatever members it held" in (status.paused_reason or "")
    assert (status.failed, status.pending_adds) == (0, 300)
    assert fake.members(LIST_ID) == held_before


class RefusesUnnamed:
    """A platform that refuses, naming nothing, any request holding one of ``bad``."""

    def __init__(self, inner: transport.Sender, bad: set[int]) -> None:
        self.inner, self.bad = inner, bad
        self.project = getattr(inner, "project", None)

    def send(self, operation: str, members: Sequence[transport.OutMember]) -> str:
        if any(m.rid in self.bad for m in members):
            raise transport.RequestRejected(
                "INVALID_ARGUMENT: Request contains an invalid argument."
            )
        return self.inner.send(operation, members)

    def close(self) -> None:
        self.inner.close()


def _refusing(bad: set[int]) -> Any:
    return lambda d, s, st: RefusesUnnamed(platforms.build_sender(d, s, st), bad)


def test_splitting_a_refusal_naming_nothing_finds_one_bad_member_within_the_bound(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(1_000), rules=EVERYONE)
    bad_rid = 700

    report = run_sync(db, settings, senders=_refusing({bad_rid}))

    outcome = report.outcomes[0]
    assert outcome.rejected == 1 and outcome.paused is None
    assert outcome.requests <= request_cap(1_000) == 22
    assert len(fake.members(LIST_ID)) == len(expected_members(db)) - 1


def test_when_a_member_the_list_took_goes_through_alone_the_batch_is_split(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100), rules=EVERYONE)
    run_sync(db, settings)
    import_rows(db, customers(2, seed=8, start_id=101))
    fake.received.clear()
    # Both new members are bad, so both halves answer as the whole did:
    # once the member alone was taken, that must not pause the link.
    report = run_sync(db, settings, senders=_refusing({101, 102}))

    outcome = report.outcomes[0]
    assert outcome.paused is None and outcome.rejected == 2
    assert [len(r.request.audience_members) for r in fake.received] == [1]
    assert outcome.added == 0
    assert _status(db).failed == 2
    assert len(fake.members(LIST_ID)) == len(expected_members(db)) - 2


class ChangesWhileOut:
    """Refuses, naming nothing, any request holding one of ``bad``; while a request of
    one other member is out, that member's record changes (the engine marks it pending)."""

    def __init__(self, inner: transport.Sender, db: Database, bad: set[int]) -> None:
        self.inner, self.db, self.bad = inner, db, bad
        self.project = getattr(inner, "project", None)
        self.changed: list[int] = []

    def send(self, operation: str, members: Sequence[transport.OutMember]) -> str:
        if any(m.rid in self.bad for m in members):
            raise transport.RequestRejected(
                "INVALID_ARGUMENT: Request contains an invalid argument."
            )
        if len(members) == 1 and not self.changed:
            # As an import and the engine would: a new email, the member due again.
            rid = members[0].rid
            dataset = datasets.get_dataset(self.db, "customers")
            column = dataset.column("email")
            assert column is not None
            with self.db.write() as conn:
                conn.exec_driver_sql(
                    f"UPDATE {dataset.records_table} SET {records.raw_col(column.position)} = "
                    f"'changed{rid}@example.com' WHERE rid = {int(rid)}"
                )
                conn.execute(
                    sa.update(link_members).where(link_members.c.rid == rid).values(pending=1)
                )
            self.changed.append(rid)
        return self.inner.send(operation, members)

    def close(self) -> None:
        self.inner.close()


def test_the_member_tried_alone_keeps_a_change_queued_while_it_was_out(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100), rules=EVERYONE)
    run_sync(db, settings)
    import_rows(db, customers(2, seed=8, start_id=101))
    wrappers: list[ChangesWhileOut] = []

    def factory(d: Any, sec: Any, st: Any) -> ChangesWhileOut:
        wrappers.append(ChangesWhileOut(platforms.build_sender(d, sec, st), db, {101, 102}))
        return wrappers[0]

    run_sync(db, settings, senders=factory)

    (probed,) = wrappers[0].changed
    # The change queued while the member was out alone went out in the same pass.
    wanted = hashlib.sha256(f"changed{probed}@example.com".encode()).hexdigest()
    assert any(f"e:{wanted}" in key for key in fake.members(LIST_ID))


def test_splitting_stops_at_the_bound_and_pauses_with_the_reason(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(1_000), rules=EVERYONE)
    # Many bad members, all in the first half: the second half goes through.
    bad = set(range(1, 400, 7))

    report = run_sync(db, settings, senders=_refusing(bad))

    outcome = report.outcomes[0]
    assert outcome.requests == request_cap(1_000)
    assert "(the bound for this batch)" in (outcome.paused or "")
    assert "invalid argument" in (_status(db).paused_reason or "")


# -- quotas


def test_the_daily_quota_waits_until_midnight_pacific_time(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    clock = Clock()  # 2026-11-01 12:00 UTC: 04:00 in California, standard time since 09:00
    fake.fail_next(Failure(quota="day"))

    report = run_sync(db, settings, clock)

    expected = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    assert report.outcomes[0].retry_at == expected
    status = _status(db)
    assert status.last_error == (
        "Google's per-day request quota (Google Cloud project default) is used up; "
        "next attempt at 2026-11-02 08:00 UTC"
    )
    clock.now = expected - dt.timedelta(minutes=1)
    assert run_sync(db, settings, clock).outcomes == []
    clock.now = expected
    assert run_sync(db, settings, clock).ok
    assert converged(db, fake)


def test_the_minute_quota_waits_for_the_next_minute(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    clock = Clock(now=dt.datetime(2026, 11, 1, 12, 0, 20, tzinfo=dt.UTC))
    fake.fail_next(Failure(quota="minute", retry_delay=1.0))
    report = run_sync(db, settings, clock)
    retry_at = report.outcomes[0].retry_at
    assert retry_at is not None and retry_at >= dt.datetime(2026, 11, 1, 12, 1, tzinfo=dt.UTC)
    assert retry_at < dt.datetime(2026, 11, 1, 12, 2, tzinfo=dt.UTC)
    assert (_status(db).last_error or "").startswith("Google's per-minute request quota")


def test_a_quota_counted_by_the_fake_itself_is_read_from_its_details(db: Database) -> None:
    with FakeDataManager(per_day=1) as fake:
        fake.add_account(ACCOUNT)
        fake.add_list(ACCOUNT, LIST_ID)
        settings = Settings(datamanager_endpoint=fake.address, sync_batch=50, sync_timeout=5)
        setup_link(db, customers(300))
        report = run_sync(db, settings)
        assert [r.outcome for r in fake.received] == ["OK", "RESOURCE_EXHAUSTED"]
        assert (report.outcomes[0].error or "").startswith("Google's per-day request quota")
        retry_at = report.outcomes[0].retry_at
        assert retry_at is not None and retry_at.astimezone(pacing.PACIFIC).time() == dt.time(0)


def test_the_pace_table_counts_each_project_per_minute(db: Database) -> None:
    at = dt.datetime(2026, 11, 1, 12, 0, 30, tzinfo=dt.UTC)
    assert [pacing.take(db, "123", at, 2) for _ in range(2)] == [None, None]
    assert pacing.take(db, "123", at, 2) == dt.datetime(2026, 11, 1, 12, 1, tzinfo=dt.UTC)
    assert pacing.used(db, "123", at) == 2
    assert pacing.take(db, "other", at, 2) is None
    later = at + dt.timedelta(seconds=30)
    assert pacing.take(db, "123", later, 2) is None
    assert pacing.used(db, "123", later) == 1


def test_segflow_paces_its_requests_per_project_across_links(
    db: Database, fake: FakeDataManager
) -> None:
    settings = Settings(
        datamanager_endpoint=fake.address, sync_batch=10, google_requests_per_minute=3
    )
    setup_link(db, customers(100))
    fake.add_list(ACCOUNT, "7002")
    google_destination(db, "second", list_id="7002")
    links.link(db, "big spenders", "second", NOW)
    clock = Clock(step=dt.timedelta(0))

    report = run_sync(db, settings, clock)

    # Both links use the same project: 3 requests this minute between them.
    assert len(fake.received) == 3
    deferred = [o for o in report.outcomes if o.deferred]
    assert len(deferred) == 2 and all(o.error is None for o in report.outcomes)
    next_minute = dt.datetime(2026, 11, 1, 12, 1, tzinfo=dt.UTC)
    assert {o.retry_at for o in deferred} == {next_minute}
    with db.read() as conn:
        attempts = conn.execute(sa.select(links_table.c.attempts)).scalars().all()
    assert attempts == [0, 0]  # waiting for the pace is not a failure
    assert all(s.last_error is None for s in links.status(db))
    passes = 1
    while not (converged(db, fake) and converged(db, fake, "7002")):
        clock.now = min(s.next_attempt_at for s in links.status(db) if s.next_attempt_at)
        before = len(fake.received)
        run_sync(db, settings, clock)
        assert len(fake.received) - before <= 3
        passes += 1
        assert passes < 20
    needed = 2 * -(-len(expected_members(db)) // 10)
    assert len(fake.received) == needed and passes == -(-needed // 3)


# -- credentials


@pytest.fixture
def auth_fake() -> Iterator[FakeDataManager]:
    with FakeDataManager(require_auth=True) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID)
        yield server


def _oauth(fake: FakeDataManager) -> dict[str, Any]:
    client_id, client_secret, refresh_token = fake.oauth_client()
    return {
        "type": "oauth",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }


def _oauth_link(db: Database, fake: FakeDataManager, settings: Settings) -> dict[str, Any]:
    import_rows(db, customers(100))
    from segflow import segments

    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=EVERYONE, now=NOW
    )
    secret = _oauth(fake)
    destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        {
            "operating_account_id": ACCOUNT,
            "product_destination_id": LIST_ID,
            "terms_accepted": True,
            "ad_user_data": "granted",
            "ad_personalization": "granted",
        },
        NOW,
        secret,
        settings.cipher,
    )
    links.link(db, "big spenders", "ads", NOW)
    return secret


def test_oauth_tokens_are_fetched_once_and_reused_by_a_worker(
    db: Database, auth_fake: FakeDataManager
) -> None:
    settings = Settings(
        datamanager_endpoint=auth_fake.address,
        oauth_token_uri=auth_fake.token_uri,
        sync_batch=40,
    )
    _oauth_link(db, auth_fake, settings)
    clock = Clock()
    worker = Worker(db, settings, interval=60, clock=clock)
    worker.run_pass()
    import_rows(db, customers(30, start_id=5_000), clock.now)
    worker.run_pass()
    assert converged(db, auth_fake)
    assert all(r.outcome == "OK" for r in auth_fake.received) and len(auth_fake.received) >= 4
    # One token for every request of both passes, and one connection kept open.
    assert len(auth_fake.tokens.refreshes) == 1
    assert len(worker.connections) == 1
    worker.stop = lambda: True
    worker.run(sleep=lambda _s: None, failed=lambda _e: 0.0)
    assert len(worker.connections) == 0


def test_a_revoked_refresh_token_pauses_the_link_asking_to_re_authorise(
    db: Database, auth_fake: FakeDataManager
) -> None:
    settings = Settings(datamanager_endpoint=auth_fake.address, oauth_token_uri=auth_fake.token_uri)
    secret = _oauth_link(db, auth_fake, settings)
    auth_fake.revoke(secret["refresh_token"])
    clock = Clock()

    report = run_sync(db, settings, clock)

    assert auth_fake.received == []  # refused at the token server, before any call
    reason = report.outcomes[0].paused or ""
    assert reason.startswith("credentials were revoked or expired: re-authorise")
    assert "invalid_grant" in reason and secret["refresh_token"] not in reason
    clock.advance(days=1)
    assert run_sync(db, settings, clock).outcomes == []  # not retried forever


def test_a_token_server_that_cannot_be_reached_is_retried_later(
    db: Database, auth_fake: FakeDataManager
) -> None:
    settings = Settings(datamanager_endpoint=auth_fake.address, oauth_token_uri=auth_fake.token_uri)
    _oauth_link(db, auth_fake, settings)
    auth_fake.tokens.stop()

    report = run_sync(db, settings)

    assert report.outcomes[0].paused is None
    assert "token server" in (report.outcomes[0].error or "")
    assert report.outcomes[0].retry_at is not None and _attempts(db) == 1


def test_credentials_are_checked_when_a_destination_is_added(
    db: Database, auth_fake: FakeDataManager
) -> None:
    cipher = Settings().cipher
    config = {
        "operating_account_id": ACCOUNT,
        "product_destination_id": LIST_ID,
        "ad_user_data": "granted",
        "ad_personalization": "granted",
    }
    good, revoked = _oauth(auth_fake), _oauth(auth_fake)
    auth_fake.revoke(revoked["refresh_token"])

    def add(name: str, secret: dict[str, Any], token_uri: str | None) -> str:
        added = destinations.add_destination(
            db, name, destinations.GOOGLE_ADS, config, NOW, secret, cipher,
            check_credentials=True, token_uri=token_uri,
        )  # fmt: skip
        return str(added.config["credentials"])

    assert add("good", good, auth_fake.token_uri) == "OAuth refresh token, checked"
    with pytest.raises(InvalidInput, match="Google refused these credentials: invalid_grant"):
        add("revoked", revoked, auth_fake.token_uri)
    assert [d.name for d in destinations.list_destinations(db)] == ["good"]
    # No token server may be asked (a local endpoint without a local token server).
    assert add("unchecked", revoked, None) == "OAuth refresh token"
    auth_fake.tokens.stop()
    assert add("offline", good, "http://127.0.0.1:9/token").endswith(
        "(not checked yet: the token server could not be reached)"
    )


def test_the_token_server_override_accepts_only_loopback_http() -> None:
    env = {
        "SEGFLOW_OAUTH_TOKEN_URI": "http://127.0.0.1:8123/token",
        "SEGFLOW_DATAMANAGER_ENDPOINT": "127.0.0.1:5",
    }
    assert Settings.from_env(env).token_uri == "http://127.0.0.1:8123/token"
    # Talking to Google itself, a real refresh token never goes to a local server.
    real = {"SEGFLOW_OAUTH_TOKEN_URI": "http://127.0.0.1:8123/token"}
    assert Settings.from_env(real).token_uri == "https://oauth2.googleapis.com/token"
    for bad in (
        "https://oauth2.googleapis.com/token",
        "http://example.org:80/token",
        "http://127.0.0.1/token",
    ):
        with pytest.raises(InvalidInput, match="SEGFLOW_OAUTH_TOKEN_URI"):
            Settings.from_env({"SEGFLOW_OAUTH_TOKEN_URI": bad})
    # Code-built settings never check credentials unasked; the CLI and server do.
    assert Settings().check_credentials is False
    assert Settings.from_env({}).check_credentials is True
    # A local Data Manager double never gets a token fetched from Google.
    assert Settings(datamanager_endpoint="127.0.0.1:5").token_uri is None


# -- connections and warnings


def test_a_pass_keeps_one_connection_per_destination_and_closes_it(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    pool = Connections()
    run_sync(db, settings, connections=pool)
    (first,) = pool._open.values()
    import_rows(db, customers(20, start_id=9_000), NOW + dt.timedelta(minutes=1))
    run_sync(db, settings, connections=pool)
    assert list(pool._open.values()) == [first] and first._channel is not None
    pool.close()
    assert len(pool) == 0 and first._channel is None


class Warns:
    """Google's answer carrying field warnings (the fake sends none)."""

    def __init__(self, inner: transport.Sender) -> None:
        self.inner = inner

    def send(self, operation: str, members: Sequence[transport.OutMember]) -> str:
        request_id = self.inner.send(operation, members)
        return transport.Receipt(request_id, ["INVALID_FORMAT (audience_members[3].consent)"])

    def close(self) -> None:
        self.inner.close()


def test_field_warnings_of_an_accepted_request_are_kept_on_its_log_row(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    run_sync(db, settings, senders=lambda d, s, st: Warns(platforms.build_sender(d, s, st)))
    with db.read() as conn:
        (row,) = conn.execute(sa.select(sync_log.c.outcome, sync_log.c.warnings)).all()
    assert row.outcome == "ok"
    assert json.loads(row.warnings) == ["INVALID_FORMAT (audience_members[3].consent)"]


def test_a_token_revoked_while_a_worker_holds_it_pauses_the_link_on_the_next_attempt(
    db: Database, auth_fake: FakeDataManager
) -> None:
    settings = Settings(datamanager_endpoint=auth_fake.address, oauth_token_uri=auth_fake.token_uri)
    secret = _oauth_link(db, auth_fake, settings)
    clock = Clock()
    worker = Worker(db, settings, interval=60, clock=clock)
    worker.run_pass()
    assert converged(db, auth_fake)
    auth_fake.revoke(secret["refresh_token"])  # ends the access token too, as Google does
    import_rows(db, customers(20, start_id=7_000), clock.now)

    worker.run_pass()  # Google refuses the held token: fetch a new one next time
    status = _status(db)
    assert status.paused_reason is None and "ACCESS_TOKEN_EXPIRED" in (status.last_error or "")
    assert status.next_attempt_at is not None
    clock.now = status.next_attempt_at
    worker.run_pass()  # the refresh is refused for good: pause, and say why
    assert (_status(db).paused_reason or "").startswith("credentials were revoked or expired")
    assert [outcome for _, outcome in auth_fake.tokens.refreshes] == [200, 400]
    worker.close()


def test_the_cli_refuses_credentials_google_revoked_when_adding_a_destination(
    auth_fake: FakeDataManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SEGFLOW_DATAMANAGER_ENDPOINT", auth_fake.address)
    monkeypatch.setenv("SEGFLOW_OAUTH_TOKEN_URI", auth_fake.token_uri)
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def add(name: str, secret: dict[str, Any]) -> int:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(secret))
        return cli.main(
            ["destinations", "add", "google_ads", name, "--operating-account-id", ACCOUNT,
             "--list-id", LIST_ID, "--oauth-file", str(path), "--db", url,
             "--ad-user-data", "granted", "--ad-personalization", "granted"]
        )  # fmt: skip

    revoked = _oauth(auth_fake)
    auth_fake.revoke(revoked["refresh_token"])
    assert add("revoked", revoked) == 1
    _, err = capsys.readouterr()
    assert "Google refused these credentials: invalid_grant" in err
    assert revoked["refresh_token"] not in err and revoked["client_secret"] not in err
    assert add("good", _oauth(auth_fake)) == 0
    out, _ = capsys.readouterr()
    assert "credentials: OAuth refresh token, checked" in out


class _Answers:
    """Stands in for Google's client: answers an ingest with field warnings."""

    def __init__(self) -> None:
        self.metadata: Any = None

    def ingest_audience_members(self, request: Any, **kwargs: Any) -> Any:
        from google.ads.datamanager_v1.types import ingestion_service, processing_errors

        region = processing_errors.WarningReason.WARNING_REASON_INVALID_REGION_CODE

        self.metadata = kwargs.get("metadata")
        return ingestion_service.IngestAudienceMembersResponse(
            request_id="r-1",
            field_warnings=[
                processing_errors.FieldWarning(
                    reason=region,
                    field="audience_members.audience_members[3].user_data",
                    description="an identifier was ignored",
                )
            ],
        )


def test_the_sender_returns_and_logs_field_warnings_without_member_data(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from segflow.activation.google.sender import GoogleAdsSender

    destination = google_destination(db)
    sender = GoogleAdsSender(destination, None, Settings(datamanager_endpoint="127.0.0.1:9"))
    answers = _Answers()
    sender.connection._ingestion = answers
    member = transport.OutMember(1, ("e:" + "ab" * 32,))
    with caplog.at_level("WARNING"):
        receipt = sender.send(transport.INGEST, [member])
    assert receipt == "r-1"
    assert isinstance(receipt, transport.Receipt)
    assert receipt.warnings == (
        "WARNING_REASON_INVALID_REGION_CODE (audience_members[3].user_data): "
        "an identifier was ignored",
    )
    assert "1 field warnings: WARNING_REASON_INVALID_REGION_CODE x1" in caplog.text
    assert "ab" * 32 not in caplog.text
    assert answers.metadata == ()  # no credentials: no token on the call


class Scripted:
    """A real sender whose first answers are scripted: an exception, or None to send."""

    def __init__(self, inner: transport.Sender, script: list[Exception | None]) -> None:
        self.inner, self.script = inner, script
        self.project = getattr(inner, "project", None)

    def send(self, operation: str, members: Sequence[transport.OutMember]) -> str:
        if self.script:
            answer = self.script.pop(0)
            if answer is not None:
                raise answer
        return self.inner.send(operation, members)

    def close(self) -> None:
        self.inner.close()


def test_a_leaving_member_whose_identifier_sets_were_split_is_removed_of_every_set(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(1)
    setup_link(db, rows, rules=EVERYONE)
    assert run_sync(db, settings).ok
    # An old identifier set whose remove is still owed, beside the current one.
    old = ["e:" + hashlib.sha256(b"old@example.com").hexdigest()]
    with db.write() as conn:
        conn.execute(sa.update(link_members).values(stale=json.dumps([old])))
    (current,) = fake.members(LIST_ID)
    nobody = {"conditions": [{"field": "id", "operator": "less_than", "value": 0}]}
    segments.edit_segment(db, "big spenders", rules_json=nobody, now=NOW)
    engine.tick(db, NOW + dt.timedelta(minutes=1))
    # The two sets go as one request, refused naming nothing; split, the old
    # set's remove is answered and the current set's fails for now.
    script: list[Exception | None] = [
        transport.RequestRejected("INVALID_ARGUMENT: Request contains an invalid argument."),
        None,
        transport.TransientError("UNAVAILABLE: try later"),
    ]
    run_sync(
        db, settings, senders=lambda d, s, st: Scripted(platforms.build_sender(d, s, st), script)
    )
    assert fake.members(LIST_ID) == {current}  # the current set is still held
    assert run_sync(db, settings, Clock(now=NOW + dt.timedelta(hours=1))).ok
    assert fake.members(LIST_ID) == set()
