"""The Destinations page in a real browser (Chromium through Playwright) against the
strict fake Google: the list picker is labelled and filled from the account's lists,
says in words when there are none or Google refuses, a list can be created from the
page, and Google's fields stay hidden for a file destination. The segment page shows
the field warnings Google's answer to an upload carried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from segflow.activation import destinations
from segflow.activation.fake import FakeDataManager
from segflow.activation.google import userlists
from segflow.activation.google.client import GoogleConnection
from segflow.config import Settings
from segflow.db import Database
from segflow.web.server import LiveServer, live_server
from tests.helpers import asks_in_row, confirm_in_row, needs_chromium
from tests.sync_helpers import (
    ACCOUNT,
    LIST_ID,
    NOW,
    Clock,
    customers,
    run_sync,
    setup_link,
)

EMPTY_ACCOUNT = "5550001111"
SECOND_LIST = "7002"

pytestmark = needs_chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def google() -> Iterator[FakeDataManager]:
    with FakeDataManager() as server:
        server.add_account(ACCOUNT)
        server.add_account(EMPTY_ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID, display_name="Existing list")
        server.add_list(ACCOUNT, SECOND_LIST, display_name="Second list")
        yield server


@pytest.fixture
def server(db: Database, google: FakeDataManager) -> Iterator[LiveServer]:
    settings = Settings(datamanager_endpoint=google.address, sync_timeout=5)
    with live_server(db, settings, poll_interval=0.2) as running:
        yield running


def _ready(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def _google_form(page: Any, name: str, account: str = ACCOUNT) -> None:
    page.fill("#d-name", name)
    page.select_option("#d-kind", "google_ads")
    page.fill("#d-account", account)
    page.select_option("#d-aud", "granted")
    page.select_option("#d-ap", "denied")


def _lists_of(google: FakeDataManager, account: str = ACCOUNT) -> dict[str, tuple[str, str, int]]:
    connection = GoogleConnection(None, Settings(datamanager_endpoint=google.address))
    try:
        return {
            i.list_id: (i.display_name, i.description, i.membership_days or 0)
            for i in userlists.all_lists(connection, account)
        }
    finally:
        connection.close()


def test_googles_fields_are_hidden_while_the_kind_is_file(server: LiveServer, page: Any) -> None:
    _ready(page, f"{server.url}/destinations")
    assert page.input_value("#d-kind") == "file"
    google_fields = ("#d-account", "#d-login", "#d-key", "#d-terms", "#d-list-choice", "#d-list")
    assert page.is_visible("#d-path")
    assert [f for f in google_fields if page.is_visible(f)] == []
    page.select_option("#d-kind", "google_ads")
    assert [f for f in google_fields if not page.is_visible(f)] == []
    assert not page.is_visible("#d-path") and not page.is_visible("#d-new-name")
    page.select_option("#d-kind", "file")
    assert [f for f in google_fields if page.is_visible(f)] == []


def test_pick_a_list_from_the_accounts_lists(
    server: LiveServer, page: Any, db: Database, google: FakeDataManager
) -> None:
    _ready(page, f"{server.url}/destinations")
    _google_form(page, "ads")
    picker = page.get_by_label("Customer Match list")
    assert picker.evaluate("e => e.id") == "d-list-choice"
    page.click("#d-load-lists")
    page.wait_for_selector("#d-lists-status span:text('2 lists in account 1234567890')")
    labels = picker.evaluate("e => [...e.options].map(o => o.textContent)")
    assert labels[:2] == [
        f"Existing list ({LIST_ID}), 0 members",
        f"Second list ({SECOND_LIST}), 0 members",
    ]
    assert labels[2:] == ["enter a list id…", "create a new list…"]
    assert page.input_value("#d-list-choice") == f"list:{LIST_ID}"
    assert not page.is_visible("#d-list") and not page.is_visible("#d-new-name")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#destinations td:text('ads')")
    stored = destinations.get_destination(db, "ads")
    assert stored.config["product_destination_id"] == LIST_ID
    assert stored.consent == ("granted", "denied")
    assert set(_lists_of(google)) == {LIST_ID, SECOND_LIST}  # nothing created


def test_an_account_without_lists_and_googles_refusal_are_said_in_words(
    server: LiveServer, page: Any, db: Database
) -> None:
    _ready(page, f"{server.url}/destinations")
    _google_form(page, "ads")
    page.fill("#d-account", "")
    page.click("#d-load-lists")
    page.wait_for_selector("#d-lists-status .error:text('Enter the operating account id first.')")

    page.fill("#d-account", "999-000-1111")
    page.click("#d-load-lists")
    page.wait_for_selector("#d-lists-status .error:text('Could not read the account')")
    text = page.text_content("#d-lists-status")
    assert "Google refused to list the account's user lists" in text
    assert "PERMISSION_DENIED" in text and "9990001111" in text

    page.fill("#d-account", EMPTY_ACCOUNT)
    page.click("#d-load-lists")
    page.wait_for_selector(
        f"#d-lists-status span:text('Account {EMPTY_ACCOUNT} has no Customer Match lists yet')"
    )
    # Nothing to pick: the page offers to create one.
    assert page.input_value("#d-list-choice") == "new"
    assert page.is_visible("#d-new-name") and page.is_visible("#d-new-days")
    assert destinations.list_destinations(db) == []


def test_create_a_list_from_the_page(
    server: LiveServer, page: Any, db: Database, google: FakeDataManager
) -> None:
    _ready(page, f"{server.url}/destinations")
    _google_form(page, "new list", EMPTY_ACCOUNT)
    page.get_by_label("Customer Match list").select_option("new")
    page.get_by_label("New list's display name").fill("From the page")
    page.get_by_label("Description").fill("made in the browser")
    days = page.get_by_label("Membership duration (days, at most 540)")
    days.fill("541")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#d-error:text('must be 1 to 540 days, got 541')")
    assert _lists_of(google, EMPTY_ACCOUNT) == {} and destinations.list_destinations(db) == []

    days.fill("30")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#destinations td:text('new list')")
    [(list_id, made)] = _lists_of(google, EMPTY_ACCOUNT).items()
    assert made == ("From the page", "made in the browser", 30)
    assert destinations.get_destination(db, "new list").config["product_destination_id"] == list_id

    # A second list of the same name: Google's refusal is shown, nothing is stored.
    _google_form(page, "again", EMPTY_ACCOUNT)
    page.get_by_label("Customer Match list").select_option("new")
    page.get_by_label("New list's display name").fill("From the page")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#d-error:text('DISPLAY_NAME_ALREADY_USED')")
    assert [d.name for d in destinations.list_destinations(db)] == ["new list"]


def test_the_lists_section_names_its_picker_and_says_when_there_is_nothing(
    server: LiveServer, page: Any, db: Database, google: FakeDataManager
) -> None:
    _ready(page, f"{server.url}/destinations")
    assert page.is_visible("#lists-none") and not page.is_visible("#lists-form")
    assert "No google_ads destination yet" in page.text_content("#lists-none")
    accounts = (
        ("ads", ACCOUNT, LIST_ID),
        ("empty", EMPTY_ACCOUNT, "1"),
        ("gone", "9990001111", "1"),
    )
    for name, account, list_id in accounts:
        destinations.add_destination(
            db,
            name,
            destinations.GOOGLE_ADS,
            {
                "operating_account_id": account,
                "product_destination_id": list_id,
                "ad_user_data": "granted",
                "ad_personalization": "granted",
            },
            NOW,
        )
    _ready(page, f"{server.url}/destinations")
    assert not page.is_visible("#lists-none")
    section = page.get_by_label("Destination")
    assert section.evaluate("e => e.id") == "lists-destination"
    section.select_option(label="ads")
    page.click("#lists-form button[type=submit]")
    page.wait_for_selector("#google-lists td:text('Existing list')")
    assert f"{LIST_ID} (this destination's)" in page.text_content("#google-lists")

    section.select_option(label="empty")
    page.click("#lists-form button[type=submit]")
    page.wait_for_selector(f"#lists-empty:text('Account {EMPTY_ACCOUNT} has no Customer Match')")
    assert not page.is_visible("#google-lists")

    # An account Google does not let these credentials see.
    section.select_option(label="gone")
    page.click("#lists-form button[type=submit]")
    page.wait_for_selector("#lists-error:text('Could not read the lists')")
    assert "PERMISSION_DENIED" in page.text_content("#lists-error")
    assert not page.is_visible("#lists-empty")


def test_the_segment_page_shows_the_field_warnings_google_gave(
    db: Database, google: FakeDataManager, page: Any
) -> None:
    settings = Settings(datamanager_endpoint=google.address, sync_timeout=5)
    link = setup_link(db, customers(300))
    clock = Clock()
    run_sync(db, settings, clock)
    code = next(c for key in sorted(google.members(LIST_ID)) for c in key if c.startswith("e:"))
    google.warn = {code: "WARNING_REASON_INVALID_REGION_CODE"}
    destinations.update_destination(db, "ads", {"ad_personalization": "denied"}, NOW)
    run_sync(db, settings, clock)
    with live_server(db, settings, poll_interval=0.2) as running:
        _ready(page, f"{running.url}/segments/{link.segment_id}")
        page.wait_for_selector("#links td.google .warning")
        assert page.text_content("#links td.google .warning") == (
            "Google warned about 1 field of the last upload"
        )
        page.click("#links tr.uploads summary")
        cells = page.locator("#links td.field-warnings").all_text_contents()
        assert len(cells) == 2 and cells[1] == "-"
        assert cells[0].startswith("WARNING_REASON_INVALID_REGION_CODE (audience_members[")
        assert cells[0].endswith("].user_data): a value was ignored")


def test_the_table_says_what_each_destination_is_fed_by_and_deletes_after_asking(
    db: Database, server: LiveServer, page: Any
) -> None:
    _ready(page, f"{server.url}/destinations")
    assert page.is_visible("#destinations-empty") and not page.is_visible("#destinations")

    setup_link(db, customers(30))  # "big spenders" -> "ads"
    destinations.add_destination(db, "spare", "file", {"path": "spare.jsonl"}, NOW)
    _ready(page, f"{server.url}/destinations")
    assert not page.is_visible("#destinations-empty")
    ads = page.locator("#destinations tbody tr", has_text="ads").first
    cells = [c.strip() for c in ads.locator("td").all_text_contents()]
    assert cells[1] == "Google Customer Match"
    settings = ads.locator("td.settings div").all_text_contents()
    assert f"account: {ACCOUNT}" in settings and f"list: {LIST_ID}" in settings
    assert "Customer Match terms accepted" in settings
    assert not any("ad_user_data" in line or "," in line for line in settings)
    assert ads.get_by_role("link", name="big spenders").get_attribute("href", timeout=2000)
    # A linked destination cannot be deleted from here: the button says why.
    linked_delete = ads.get_by_role("button", name="Delete")
    assert linked_delete.is_disabled() and "unlink" in (linked_delete.get_attribute("title") or "")

    spare = page.locator("#destinations tbody tr", has_text="spare")
    assert "none" in (spare.locator("td").nth(4).text_content() or "")
    # Asked once more in the row; Cancel keeps it.
    asks_in_row(spare, "Delete", "Delete spare?")
    assert [d.name for d in destinations.list_destinations(db)] == ["ads", "spare"]
    confirm_in_row(spare, "Delete")
    page.wait_for_selector("#destinations tbody tr:has-text('spare')", state="detached")
    assert [d.name for d in destinations.list_destinations(db)] == ["ads"]
