"""Adding Meta and TikTok destinations from the Destinations page, in a real browser.

Each platform's fields show only for its kind, the form sends what the
API takes, the platform is asked before anything is stored (a refusal is
shown in words), and the token never comes back to the page.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segflow.activation import destinations
from segflow.activation.fake_meta import FakeMeta
from segflow.activation.fake_tiktok import FakeTikTok
from segflow.config import Settings
from segflow.db import Database
from segflow.web.server import LiveServer, live_server
from tests.helpers import needs_chromium

pytestmark = needs_chromium

META_ACCOUNT = "4455667788"
META_TOKEN = "EAAB-page-token-1"
ADVERTISER = "7100000000000000001"
TT_TOKEN = "tt-page-token-1"


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
def fakes() -> Iterator[tuple[FakeMeta, FakeTikTok]]:
    with FakeMeta() as meta, FakeTikTok(min_audience_size=1) as tiktok:
        meta.add_account(META_ACCOUNT)
        meta.add_token(META_TOKEN, accounts=[META_ACCOUNT])
        tiktok.add_token(TT_TOKEN, [ADVERTISER])
        yield meta, tiktok


@pytest.fixture
def server(db: Database, fakes: tuple[FakeMeta, FakeTikTok]) -> Iterator[LiveServer]:
    meta, tiktok = fakes
    settings = Settings(meta_graph_url=meta.url, tiktok_endpoint=tiktok.base_url, sync_timeout=5)
    with live_server(db, settings, poll_interval=0.2) as running:
        yield running


def _open(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/destinations")
    page.wait_for_selector("body[data-ready=true]")


def test_each_kind_shows_only_its_own_fields(server: LiveServer, page: Any) -> None:
    _open(page, server)
    page.select_option("#d-kind", "meta")
    assert page.is_visible("#d-meta-account") and page.is_visible("#d-meta-token")
    assert not page.is_visible("#d-account") and not page.is_visible("#d-aud")
    assert not page.is_visible("#d-tt-advertiser")
    page.select_option("#d-meta-choice", "new")
    assert page.is_visible("#d-meta-name") and not page.is_visible("#d-meta-audience")
    page.select_option("#d-kind", "tiktok")
    assert page.is_visible("#d-tt-advertiser") and not page.is_visible("#d-meta-account")
    assert not page.is_visible("#d-aud")
    page.select_option("#d-kind", "google_ads")
    assert page.is_visible("#d-aud") and not page.is_visible("#d-tt-advertiser")


def test_a_meta_audience_is_created_from_the_page(
    server: LiveServer, page: Any, db: Database, fakes: tuple[FakeMeta, FakeTikTok]
) -> None:
    meta, _ = fakes
    _open(page, server)
    page.fill("#d-name", "fb")
    page.select_option("#d-kind", "meta")
    page.fill("#d-meta-account", f"act_{META_ACCOUNT}")
    page.select_option("#d-meta-choice", "new")
    page.fill("#d-meta-name", "Page audience")
    page.select_option("#d-meta-source", "USER_PROVIDED_ONLY")
    page.fill("#d-meta-token", META_TOKEN)
    page.click("#destination-form button[type=submit]")
    row = page.locator("#destinations tbody tr", has_text="fb")
    row.wait_for()
    text = row.inner_text()
    assert "Meta Custom Audience" in text and f"act_{META_ACCOUNT}" in text
    assert "Custom Audience terms accepted" in text
    assert META_TOKEN not in page.content()
    (audience,) = meta.audiences(META_ACCOUNT)
    assert destinations.get_destination(db, "fb").config["audience_id"] == audience


def test_metas_refusal_is_shown_and_nothing_is_stored(
    server: LiveServer, page: Any, db: Database
) -> None:
    _open(page, server)
    page.fill("#d-name", "fb")
    page.select_option("#d-kind", "meta")
    page.fill("#d-meta-account", f"act_{META_ACCOUNT}")
    page.fill("#d-meta-audience", "999")
    page.fill("#d-meta-token", "EAAB-wrong")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#d-error:text('Invalid OAuth access token')")
    assert destinations.list_destinations(db) == []


def test_a_tiktok_destination_is_added_from_the_page(
    server: LiveServer, page: Any, db: Database
) -> None:
    _open(page, server)
    page.fill("#d-name", "tt")
    page.select_option("#d-kind", "tiktok")
    page.fill("#d-tt-advertiser", ADVERTISER)
    page.select_option("#d-tt-choice", "new")
    page.fill("#d-tt-name", "Page audience")
    page.select_option("#d-tt-type", "phone")
    page.fill("#d-tt-token", TT_TOKEN)
    page.click("#destination-form button[type=submit]")
    row = page.locator("#destinations tbody tr", has_text="tt")
    row.wait_for()
    assert "TikTok audience" in row.inner_text() and "identifier: phone" in row.inner_text()
    assert TT_TOKEN not in page.content()
    stored = destinations.get_destination(db, "tt").config
    assert stored["id_type"] == "phone" and stored["audience_name"] == "Page audience"


@pytest.mark.parametrize("kind", ["meta", "tiktok"])
def test_each_platforms_form_fits_a_phone_and_a_desktop(
    server: LiveServer, browser: Any, request: pytest.FixtureRequest, kind: str
) -> None:
    artifacts = (
        Path(
            os.environ.get(
                "SEGFLOW_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"
            )
        )
        / "screenshots"
    )
    artifacts.mkdir(parents=True, exist_ok=True)
    engine = request.node.callspec.params.get("db_url", "db")
    for width in (1200, 390):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        try:
            _open(page, server)
            page.select_option("#d-kind", kind)
            choice = "#d-meta-choice" if kind == "meta" else "#d-tt-choice"
            page.select_option(choice, "new")
            scrolled = page.evaluate("document.documentElement.scrollWidth")
            assert scrolled <= width, f"the {kind} form is {scrolled} px wide at {width} px"
            page.screenshot(
                path=str(artifacts / f"destinations-{kind}-{width}px-{engine}.png"), full_page=True
            )
        finally:
            context.close()


def test_the_segment_page_shows_what_meta_answered(
    server: LiveServer, page: Any, db: Database, fakes: tuple[FakeMeta, FakeTikTok]
) -> None:
    from segflow import segments
    from segflow.activation import links
    from segflow.activation.meta import audiences
    from tests.sync_helpers import HIGH_SPEND, NOW, customers, import_rows, run_sync

    meta, _ = fakes
    settings = Settings(meta_graph_url=meta.url, sync_timeout=5)
    import_rows(db, customers(80))
    made = segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    destinations.add_destination(
        db, "fb", destinations.META,
        {"ad_account_id": META_ACCOUNT, "audience_name": "A", "customer_file_source":
         "USER_PROVIDED_ONLY"},
        NOW, {"access_token": META_TOKEN}, settings.cipher,
        prepare=audiences.preparer(settings),
    )  # fmt: skip
    links.link(db, "big spenders", "fb", NOW)
    assert run_sync(db, settings).ok
    page.goto(f"{server.url}/segments/{made.id}")
    page.wait_for_selector("body[data-ready=true]")
    cell = page.locator("#links td.google").first
    cell.wait_for()
    assert "received" in cell.inner_text()
    assert "not checked yet" not in page.locator("#links").inner_text()
