"""Sync scenarios: the real google-ads-datamanager client against the local fake.

Each scenario runs on SQLite and PostgreSQL and ends by comparing the fake's
list with the segment's membership, hashed the same way.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from segflow import segments
from segflow.activation import destinations, links, mapping, platforms, transport
from segflow.activation.fake import Failure, FakeDataManager, member_key
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import sync_log
from segflow.errors import InvalidInput, NotFound
from tests.sync_helpers import (
    ACCOUNT,
    LIST_ID,
    NOW,
    Clock,
    Crash,
    converged,
    customers,
    dying,
    expected_members,
    google_destination,
    import_rows,
    run_sync,
    setup_link,
    sync_rows,
    with_spend,
)

EVERYONE = {"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]}


@pytest.fixture
def settings(fake: FakeDataManager) -> Settings:
    return Settings(datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=30)


def _status(db: Database) -> links.LinkStatus:
    (only,) = links.status(db)
    return only


def test_initial_sync_sends_every_member_once(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(300))
    wanted = expected_members(db)
    assert len(wanted) > 50

    report = run_sync(db, settings)

    assert report.ok
    assert fake.members(LIST_ID) == wanted
    (outcome,) = report.outcomes
    assert (outcome.added, outcome.removed, outcome.requests) == (len(wanted), 0, 1)
    status = _status(db)
    assert (status.synced, status.pending_adds, status.pending_removes) == (len(wanted), 0, 0)
    # A second pass has nothing to send.
    assert run_sync(db, settings).outcomes[0].requests == 0
    assert len(fake.received) == 1


def test_enters_and_exits_after_an_import_follow_the_segment(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(200)
    setup_link(db, rows)
    run_sync(db, settings)
    before = fake.members(LIST_ID)

    # Ten members drop below the threshold, ten others rise above it.
    spend = dict(zip((r[0] for r in rows), (float(r[8]) for r in rows), strict=True))
    leaving = [r for r in rows if spend[r[0]] > 100][:10]
    joining = [r for r in rows if spend[r[0]] <= 100][:10]
    changed = [with_spend(r, 5) for r in leaving] + [with_spend(r, 500) for r in joining]
    import_rows(db, changed, NOW + dt.timedelta(minutes=1))
    report = run_sync(db, settings)

    (outcome,) = report.outcomes
    assert (outcome.added, outcome.removed) == (10, 10)
    after = fake.members(LIST_ID)
    assert after == expected_members(db)
    assert len(before - after) == 10 and len(after - before) == 10
    # Adds went out before removes.
    methods = [r.method for r in fake.received[1:]]
    assert methods == ["IngestAudienceMembers", "RemoveAudienceMembers"]


def test_a_burst_larger_than_one_request_is_split_at_10000(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(12_500), rules=EVERYONE)
    report = run_sync(db, settings)

    sizes = [len(r.audience_members) for r in fake.requests("IngestAudienceMembers")]
    assert sizes == [10_000, 2_500]
    assert report.outcomes[0].added == 12_500
    assert converged(db, fake)


def test_transient_failures_then_success_lose_and_duplicate_nothing(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(400))
    clock = Clock()
    fake.fail_next(
        Failure(grpc.StatusCode.UNAVAILABLE),
        Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", retry_delay=90),
        # Slower than the 2 s timeout: the request still lands at the fake.
        Failure(None, sleep=2.5),
        Failure(grpc.StatusCode.INTERNAL),
    )
    outcomes = []
    for _ in range(5):
        report = run_sync(db, Settings(**{**settings.__dict__}), clock)
        outcomes.extend(report.outcomes)
        due = _status(db).next_attempt_at
        if due is not None:
            clock.now = due
    errors = [o.error for o in outcomes if o.error]
    assert [e.split(":")[0].split(";")[0] for e in errors] == [
        "UNAVAILABLE",
        # A quota answer that does not say which: waited out as the minute's.
        "Google's per-minute request quota (Google Cloud project default) is used up",
        "DEADLINE_EXCEEDED",
        "INTERNAL",
    ]
    assert converged(db, fake)
    status = _status(db)
    assert (status.pending_adds, status.failed, status.paused_reason) == (0, 0, None)
    assert status.synced == len(expected_members(db))


def test_retry_waits_at_least_the_delay_the_server_asked_for(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(50))
    clock = Clock()
    fake.fail_next(Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", retry_delay=120))
    report = run_sync(db, settings, clock)
    retry_at = report.outcomes[0].retry_at
    assert retry_at is not None and retry_at - clock.now >= dt.timedelta(seconds=119)
    # Not due yet: a pass now sends nothing.
    assert run_sync(db, settings, clock).outcomes == []
    clock.now = retry_at
    assert run_sync(db, settings, clock).ok
    assert converged(db, fake)


def test_refused_members_are_recorded_with_the_reason_and_the_rest_synced(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(300))
    wanted = sorted(expected_members(db))
    bad = {wanted[3], wanted[40]}
    fake.refuse = {key[0] for key in bad}

    report = run_sync(db, settings)

    # Google names both: one refused request, then the rest in one more.
    assert (report.outcomes[0].rejected, report.outcomes[0].requests) == (2, 2)
    assert fake.members(LIST_ID) == set(wanted) - bad
    status = _status(db)
    assert (status.failed, status.pending_adds, status.synced) == (2, 0, len(wanted) - 2)
    failed = links.failed_members(db, status.link.id)
    assert len(failed) == 2
    assert all(reason.startswith("INVALID_AUDIENCE_MEMBER: ") for _, reason in failed)
    # Refused members are not retried on every pass...
    assert run_sync(db, settings).outcomes[0].requests == 0
    # ...until someone asks, and the platform accepts them now.
    fake.refuse = set()
    links.resume(db, "big spenders", "ads", retry_failed=True)
    assert run_sync(db, settings).outcomes[0].added == 2
    assert converged(db, fake)


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED]
)
def test_permission_and_credential_failures_pause_the_link_without_retrying(
    db: Database, fake: FakeDataManager, settings: Settings, code: grpc.StatusCode
) -> None:
    setup_link(db, customers(100))
    clock = Clock()
    fake.fail_next(Failure(code, "the caller does not have permission"))

    report = run_sync(db, settings, clock)

    assert report.outcomes[0].paused is not None
    status = _status(db)
    assert status.paused_reason is not None and code.name in status.paused_reason
    clock.advance(days=1)
    assert run_sync(db, settings, clock).outcomes == []
    assert len(fake.received) == 1
    links.resume(db, "big spenders", "ads", retry_failed=False)
    assert run_sync(db, settings, clock).ok
    assert converged(db, fake)


def test_terms_not_accepted_pause_before_anything_is_sent(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100), terms_accepted=False)
    report = run_sync(db, settings)
    assert "terms of service" in (report.outcomes[0].paused or "")
    assert fake.received == []
    destinations.update_destination(db, "ads", {"terms_accepted": True}, NOW)
    links.resume(db, "big spenders", "ads", retry_failed=False)
    assert run_sync(db, settings).ok
    assert converged(db, fake)


def test_consent_and_terms_travel_on_ingest_and_never_on_remove(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(100)
    setup_link(db, rows, ad_personalization="denied")
    run_sync(db, settings)
    import_rows(db, [with_spend(r, 0) for r in rows], NOW + dt.timedelta(minutes=1))
    run_sync(db, settings)

    (ingest,) = fake.requests("IngestAudienceMembers")
    (remove,) = fake.requests("RemoveAudienceMembers")
    assert ingest.consent.ad_user_data == 1  # CONSENT_GRANTED
    assert ingest.consent.ad_personalization == 2  # CONSENT_DENIED
    assert ingest.terms_of_service.customer_match_terms_of_service_status == 1
    assert ingest.encoding == remove.encoding == 1  # HEX
    assert not any(m.HasField("consent") for m in remove.audience_members)
    assert "consent" not in {f.name for f, _ in remove.ListFields()}
    assert fake.members(LIST_ID) == set()


def test_per_record_consent_columns_override_the_default(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    from segflow.activation import mapping

    setup_link(db, customers(60))
    # is_subscriber (true/false) doubles as a personalisation consent column.
    mapping.set_mapping(db, "customers", {"consent_ad_personalization": "is_subscriber"}, NOW)
    run_sync(db, settings)
    (ingest,) = fake.requests("IngestAudienceMembers")
    per_member = {m.consent.ad_personalization for m in ingest.audience_members}
    assert per_member == {1, 2}


def test_validate_only_changes_nothing_until_turned_off(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100), validate_only=True)
    run_sync(db, settings)
    assert [r.validate_only for r in fake.requests()] == [True]
    assert fake.members(LIST_ID) == set()
    assert any("validate_only" in w for w in _status(db).warnings)

    destinations.update_destination(db, "ads", {"validate_only": False}, NOW)
    assert _status(db).pending_adds == len(expected_members(db))
    run_sync(db, settings)
    assert converged(db, fake)


def test_entering_and_leaving_before_a_sync_costs_no_request(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(100)
    setup_link(db, rows)
    run_sync(db, settings)
    sent = len(fake.received)
    newcomer = with_spend(customers(1, seed=99, start_id=5000)[0], 900)
    import_rows(db, [newcomer], NOW + dt.timedelta(minutes=1))
    import_rows(db, [with_spend(newcomer, 1)], NOW + dt.timedelta(minutes=2))
    report = run_sync(db, settings)
    assert report.outcomes[0].requests == 0
    assert len(fake.received) == sent
    assert converged(db, fake)


def test_a_member_leaving_while_its_add_is_in_flight_is_removed_afterwards(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(100)
    setup_link(db, rows)
    leaver = next(r for r in rows if float(r[8]) > 100)

    class ExitMidFlight:
        """Delivers, but the member leaves while the request is out."""

        def __init__(self, inner: transport.Sender) -> None:
            self.inner = inner

        def send(self, operation: str, members: list[transport.OutMember]) -> str:
            request_id = self.inner.send(operation, members)
            if operation == transport.INGEST:
                import_rows(db, [with_spend(leaver, 0)], NOW + dt.timedelta(minutes=1))
            return request_id

        def close(self) -> None:
            self.inner.close()

    def make_sender(d: destinations.Destination, secret: object, s: Settings) -> ExitMidFlight:
        return ExitMidFlight(platforms.build_sender(d, None, s))

    report = run_sync(db, settings, senders=make_sender)
    # The add landed after the exit was recorded; the same pass removes it.
    assert report.outcomes[0].removed == 1
    assert fake.received[-1].method == "RemoveAudienceMembers"
    assert len(fake.received[-1].request.audience_members) == 1
    assert converged(db, fake)


def test_members_are_sent_again_before_the_540_day_limit(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    clock = Clock()
    run_sync(db, settings, clock)
    clock.advance(days=499)
    assert run_sync(db, settings, clock).outcomes[0].requests == 0
    clock.advance(days=2)
    report = run_sync(db, settings, clock)
    assert report.outcomes[0].added == len(expected_members(db))
    assert converged(db, fake)


def test_small_lists_carry_a_warning(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    status = _status(db)
    assert status.members_wanted < 100
    assert any("fewer than 100" in w for w in status.warnings)


def test_each_request_is_logged_with_its_request_id(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    fake.fail_next(Failure(grpc.StatusCode.UNAVAILABLE))
    clock = Clock()
    run_sync(db, settings, clock)
    clock.advance(hours=1)
    run_sync(db, settings, clock)
    with db.read() as conn:
        rows = conn.execute(sa.select(sync_log).order_by(sync_log.c.id)).all()
    assert [(r.operation, r.outcome) for r in rows] == [("ingest", "retry"), ("ingest", "ok")]
    assert rows[1].request_id == fake.received[-1].request_id
    assert rows[1].member_count == len(expected_members(db))
    assert rows[0].error.startswith("UNAVAILABLE")


def test_linking_an_existing_segment_sends_its_current_members(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(200))
    run_sync(db, settings)
    fake.add_list(ACCOUNT, "7002")
    google_destination(db, "second list", list_id="7002")
    links.link(db, "big spenders", "second list", NOW)
    run_sync(db, settings)
    assert fake.members("7002") == fake.members(LIST_ID) == expected_members(db)


def test_editing_a_segment_syncs_only_the_real_differences(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(300))
    run_sync(db, settings)
    before = fake.members(LIST_ID)
    segments.edit_segment(
        db,
        "big spenders",
        now=NOW,
        rules_json={
            "conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 150}]
        },
    )
    report = run_sync(db, settings)
    assert report.outcomes[0].added == 0
    assert report.outcomes[0].removed == len(before) - len(expected_members(db)) > 0
    assert converged(db, fake)


def test_a_destination_mirrors_one_segment(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(50))
    segments.create_segment(db, name="everyone", dataset="customers", rules_json=EVERYONE, now=NOW)
    with pytest.raises(InvalidInput, match="already receives segment 'big spenders'"):
        links.link(db, "everyone", "ads", NOW)


def test_linked_segments_and_destinations_cannot_be_deleted_from_under_a_list(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    from segflow import datasets

    setup_link(db, customers(50))
    with pytest.raises(InvalidInput, match="unlink first"):
        segments.delete_segment(db, "big spenders")
    with pytest.raises(InvalidInput, match="unlink first"):
        datasets.delete_dataset(db, "customers")
    with pytest.raises(InvalidInput, match="unlink it first"):
        destinations.delete_destination(db, "ads")
    links.unlink(db, "big spenders", "ads")
    segments.delete_segment(db, "big spenders")
    destinations.delete_destination(db, "ads")


def test_links_and_destinations_are_found_by_id_or_name(db: Database) -> None:
    made = setup_link(db, customers(20))
    segment_id, destination_id = made.segment_id, made.destination_id
    assert destinations.get_destination(db, destination_id).name == "ads"
    assert destinations.get_destination(db, "ads").id == destination_id
    with pytest.raises(NotFound, match="no destination with id 999$"):
        destinations.get_destination(db, 999)
    with pytest.raises(NotFound, match="no destination named 'nope'"):
        destinations.get_destination(db, "nope")
    changed = destinations.update_destination(db, destination_id, {"validate_only": True}, NOW)
    assert changed.validate_only
    google_destination(db, "other", list_id="2")
    (by_id,) = links.status(db, segment_id)
    (by_name,) = links.status(db, "big spenders")
    assert by_id.link == by_name.link == made
    assert [s.link for s in links.status(db)] == [made]
    with pytest.raises(NotFound, match="no segment with id 999$"):
        links.status(db, 999)
    with pytest.raises(NotFound, match="no segment with id 999$"):
        links.link(db, 999, destination_id, NOW)
    with pytest.raises(NotFound, match="no destination with id 999$"):
        links.link(db, segment_id, 999, NOW)
    with pytest.raises(NotFound, match="segment 'big spenders' is not linked to 'other'"):
        links.unlink(db, segment_id, "other")
    assert links.resume(db, segment_id, destination_id, retry_failed=True) == made
    gone, _ = links.unlink(db, segment_id, destination_id)
    assert gone == made and links.status(db, segment_id) == []
    relinked = links.link(db, "big spenders", "other", NOW)
    assert relinked.destination == "other"
    links.unlink(db, "big spenders", "other")
    assert destinations.delete_destination(db, destination_id).name == "ads"
    with pytest.raises(NotFound, match="no destination with id"):
        destinations.delete_destination(db, destination_id)


def test_deleted_records_are_removed_with_the_identifiers_that_were_sent(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    from tests.helpers import do_import

    rows = customers(100)
    setup_link(db, rows)
    run_sync(db, settings)
    assert fake.members(LIST_ID)
    # Replace with a file holding none of the members: their values are gone
    # from the records table, but the remove still names what was sent.
    keep = [with_spend(r, 0) for r in rows[:5]]
    import csv
    import io

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([("id", *_columns()), *keep])
    do_import(db, out.getvalue().encode(), "customers", mode="replace", confirm_delete=True)
    from segflow import engine

    engine.tick(db, NOW + dt.timedelta(minutes=5))
    run_sync(db, settings)
    assert fake.members(LIST_ID) == set() == expected_members(db)
    assert sync_rows(db) == []


def _columns() -> list[str]:
    from segflow import demo

    return list(demo.HEADER[1:])


def test_the_file_destination_writes_what_would_be_sent(
    db: Database, tmp_path: Path, settings: Settings
) -> None:
    rows = customers(100)
    import_rows(db, rows)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=EVERYONE, now=NOW
    )
    path = tmp_path / "audience.jsonl"
    destinations.add_destination(db, "dry run", destinations.FILE, {"path": str(path)}, NOW)
    links.link(db, "big spenders", "dry run", NOW)
    run_sync(db, settings)
    import_rows(db, [with_spend(r, 1) for r in rows[:3]], NOW + dt.timedelta(minutes=1))
    rule = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 2}]}
    segments.edit_segment(db, "big spenders", now=NOW, rules_json=rule)
    leaving = 3 + sum(float(r[8]) <= 2 for r in rows[3:])
    run_sync(db, settings)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["operation"] for line in lines] == ["ingest", "remove"]
    assert len(lines[0]["members"]) == 100 and len(lines[1]["members"]) == leaving
    assert lines[0]["consent"] == {"ad_user_data": "granted", "ad_personalization": "granted"}
    assert "consent" not in lines[1] and "terms_of_service" not in lines[1]
    first = lines[0]["members"][0]["user_identifiers"]
    assert {next(iter(i)) for i in first} == {"email_address", "phone_number", "address"}
    text = path.read_text()
    for row in rows:
        for raw in (row[1], row[2], row[3].lower(), row[4].lower()):
            assert not raw or raw not in text


def test_destination_settings_are_validated(db: Database) -> None:
    with pytest.raises(InvalidInput, match="operating_account_id must be a numeric id"):
        destinations.add_destination(
            db,
            "x",
            destinations.GOOGLE_ADS,
            {"operating_account_id": "12a", "product_destination_id": "1"},
            NOW,
        )
    with pytest.raises(InvalidInput, match="needs product_destination_id"):
        destinations.add_destination(
            db, "x", destinations.GOOGLE_ADS, {"operating_account_id": "1"}, NOW
        )
    with pytest.raises(InvalidInput, match="ad_user_data must be 'granted' or 'denied'"):
        destinations.add_destination(
            db,
            "x",
            destinations.GOOGLE_ADS,
            {
                "operating_account_id": "1",
                "product_destination_id": "2",
                "ad_user_data": "yes",
                "ad_personalization": "denied",
            },
            NOW,
        )
    with pytest.raises(InvalidInput, match="does not exist"):
        destinations.add_destination(
            db, "x", destinations.FILE, {"path": "/no/such/dir/out.jsonl"}, NOW
        )
    added = destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        {
            "operating_account_id": "123-456-7890",
            "product_destination_id": "42",
            "ad_user_data": "denied",
            "ad_personalization": "granted",
        },
        NOW,
    )
    assert added.config["operating_account_id"] == "1234567890"
    assert not added.terms_accepted
    with pytest.raises(InvalidInput, match="already exists"):
        google_destination(db, "ads")


def test_sync_state_is_exact_member_by_member(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    setup_link(db, customers(100))
    run_sync(db, settings)
    rows = sync_rows(db)
    assert rows and all(r[1:] == (1, 1, 0, None) for r in rows)
    ingested = {member_key(m) for r in fake.requests() for m in r.audience_members}
    assert ingested == expected_members(db)


def _with_email(row: tuple[str, ...], email: str) -> tuple[str, ...]:
    return (row[0], email, *row[2:])


def test_a_member_whose_email_changes_is_replaced_old_first(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(150)
    setup_link(db, rows)
    run_sync(db, settings)
    member = next(r for r in rows if float(r[8]) > 100 and r[1])
    before = fake.members(LIST_ID)
    sent = len(fake.received)

    import_rows(
        db, [_with_email(member, "brand.new.address@example.org")], NOW + dt.timedelta(minutes=1)
    )
    report = run_sync(db, settings)

    assert report.outcomes[0].requests == 2
    remove, ingest = fake.received[sent:]
    assert (remove.method, ingest.method) == ("RemoveAudienceMembers", "IngestAudienceMembers")
    assert len(remove.request.audience_members) == len(ingest.request.audience_members) == 1
    after = fake.members(LIST_ID)
    assert len(before - after) == len(after - before) == 1
    assert converged(db, fake)
    assert sync_rows(db) and all(r[1:] == (1, 1, 0, None) for r in sync_rows(db))


def test_a_change_that_leaves_the_identifiers_alone_costs_no_request(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(150)
    setup_link(db, rows)
    run_sync(db, settings)
    members_now = [r for r in rows if float(r[8]) > 100][:20]
    import_rows(db, [with_spend(r, 999) for r in members_now], NOW + dt.timedelta(minutes=1))
    sent = len(fake.received)
    assert run_sync(db, settings).outcomes[0].requests == 0
    assert len(fake.received) == sent
    assert all(r[3] == 0 for r in sync_rows(db))


def test_a_mapping_change_resends_what_the_lists_hold(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(150)
    setup_link(db, rows)
    run_sync(db, settings)
    with_phones = fake.members(LIST_ID)
    assert any(any(code.startswith("p:") for code in m) for m in with_phones)

    # Phones stop being sent: every member is replaced by its identifiers
    # without the phone, and nothing else changes.
    mapping.set_mapping(db, "customers", {"phone": None}, NOW + dt.timedelta(minutes=1))
    report = run_sync(db, settings)
    assert report.ok
    assert fake.members(LIST_ID) == expected_members(db)
    assert not any(code.startswith("p:") for m in fake.members(LIST_ID) for code in m)
    assert converged(db, fake)
    settled = len(fake.received)
    assert run_sync(db, settings).outcomes[0].requests == 0 and len(fake.received) == settled

    # An entry set to what it already is changes nothing and sends nothing.
    mapping.set_mapping(db, "customers", {"phone": None}, NOW + dt.timedelta(minutes=2))
    assert run_sync(db, settings).outcomes[0].requests == 0

    # And back: the phones return.
    mapping.set_mapping(db, "customers", {"phone": "phone"}, NOW + dt.timedelta(minutes=3))
    run_sync(db, settings)
    assert fake.members(LIST_ID) == expected_members(db) == with_phones
    assert converged(db, fake)


def test_a_crash_between_removing_old_identifiers_and_adding_new_ones_converges(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    rows = customers(150)
    setup_link(db, rows)
    run_sync(db, settings)
    member = next(r for r in rows if float(r[8]) > 100 and r[1])
    import_rows(db, [_with_email(member, "moved@example.org")], NOW + dt.timedelta(minutes=1))

    with pytest.raises(Crash):
        run_sync(db, settings, owner="dies", senders=dying(before=transport.INGEST))
    assert not converged(db, fake)  # the old identifiers are gone, the new not yet there
    clock = Clock()
    clock.advance(seconds=settings.lease_seconds + 1)
    assert run_sync(db, settings, clock).outcomes[0].added == 1
    assert converged(db, fake)


def test_a_crash_after_a_remove_then_a_re_entry_adds_the_member_back(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    """The remove reached Google but its acknowledgement was lost; the member
    then re-entered. segflow must not believe the list still holds them."""
    rows = customers(150)
    setup_link(db, rows)
    run_sync(db, settings)
    member = next(r for r in rows if float(r[8]) > 100 and r[1])
    import_rows(db, [with_spend(member, 1.0)], NOW + dt.timedelta(minutes=1))  # leaves

    clock = Clock()
    with pytest.raises(Crash):
        run_sync(db, settings, clock, owner="dies", senders=dying(after=transport.REMOVE))
    import_rows(db, [with_spend(member, 900.0)], NOW + dt.timedelta(minutes=2))  # back again
    clock.advance(seconds=settings.lease_seconds + 1)
    run_sync(db, settings, clock)
    assert converged(db, fake)
    (status,) = links.status(db)
    assert status.pending_adds == status.pending_removes == 0


def test_an_answer_that_arrives_after_the_lease_ran_out_is_not_recorded(
    db: Database, fake: FakeDataManager, settings: Settings
) -> None:
    """A worker's request succeeded, but by the time it could record that, its
    lease had run out and another worker had taken the list over."""
    rows = customers(100)
    setup_link(db, rows)
    clock = Clock()

    class SlowToRecord:
        def __init__(self, inner: transport.Sender) -> None:
            self.inner = inner

        def send(self, operation: str, members: list[transport.OutMember]) -> str:
            answer = self.inner.send(operation, members)
            clock.advance(seconds=settings.lease_seconds + 1)  # the outage
            # Meanwhile another worker takes the list over and syncs it.
            run_sync(db, settings, Clock(now=clock.now), owner="other")
            return answer

        def close(self) -> None:
            self.inner.close()

    report = run_sync(
        db,
        settings,
        clock,
        owner="slow",
        senders=lambda d, s, st: SlowToRecord(platforms.build_sender(d, s, st)),
    )
    assert report.outcomes[0].error == "another worker took over this link (lease expired)"
    assert report.outcomes[0].added == 0  # its late answer was not recorded
    assert converged(db, fake)
    (status,) = links.status(db)
    assert status.pending_adds == 0 and status.synced == status.members_wanted
