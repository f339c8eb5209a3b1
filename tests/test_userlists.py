"""Customer Match lists through UserListService, against the strict fake: a destination
creates its list when added (or names an existing one), and a person can list the
account's lists to pick from; CLI and API, both engines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from segflow import segments
from segflow.activation import destinations, links, uploads
from segflow.activation.fake import FakeDataManager
from segflow.activation.google import userlists
from segflow.activation.google.client import GoogleConnection
from segflow.cli.main import main
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.web.app import create_app
from tests.sync_helpers import (
    ACCOUNT,
    HIGH_SPEND,
    LIST_ID,
    NOW,
    Clock,
    customers,
    import_rows,
    run_sync,
)

CONSENT_FLAGS = ("--ad-user-data", "granted", "--ad-personalization", "granted")
CONSENT = {"ad_user_data": "granted", "ad_personalization": "granted"}


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDataManager]:
    with FakeDataManager(processing_polls=1) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID, display_name="Existing list")
        monkeypatch.setenv("SEGFLOW_DATAMANAGER_ENDPOINT", server.address)
        yield server


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _add(db_url: str, name: str, *extra: str) -> list[str]:
    return [
        "destinations",
        "add",
        "google_ads",
        name,
        "--operating-account-id",
        ACCOUNT,
        "--terms-accepted",
        *CONSENT_FLAGS,
        *extra,
        "--db",
        db_url,
    ]


def _lists_of(google: FakeDataManager) -> dict[str, tuple[str, str, int]]:
    connection = GoogleConnection(None, Settings(datamanager_endpoint=google.address))
    try:
        return {
            i.list_id: (i.display_name, i.description, i.membership_days or 0)
            for i in userlists.all_lists(connection, ACCOUNT)
        }
    finally:
        connection.close()


def test_cli_creates_the_list_at_google_and_stores_its_id(
    db: Database, db_url: str, google: FakeDataManager, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _add(
        db_url,
        "ads",
        "--create-list",
        "Big spenders",
        "--list-description",
        "spent over 100",
        "--membership-days",
        "30",
    )
    code, out, err = _cli(capsys, *argv)
    assert code == 0, err
    made = {k: v for k, v in _lists_of(google).items() if k != LIST_ID}
    [(list_id, described)] = made.items()
    assert described == ("Big spenders", "spent over 100", 30)
    stored = destinations.get_destination(db, "ads")
    assert stored.config["product_destination_id"] == list_id
    assert f"list {list_id}" in out

    # The new list is the one members go to.
    import_rows(db, customers(150))
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    links.link(db, "big spenders", "ads", NOW)
    settings = Settings(datamanager_endpoint=google.address, sync_timeout=5)
    sent = run_sync(db, settings, Clock()).outcomes[0].added
    assert sent > 0 and len(google.members(list_id)) == sent
    assert google.members(LIST_ID) == set()

    code, out, _ = _cli(capsys, "destinations", "lists", "ads", "--db", db_url)
    assert code == 0
    assert f"user lists of account {ACCOUNT} (2 lists):" in out
    [mine] = [line for line in out.splitlines() if list_id in line]
    assert mine.strip().startswith("*") and "Big spenders" in mine and "30 days" in mine
    [other] = [line for line in out.splitlines() if "Existing list" in line]
    assert not other.strip().startswith("*") and "540 days" in other

    code, out, _ = _cli(capsys, "destinations", "lists", "ads", "--db", db_url, "--json")
    assert {i["list_id"] for i in json.loads(out)} == {LIST_ID, list_id}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--create-list", "Existing list"), "DISPLAY_NAME_ALREADY_USED"),
        (("--create-list", "Long", "--membership-days", "541"), "1 to 540 days, got 541"),
        (("--create-list", "X", "--list-id", LIST_ID), "without --list-id"),
        (("--create-list", "   "), "needs a display name"),
    ],
)
def test_a_refused_list_stores_nothing(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    code, out, err = _cli(capsys, *_add(db_url, "ads", *extra))
    assert code == 1 and message in err
    assert destinations.list_destinations(db) == []
    assert set(_lists_of(google)) == {LIST_ID}


def test_an_account_google_refuses_stores_nothing(
    db: Database, db_url: str, google: FakeDataManager, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _add(db_url, "ads", "--create-list", "New")
    argv[argv.index(ACCOUNT)] = "5555555555"
    code, out, err = _cli(capsys, *argv)
    assert code == 1 and "Google refused to create the list: " in err
    assert "PERMISSION_DENIED" in err and "5555555555" in err
    assert destinations.list_destinations(db) == []


def test_listing_pages_through_every_list(google: FakeDataManager) -> None:
    for n in range(userlists.PAGE_SIZE + 7):
        google.add_list(ACCOUNT, display_name=f"list {n}")
    assert len(_lists_of(google)) == userlists.PAGE_SIZE + 8
    pages = sum(1 for r in google.received if r.method == "ListUserLists")
    assert pages == 2


# ---------------------------------------------------------------- API


@pytest.fixture
def client(db: Database, google: FakeDataManager) -> Iterator[TestClient]:
    settings = Settings(datamanager_endpoint=google.address, sync_timeout=5)
    with TestClient(create_app(db, settings, background=False)) as test_client:
        yield test_client


def _post_destination(client: TestClient, **extra: Any) -> Any:
    body = {
        "name": "ads",
        "kind": "google_ads",
        "config": {"operating_account_id": ACCOUNT, "terms_accepted": True, **CONSENT},
        **extra,
    }
    return client.post("/api/destinations", json=body)


def test_api_creates_a_list_and_shows_the_accounts_lists(
    client: TestClient, google: FakeDataManager, db: Database
) -> None:
    created = _post_destination(
        client, create_list={"display_name": "From the API", "membership_days": 90}
    )
    assert created.status_code == 201, created.text
    new_id = created.json()["config"]["product_destination_id"]
    assert _lists_of(google)[new_id] == ("From the API", "", 90)

    answer = client.get(f"/api/destinations/{created.json()['id']}/lists")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["current_list_id"] == new_id
    assert {i["list_id"]: i["display_name"] for i in body["lists"]} == {
        LIST_ID: "Existing list",
        new_id: "From the API",
    }

    refused = client.post(
        "/api/destinations",
        json={
            "name": "again",
            "kind": "google_ads",
            "config": {"operating_account_id": ACCOUNT, **CONSENT},
            "create_list": {"display_name": "From the API"},
        },
    )
    assert refused.status_code == 400
    assert "DISPLAY_NAME_ALREADY_USED" in refused.json()["error"]["message"]
    assert [d.name for d in destinations.list_destinations(db)] == ["ads"]
    too_long = _post_destination(
        client, name="x", create_list={"display_name": "Y", "membership_days": 541}
    )
    assert too_long.status_code in (400, 422)


def test_api_link_status_and_uploads_carry_googles_answers(
    client: TestClient, google: FakeDataManager, db: Database
) -> None:
    import_rows(db, customers(300))
    segment = segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    dest = destinations.add_destination(
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
    )
    links.link(db, "big spenders", "ads", NOW)
    settings = Settings(datamanager_endpoint=google.address, sync_timeout=5)
    clock = Clock(now=utcnow().replace(microsecond=0))
    sent = run_sync(db, settings, clock).outcomes[0].added

    (status,) = client.get(f"/api/segments/{segment.id}/links").json()
    assert status["awaiting_google"] == sent
    assert status["last_upload"]["google_status"] is None

    for _ in range(2):
        clock.advance(minutes=31)
        uploads.poll(db, settings, clock=clock)
    (status,) = client.get(f"/api/segments/{segment.id}/links").json()
    assert status["awaiting_google"] == 0
    assert status["last_upload"]["google_status"] == "SUCCESS"
    assert status["match_rate"] == "91-100%"
    assert status["list_size"] == sent

    answer = client.get(f"/api/segments/{segment.id}/links/{dest.id}/uploads")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [upload] = body["uploads"]
    assert upload["google_status"] == "SUCCESS" and upload["members"] == sent
    assert upload["match_rate"] == "91-100%" and upload["errors"] == {}
    assert body["list"]["display_name"] == "Existing list"
    missing = client.get(f"/api/segments/{segment.id}/links/999/uploads")
    assert missing.status_code == 404
