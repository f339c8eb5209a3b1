"""Replacing a google_ads destination's credentials (``segflow destinations credentials``,
``PUT /api/destinations/{id}/credentials``): checked by refreshing them as adding does,
refused ones leave the old in place, the secret is never shown. Against the fake's
OAuth token server, both engines, on the database and through a server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from segflow import segments
from segflow.activation import destinations, links
from segflow.activation.fake import FakeDataManager
from segflow.cli.main import main
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import destinations as destinations_table
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
from tests.test_activation_remote import quiet_server

CONSENT = ("--ad-user-data", "granted", "--ad-personalization", "granted")


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDataManager]:
    with FakeDataManager(require_auth=True) as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID)
        monkeypatch.setenv("SEGFLOW_DATAMANAGER_ENDPOINT", server.address)
        monkeypatch.setenv("SEGFLOW_OAUTH_TOKEN_URI", server.token_uri)
        monkeypatch.delenv("SEGFLOW_SERVER", raising=False)
        monkeypatch.delenv("SEGFLOW_TOKEN", raising=False)
        yield server


def _oauth(google: FakeDataManager, tmp_path: Path, name: str) -> tuple[dict[str, Any], str]:
    client_id, client_secret, refresh_token = google.oauth_client()
    secret = {
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(secret))
    return secret, str(path)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _stored(db: Database) -> str:
    with db.read() as conn:
        return str(conn.execute(sa.select(destinations_table.c.secret)).scalar_one())


def _leaks(text: str, secret: dict[str, Any]) -> bool:
    return secret["refresh_token"] in text or secret["client_secret"] in text


def test_new_credentials_replace_revoked_ones_and_the_link_syncs_again(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, first_file = _oauth(google, tmp_path, "first")
    code, _, err = _cli(
        capsys,
        "destinations", "add", "google_ads", "ads", "--operating-account-id", ACCOUNT,
        "--list-id", LIST_ID, "--terms-accepted", "--oauth-file", first_file, *CONSENT,
        "--db", db_url,
    )  # fmt: skip
    assert code == 0, err
    import_rows(db, customers(200))
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    links.link(db, "big spenders", "ads", NOW)
    settings = Settings.from_env()
    google.revoke(first["refresh_token"])
    run_sync(db, settings, Clock())
    (status,) = links.status(db)
    assert (status.paused_reason or "").startswith("credentials were revoked or expired")

    # Revoked ones again: refused, in words, and the stored credentials stay as they were.
    before = _stored(db)
    code, out, err = _cli(
        capsys, "destinations", "credentials", "ads", "--oauth-file", first_file, "--db", db_url
    )
    assert code == 1 and "Google refused these credentials: invalid_grant" in err
    assert not _leaks(out + err, first) and _stored(db) == before

    fresh, fresh_file = _oauth(google, tmp_path, "fresh")
    code, out, err = _cli(
        capsys, "destinations", "credentials", "ads", "--oauth-file", fresh_file, "--db", db_url
    )
    assert code == 0, err
    assert out.splitlines() == [
        "replaced the credentials of destination 'ads': OAuth refresh token, checked",
        "  link 'big spenders' -> 'ads' is paused; once these credentials are the right ones: "
        "segflow links resume 'big spenders' ads",
    ]
    assert not _leaks(out + err, fresh) and _stored(db) != before
    assert destinations.get_destination(db, "ads").config["credentials"] == (
        "OAuth refresh token, checked"
    )

    code, _, err = _cli(capsys, "links", "resume", "big spenders", "ads", "--db", db_url)
    assert code == 0, err
    sent = run_sync(db, settings, Clock()).outcomes[0].added
    assert sent > 0 and len(google.members(LIST_ID)) == sent
    (status,) = links.status(db)
    assert status.paused_reason is None and status.pending_adds == 0


def test_credentials_are_refused_for_what_cannot_take_them(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    destinations.add_destination(
        db, "dry", destinations.FILE, {"path": str(tmp_path / "out.jsonl")}, NOW
    )
    secret, path = _oauth(google, tmp_path, "creds")
    code, _, err = _cli(
        capsys, "destinations", "credentials", "dry", "--oauth-file", path, "--db", db_url
    )
    assert code == 1 and "'dry' is a file destination: it takes no credentials" in err
    code, _, err = _cli(capsys, "destinations", "credentials", "dry", "--db", db_url)
    assert code == 1 and "--service-account-key FILE or --oauth-file FILE" in err
    code, _, err = _cli(
        capsys, "destinations", "credentials", "nowhere", "--oauth-file", path, "--db", db_url
    )
    assert code == 1 and "no destination named 'nowhere'" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"client_id": "x", "client_secret": ' + json.dumps(secret["client_secret"]))
    code, _, err = _cli(
        capsys, "destinations", "credentials", "dry", "--oauth-file", str(broken), "--db", db_url
    )
    assert code == 1 and "is not valid JSON (line 1" in err
    assert secret["client_secret"] not in err
    assert not destinations.get_destination(db, "dry").has_credentials


def test_credentials_through_a_server_are_checked_and_never_come_back(
    db: Database,
    db_url: str,
    google: FakeDataManager,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, first_file = _oauth(google, tmp_path, "first")
    settings = Settings.from_env()
    added = destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        {
            "operating_account_id": ACCOUNT,
            "product_destination_id": LIST_ID,
            "ad_user_data": "granted",
            "ad_personalization": "granted",
        },
        NOW,
        {"type": "oauth", **first},
        settings.cipher,
    )
    fresh, fresh_file = _oauth(google, tmp_path, "fresh")
    google.revoke(first["refresh_token"])
    with quiet_server(db, settings) as server:
        before = _stored(db)
        code, out, err = _cli(
            capsys, "destinations", "credentials", "ads", "--oauth-file", first_file,
            "--server", server.url,
        )  # fmt: skip
        assert code == 1 and "Google refused these credentials: invalid_grant" in err
        assert not _leaks(out + err, first) and _stored(db) == before

        code, out, err = _cli(
            capsys, "destinations", "credentials", "ads", "--oauth-file", fresh_file,
            "--server", server.url,
        )  # fmt: skip
        assert code == 0, err
        assert (
            out == "replaced the credentials of destination 'ads': OAuth refresh token, checked\n"
        )
        assert _stored(db) != before

        import httpx

        answer = httpx.put(
            f"{server.url}/api/destinations/{added.id}/credentials",
            json={"credentials": {"type": "oauth", **fresh}},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["config"]["credentials"] == "OAuth refresh token, checked"
        assert answer.json()["paused_links"] == []
        assert not _leaks(answer.text, fresh)
        refused = httpx.put(
            f"{server.url}/api/destinations/{added.id}/credentials",
            json={"credentials": {"type": "oauth", "client_id": "x", "refresh_token": "y"}},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "OAuth credentials need client_secret"
    # The destination works with what was stored last.
    import_rows(db, customers(100))
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    links.link(db, "big spenders", "ads", NOW)
    google_terms = destinations.update_destination(db, "ads", {"terms_accepted": True}, NOW)
    assert google_terms.config["credentials"] == "OAuth refresh token, checked"
    assert run_sync(db, settings, Clock()).outcomes[0].added == len(google.members(LIST_ID)) > 0
