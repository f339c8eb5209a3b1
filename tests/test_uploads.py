"""Upload diagnostics against the strict fake: Google's request statuses, match rates and
list sizes, polled with backoff and shown by ``segflow links`` and ``links show``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from segflow import segments
from segflow.activation import destinations, links, uploads
from segflow.activation.fake import Failure, FakeDataManager
from segflow.activation.google.client import Connections, GoogleConnection
from segflow.cli.main import main
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.db.schema import sync_log
from segflow.web.server import live_server
from segflow.worker import Worker
from tests.helpers import needs_chromium
from tests.sync_helpers import (
    ACCOUNT,
    HIGH_SPEND,
    LIST_ID,
    NOW,
    Clock,
    customers,
    expected_members,
    import_rows,
    run_sync,
    setup_link,
)

CONSENT = {"ad_user_data": "granted", "ad_personalization": "granted"}


@pytest.fixture
def google() -> Iterator[FakeDataManager]:
    """The strict fake with the tests' account and list; one PROCESSING answer per request."""
    with FakeDataManager(processing_polls=1) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID, display_name="Big spenders")
        yield server


@pytest.fixture
def settings(google: FakeDataManager) -> Settings:
    return Settings(datamanager_endpoint=google.address, sync_timeout=5)


def _clock() -> Clock:
    # Near the real time, so that commands reading the system clock see the
    # uploads as recent (Google reports on a request for 24 hours only).
    return Clock(now=utcnow().replace(microsecond=0))


def _asked(google: FakeDataManager, method: str = "RetrieveRequestStatus") -> int:
    return sum(1 for r in google.received if r.method == method)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _linked(db: Database) -> int:
    link = setup_link(db, customers(300), **CONSENT)
    return link.id


def test_processing_then_success_with_match_rate_shown_by_links_show(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _linked(db)
    clock = _clock()
    report = run_sync(db, settings, clock)
    sent = report.outcomes[0].added
    assert sent > 100 and google.members(LIST_ID) == expected_members(db)
    [request_id] = [r.request_id for r in google.received if r.method == "IngestAudienceMembers"]

    # Accepted is not processed: the members are synced but await Google.
    [state] = links.status(db, now=clock.now)
    assert (state.synced, state.awaiting_google) == (sent, sent)
    assert state.uploads[0].status is None

    # Google says to ask after about 30 minutes: not before.
    clock.advance(minutes=10)
    assert uploads.poll(db, settings, clock=clock).checked == []
    assert _asked(google) == 0

    [(_, live)] = links.live_states(db).values()
    assert live["google_checked_at"] is None
    clock.advance(minutes=21)
    assert uploads.poll(db, settings, clock=clock).checked == [(request_id, "PROCESSING")]
    # Live pages learn of Google's answer (the segment page reloads its links).
    [(_, live)] = links.live_states(db).values()
    assert live["google_checked_at"] is not None and live["list_read_at"] is not None
    [state] = links.status(db, now=clock.now)
    assert state.uploads[0].status == "PROCESSING"
    assert state.awaiting_google == sent
    # Asked again only after the backoff (30 minutes after this check).
    assert uploads.poll(db, settings, clock=clock).checked == []
    assert _asked(google) == 1

    clock.advance(minutes=31)
    assert uploads.poll(db, settings, clock=clock).checked == [(request_id, "SUCCESS")]
    [state] = links.status(db, now=clock.now)
    upload = state.uploads[0]
    assert (upload.status, upload.match_rate, upload.records) == ("SUCCESS", "91-100%", sent)
    assert state.awaiting_google == 0 and state.match_rate == "91-100%"
    assert not [w for w in state.warnings if "Google could not" in w]
    # A final answer is never asked for again.
    clock.advance(hours=3)
    assert uploads.poll(db, settings, clock=clock).checked == []
    assert _asked(google) == 2

    monkeypatch.setenv("SEGFLOW_DATAMANAGER_ENDPOINT", google.address)
    code, out, err = _cli(capsys, "links", "show", "big spenders", "ads", "--db", db_url)
    assert code == 0, err
    assert "last uploads:" in out
    [row] = [line for line in out.splitlines() if request_id in line]
    assert "ingest" in row and f"{sent:,}" in row and "SUCCESS" in row and "91-100%" in row
    assert f"list at Google: 'Big spenders' {sent:,} members" in out

    code, out, _ = _cli(capsys, "links", "--db", db_url)
    assert f"last upload: ingest of {sent:,} members" in out and "SUCCESS" in out
    assert "match rate: 91-100%" in out

    code, out, _ = _cli(capsys, "links", "--db", db_url, "--json")
    [item] = json.loads(out)
    assert item["awaiting_google"] == 0
    assert item["last_upload"]["google_status"] == "SUCCESS"
    assert item["last_upload"]["request_id"] == request_id
    assert item["match_rate"] == "91-100%"
    assert item["list_size"] == sent


def test_partial_success_is_a_warning_with_error_counts(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _linked(db)
    bad = sorted(expected_members(db))[:3]
    google.refuse_later = {codes[0] for codes in bad}
    clock = _clock()
    sent = run_sync(db, settings, clock).outcomes[0].added
    for _ in range(2):
        clock.advance(minutes=31)
        uploads.poll(db, settings, clock=clock)

    [state] = links.status(db, now=clock.now)
    upload = state.uploads[0]
    assert upload.status == "PARTIAL_SUCCESS"
    assert upload.errors == {"INVALID_FORMAT": 3}
    when = upload.at.strftime("%Y-%m-%d %H:%M UTC")
    expected = (
        f"Google could not process 3 of {sent:,} members of the upload at {when}: INVALID_FORMAT 3"
    )
    assert expected in state.warnings

    code, out, _ = _cli(capsys, "links", "--db", db_url)
    assert f"warning: {expected}" in out
    code, out, _ = _cli(capsys, "links", "show", "big spenders", "ads", "--db", db_url)
    [row] = [line for line in out.splitlines() if upload.request_id in line]
    assert "PARTIAL_SUCCESS" in row and "INVALID_FORMAT 3" in row


def test_backoff_doubles_and_gives_up_after_24_hours(
    db: Database, settings: Settings, google: FakeDataManager
) -> None:
    _linked(db)
    google.processing_polls = 10_000
    clock = _clock()
    run_sync(db, settings, clock)
    sent_at = _log_row(db).at
    clock.advance(minutes=31)
    waits = []
    while clock.now - sent_at < dt.timedelta(hours=25):
        before = _asked(google)
        uploads.poll(db, settings, clock=clock)
        if _asked(google) > before:
            row = _log_row(db)
            if row.google_next_check_at is not None:
                waits.append(round((row.google_next_check_at - clock.now).total_seconds() / 60))
        clock.advance(minutes=5)
    # 30 min, 1 h, 2 h, 4 h, 8 h, then the last ask just inside Google's 24 hours.
    assert waits[:5] == [30, 60, 120, 240, 480]
    assert _asked(google) <= 8
    row = _log_row(db)
    assert row.google_status == "UNKNOWN"
    assert "24 h" in row.google_error
    [state] = links.status(db, now=clock.now)
    assert state.uploads[0].status == "UNKNOWN" and state.awaiting_google == 0


def test_a_request_is_asked_about_by_one_poller_at_a_time(
    db: Database, settings: Settings, google: FakeDataManager
) -> None:
    _linked(db)
    clock = _clock()
    run_sync(db, settings, clock)
    clock.advance(minutes=31)
    inner: list[uploads.PollReport] = []

    class Watched(Connections):
        def get(self, destination_id: int, secret: Any, s: Settings) -> GoogleConnection:
            # A second worker polling while this one holds the request.
            inner.append(uploads.poll(db, settings, clock=clock))
            return super().get(destination_id, secret, s)

    pool = Watched()
    outer = uploads.poll(db, settings, clock=clock, connections=pool)
    pool.close()
    assert [status for _, status in outer.checked] == ["PROCESSING"]
    assert inner and all(r.checked == [] for r in inner)
    assert _asked(google) == 1


def test_googles_list_size_drives_the_small_list_warning_and_is_read_hourly(
    db: Database, settings: Settings, google: FakeDataManager
) -> None:
    _linked(db)
    wanted = sorted(expected_members(db))
    held = 90
    google.refuse_later = {codes[0] for codes in wanted[held:]}
    clock = _clock()
    run_sync(db, settings, clock)
    [state] = links.status(db, now=clock.now)
    assert state.members_wanted > 100 and state.list_size is None
    assert not [w for w in state.warnings if "fewer than 100" in w]

    uploads.poll(db, settings, clock=clock)
    [state] = links.status(db, now=clock.now)
    assert state.list_size == held
    assert (
        f"Google counts {held} members in the list: it does not serve Customer Match lists "
        "with fewer than 100"
    ) in state.warnings
    for _ in range(5):
        clock.advance(minutes=10)
        uploads.poll(db, settings, clock=clock)
    assert _asked(google, "GetUserList") == 1
    clock.advance(minutes=15)
    uploads.poll(db, settings, clock=clock)
    assert _asked(google, "GetUserList") == 2


def test_google_unreachable_costs_one_ask_per_pass_and_the_requests_wait(
    db: Database, google: FakeDataManager
) -> None:
    _linked(db)
    settings = Settings(datamanager_endpoint=google.address, sync_timeout=5, sync_batch=50)
    clock = _clock()
    assert run_sync(db, settings, clock).outcomes[0].requests >= 3
    clock.advance(minutes=31)
    google.fail_next(Failure(grpc.StatusCode.UNAVAILABLE, "down for maintenance"))
    report = uploads.poll(db, settings, clock=clock)
    assert report.checked == [] and len(report.errors) == 1
    assert "down for maintenance" in report.errors[0]
    assert _asked(google) == 1
    # The failed one waits its backoff; the others were not asked and are due.
    report = uploads.poll(db, settings, clock=clock)
    assert len(report.checked) >= 2 and report.errors == []
    for _ in range(3):
        clock.advance(minutes=31)
        uploads.poll(db, settings, clock=clock)
    [state] = links.status(db, now=clock.now)
    assert {u.status for u in state.uploads} == {"SUCCESS"}


def test_status_and_list_reads_carry_an_oauth_token(tmp_path: Path, db: Database) -> None:
    with FakeDataManager(require_auth=True) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID)
        settings = Settings(
            datamanager_endpoint=server.address,
            oauth_token_uri=server.token_uri,
            sync_timeout=5,
            secret_key_file=str(tmp_path / "key"),
        )
        client_id, client_secret, refresh_token = server.oauth_client()
        secret = {
            "type": "oauth",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        import_rows(db, customers(300))
        segments.create_segment(
            db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
        )
        destinations.add_destination(
            db,
            "ads",
            destinations.GOOGLE_ADS,
            {
                "operating_account_id": ACCOUNT,
                "product_destination_id": LIST_ID,
                "terms_accepted": True,
                **CONSENT,
            },
            NOW,
            secret,
            settings.cipher,
        )
        links.link(db, "big spenders", "ads", NOW)
        clock = _clock()
        run_sync(db, settings, clock)
        for _ in range(2):
            clock.advance(minutes=31)
            report = uploads.poll(db, settings, clock=clock)
            assert report.errors == []
        assert {r.outcome for r in server.received} == {"OK"}
        [state] = links.status(db, now=clock.now)
        assert state.uploads[0].status == "SUCCESS" and state.list_size is not None


def test_an_unknown_request_id_ends_as_unknown(
    db: Database, settings: Settings, google: FakeDataManager
) -> None:
    _linked(db)
    clock = _clock()
    run_sync(db, settings, clock)
    with db.write() as conn:
        conn.execute(sa.update(sync_log).values(request_id="no-such-request"))
    clock.advance(minutes=31)
    assert uploads.poll(db, settings, clock=clock).checked == [("no-such-request", "UNKNOWN")]
    row = _log_row(db)
    assert row.google_status == "UNKNOWN" and "INVALID_ARGUMENT" in row.google_error
    clock.advance(hours=2)
    assert uploads.poll(db, settings, clock=clock).checked == []


def _log_row(db: Database) -> Any:
    with db.read() as conn:
        return conn.execute(
            sa.select(sync_log).where(sync_log.c.outcome == "ok").order_by(sync_log.c.id)
        ).first()


def test_the_worker_pass_polls_after_it_syncs(
    db: Database, settings: Settings, google: FakeDataManager
) -> None:
    _linked(db)
    clock = _clock()
    worker = Worker(db, settings, interval=60, clock=clock)
    worker.run_pass()
    [state] = links.status(db, now=clock.now)
    assert state.synced > 100 and state.uploads[0].status is None
    assert state.list_size == state.synced
    for _ in range(2):
        clock.advance(minutes=31)
        worker.run_pass()
    [state] = links.status(db, now=clock.now)
    assert state.uploads[0].status == "SUCCESS" and state.awaiting_google == 0


# ---------------------------------------------------------------- the segment page


@needs_chromium
def test_the_segment_page_shows_googles_status_match_rate_and_warnings(
    db: Database, google: FakeDataManager, settings: Settings, browser: Any
) -> None:

    _linked(db)
    bad = sorted(expected_members(db))[:3]
    google.refuse_later = {codes[0] for codes in bad}
    clock = _clock()
    run_sync(db, settings, clock)
    for _ in range(2):
        clock.advance(minutes=31)
        uploads.poll(db, settings, clock=clock)
    [state] = links.status(db, now=clock.now)
    with live_server(db, settings, poll_interval=0.2) as server:
        with _page_at(browser, f"{server.url}/segments/{state.link.segment_id}") as page:
            page.wait_for_selector("#links td.google div")
            google_cell = page.text_content("#links td.google") or ""
            assert "partial success" in google_cell and "match rate 91-100%" in google_cell
            assert "Google could not process 3 of" in (page.text_content("#links") or "")
            page.click("#links details summary")
            row = page.text_content("table.uploads tbody tr") or ""
            assert state.uploads[0].request_id in row and "INVALID_FORMAT 3" in row

            page.goto(f"{server.url}/destinations")
            page.wait_for_selector("body[data-ready=true]")
            page.click("#lists-form button[type=submit]")
            page.wait_for_selector("#google-lists td")
            listed = page.text_content("#google-lists") or ""
            assert f"{LIST_ID} (this destination's)" in listed and "Big spenders" in listed


@needs_chromium
def test_the_segment_page_resumes_a_paused_link_and_resends_refused_members(
    db: Database, google: FakeDataManager, settings: Settings, browser: Any
) -> None:
    setup_link(db, customers(300), list_id="4040", **CONSENT)  # no such list: it pauses
    run_sync(db, settings, _clock())
    [state] = links.status(db)
    assert state.paused_reason
    with live_server(db, settings, poll_interval=0.2) as server:
        with _page_at(browser, f"{server.url}/segments/{state.link.segment_id}") as page:
            status = page.locator("#links tbody tr").first.locator("td").nth(1)
            assert "paused: Google refused the list" in (status.text_content() or "")
            google.add_list(ACCOUNT, "4040")
            resume = status.get_by_role("button", name="Resume")
            resume.click()
            resume.wait_for(state="detached")
            assert (status.text_content() or "").startswith("active")
            # The running worker was woken and sent everyone to the list now there.
            _wait_until(lambda: links.status(db)[0].synced == len(expected_members(db)))
            assert links.status(db)[0].paused_reason is None

    # One member refused (set up with no server running, so no worker races it):
    # the page says why, and sends it again when asked.
    before = expected_members(db)
    import_rows(db, [*customers(300), *customers(40, seed=5, start_id=9_000)])
    (bad, *_) = sorted(expected_members(db) - before)
    google.refuse = {bad[0]}
    run_sync(db, settings, _clock())
    assert links.status(db)[0].failed == 1
    google.refuse = set()
    with live_server(db, settings, poll_interval=0.2) as server:
        with _page_at(browser, f"{server.url}/segments/{state.link.segment_id}") as page:
            page.click("#links td.num details summary")
            page.wait_for_selector("ul.refused li a")
            assert "INVALID_AUDIENCE_MEMBER" in (page.text_content("ul.refused") or "")
            page.get_by_role("button", name="Send 1 refused again").click()
            _wait_until(lambda: links.status(db)[0].failed == 0)
            _wait_until(lambda: bad in google.members("4040"))


@contextmanager
def _page_at(browser: Any, url: str) -> Iterator[Any]:
    """A new page at ``url``, loaded; no JavaScript error by the time it closes."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    yield page
    page.close()
    assert errors == []


def _wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_status_reads_are_paced_per_project_apart_from_sends(
    db: Database, google: FakeDataManager, settings: Settings
) -> None:
    _linked(db)
    clock = _clock()
    assert run_sync(db, dataclasses.replace(settings, sync_batch=50), clock).ok
    sent = _asked(google, "IngestAudienceMembers")
    assert sent >= 2
    clock.advance(minutes=31)
    one_a_minute = dataclasses.replace(settings, google_requests_per_minute=1)

    uploads.poll(db, one_a_minute, clock=clock)
    assert _asked(google) == 1  # the rest wait for the next minute
    clock.advance(minutes=1)
    uploads.poll(db, one_a_minute, clock=clock)
    assert _asked(google) == 2
