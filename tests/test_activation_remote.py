"""`segflow links show` and `segflow destinations lists` through a server (``--server``)
print what they print on the database; field warnings Google's answer carried (the
strict fake's) are logged and shown. Both engines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from segflow.activation import destinations
from segflow.activation.fake import FakeDataManager
from segflow.cli.main import main
from segflow.config import Settings
from segflow.db import Database
from segflow.web.server import LiveServer, live_server
from tests.sync_helpers import (
    ACCOUNT,
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
REGION = "WARNING_REASON_INVALID_REGION_CODE"


def quiet_server(db: Database, settings: Settings) -> AbstractContextManager[LiveServer]:
    """The app on a free port without its background work, so that nothing changes
    between what the CLI reads through it and what it reads on the database."""
    return live_server(db, settings, background=False)


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDataManager]:
    with FakeDataManager(processing_polls=1) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID, display_name="Existing list")
        server.add_list(ACCOUNT, display_name="Second list")
        monkeypatch.setenv("SEGFLOW_DATAMANAGER_ENDPOINT", server.address)
        monkeypatch.delenv("SEGFLOW_SERVER", raising=False)
        monkeypatch.delenv("SEGFLOW_TOKEN", raising=False)
        yield server


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _both(
    capsys: pytest.CaptureFixture[str], db_url: str, server: LiveServer, *argv: str
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    local = _cli(capsys, *argv, "--db", db_url)
    remote = _cli(capsys, *argv, "--server", server.url)
    return local, remote


def _warned_link(db: Database, google: FakeDataManager, settings: Settings) -> list[Any]:
    """A synced link whose first ingest Google answered with a field warning."""
    rows = customers(300)
    setup_link(db, rows)
    return rows


def test_field_warnings_from_google_are_logged_and_shown_through_cli_and_api(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings.from_env()
    _warned_link(db, google, settings)
    clock = Clock()
    sent = run_sync(db, settings, clock).outcomes[0].added
    assert sent > 0
    # Google is to warn about one member it holds; a changed consent sends everyone again.
    code = next(c for key in sorted(google.members(LIST_ID)) for c in key if c.startswith("e:"))
    google.warn = {code: REGION}
    destinations.update_destination(db, "ads", {"ad_personalization": "denied"}, NOW)
    with caplog.at_level(logging.WARNING):
        assert run_sync(db, settings, clock).outcomes[0].added == sent
    assert "1 field warnings: WARNING_REASON_INVALID_REGION_CODE x1" in caplog.text
    assert code[2:] not in caplog.text
    warned = [r for r in google.received if r.method == "IngestAudienceMembers"][-1]
    index = next(
        i
        for i, m in enumerate(warned.request.audience_members)
        if any(f"e:{u.email_address}" == code for u in m.user_data.user_identifiers)
    )
    expected = f"{REGION} (audience_members[{index}].user_data): a value was ignored"

    with quiet_server(db, settings) as server:
        (local, remote) = _both(capsys, db_url, server, "links", "show", "big spenders", "ads")
        assert local[0] == 0 and remote[0] == 0, local[2] + remote[2]
        assert remote[1] == local[1]
        assert "Google warned about request " in local[1] and expected in local[1]
        assert "1 field warning" in local[1].split("last upload:")[1].splitlines()[0]
        assert local[1].count(expected) == 1  # the first upload carried none

        (local, remote) = _both(
            capsys, db_url, server, "links", "show", "big spenders", "ads", "--json"
        )
        assert json.loads(remote[1]) == json.loads(local[1])
        newest, oldest = json.loads(local[1])["uploads"]
        assert newest["field_warnings"] == [expected] and oldest["field_warnings"] == []


def test_links_show_prints_the_same_through_a_server(
    db: Database, db_url: str, google: FakeDataManager, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env()
    _warned_link(db, google, settings)
    clock = Clock()
    run_sync(db, settings, clock)
    import_rows(db, customers(20, start_id=5_000), NOW)
    run_sync(db, settings, clock)
    with quiet_server(db, settings) as server:
        for extra in ((), ("--limit", "1"), ("--json",)):
            local, remote = _both(
                capsys, db_url, server, "links", "show", "big spenders", "ads", *extra
            )
            assert local[0] == 0, local[2]
            assert remote == local
        local, _ = _both(capsys, db_url, server, "links", "show", "big spenders", "ads")
        assert (
            "last uploads:" in local[1] and "big spenders -> ads (google_ads, active)" in local[1]
        )

        # Unknown names are refused in the same words.
        for argv in (("nobody", "ads"), ("big spenders", "nowhere")):
            local, remote = _both(capsys, db_url, server, "links", "show", *argv)
            assert local[0] == remote[0] == 1
            assert remote[2] == local[2] and "no " in local[2]


def test_destinations_lists_prints_the_same_through_a_server(
    db: Database, db_url: str, google: FakeDataManager, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings.from_env()
    destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        {"operating_account_id": ACCOUNT, "product_destination_id": LIST_ID, **CONSENT},
        NOW,
    )
    with quiet_server(db, settings) as server:
        local, remote = _both(capsys, db_url, server, "destinations", "lists", "ads")
        assert local[0] == 0, local[2]
        assert remote == local
        assert f"user lists of account {ACCOUNT} (2 lists):" in local[1]
        assert "Existing list" in local[1] and "Second list" in local[1]
        local, remote = _both(capsys, db_url, server, "destinations", "lists", "ads", "--json")
        assert json.loads(remote[1]) == json.loads(local[1])
        assert {i["display_name"] for i in json.loads(local[1])} == {"Existing list", "Second list"}

        local, remote = _both(capsys, db_url, server, "destinations", "lists", "nowhere")
        assert local[0] == remote[0] == 1 and remote[2] == local[2]
        assert "no destination named 'nowhere'" in local[2]

        # An account without lists says how to make one, both ways.
        google.add_account("5550001111")
        destinations.add_destination(
            db,
            "empty",
            destinations.GOOGLE_ADS,
            {"operating_account_id": "5550001111", "product_destination_id": "1", **CONSENT},
            NOW,
        )
        local, remote = _both(capsys, db_url, server, "destinations", "lists", "empty")
        assert remote == local and "has no user lists; create one" in local[1]


def test_links_failed_and_resume_work_through_a_server_as_on_the_database(
    db: Database, db_url: str, google: FakeDataManager, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paused link is resumed through the server (no shell on the database machine),
    and the members Google refused are listed and sent again the same way."""
    settings = Settings.from_env()
    rows = customers(300)
    setup_link(db, rows, list_id="4040")  # no such list yet: the link pauses
    run_sync(db, settings, Clock())
    with quiet_server(db, settings) as server:
        local, remote = _both(capsys, db_url, server, "links")
        assert local[0] == 0 and remote == local
        assert "big spenders -> ads (google_ads, PAUSED: Google refused the list" in local[1]
        local, remote = _both(capsys, db_url, server, "links", "--json")
        assert json.loads(remote[1]) == json.loads(local[1])

        google.add_list(ACCOUNT, "4040")
        argv = ("links", "resume", "big spenders", "ads", "--server", server.url)
        code, out, err = _cli(capsys, *argv)
        assert code == 0, err
        assert out == "link 'big spenders' -> 'ads' is active\n"
        (state,) = json.loads(_cli(capsys, "links", "--json", "--db", db_url)[1])
        assert state["paused_reason"] is None and state["next_attempt_at"] is None

        # Google refuses one member; the list of refusals reads the same both ways.
        google.refuse = {sorted(expected_members(db))[0][0]}
        run_sync(db, settings, Clock())
        local, remote = _both(capsys, db_url, server, "links", "failed", "big spenders", "ads")
        assert local[0] == 0 and remote == local
        assert local[1].count("\n") == 1 and "INVALID_AUDIENCE_MEMBER" in local[1]
        local, remote = _both(
            capsys, db_url, server, "links", "failed", "big spenders", "ads", "--json"
        )
        assert json.loads(remote[1]) == json.loads(local[1]) and len(json.loads(local[1])) == 1

        # Accepted again at Google: resuming with --retry-failed sends it again.
        google.refuse = set()
        argv = ("links", "resume", "big spenders", "ads", "--retry-failed", "--server", server.url)
        code, out, _ = _cli(capsys, *argv)
        assert code == 0 and "its refused members will be tried again" in out
        assert run_sync(db, settings, Clock()).outcomes[0].added == 1
        local, remote = _both(capsys, db_url, server, "links", "failed", "big spenders", "ads")
        assert remote == local and local[1] == "no refused members\n"

        # Unknown names and a segment that is not linked are refused, exit 1.
        for argv in (("nobody", "ads"), ("big spenders", "nowhere")):
            code, _, err = _cli(capsys, "links", "resume", *argv, "--server", server.url)
            assert code == 1 and "no " in err
