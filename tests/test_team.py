"""Team mode on both engines: sign-in, tokens, CSRF, and strict workspace isolation.

The isolation test walks the application's own route table, so a route added
later is called too (and fails the test until it says how to call it).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from segflow import auth, datasets, demo, ingest, passwords, segments
from segflow.activation import destinations, links
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import MIGRATIONS, upgrade
from segflow.errors import NotAuthenticated, Throttled
from segflow.web import api
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.sync_helpers import HIGH_SPEND, NOW, Clock, csv_bytes, customers, run_sync
from tests.test_web_api import _read_events, _wait

PASSWORD = "correct horse battery"
BASE = "https://testserver"  # the session cookie is Secure
EMAIL = demo.HEADER.index("email")
PHONE = demo.HEADER.index("phone")


@dataclass
class Team:
    db: Database
    alpha: Database
    beta: Database
    settings: Settings
    alice_token: str
    bob_token: str
    a_segment: int
    a_destination: int
    b_segment: int
    a_key: str
    markers: list[str]


@pytest.fixture
def team(db: Database, tmp_path: Path) -> Team:
    """Two workspaces with data: alice in alpha, bob in beta."""
    settings = Settings(auth=True)
    alpha_id = auth.add_workspace(db, "alpha", NOW)
    beta_id = auth.add_workspace(db, "beta", NOW)
    auth.add_user(db, "alice", PASSWORD, NOW, member_of=["alpha"])
    auth.add_user(db, "bob", PASSWORD, NOW, member_of=["beta"])
    alpha, beta = db.in_workspace(alpha_id), db.in_workspace(beta_id)

    a_rows = customers(40, seed=3)
    _import(alpha, "alpha-customers", a_rows)
    a_seg = segments.create_segment(
        alpha, name="alpha big spenders", dataset="alpha-customers", rules_json=HIGH_SPEND, now=NOW
    )
    dest = destinations.add_destination(
        alpha, "alpha-audience", "file", {"path": str(tmp_path / "alpha.jsonl")}, NOW
    )
    links.link(alpha, a_seg.name, dest.name, NOW)
    run_sync(db, settings)
    _import(beta, "beta-customers", customers(30, seed=9, start_id=5000))
    b_seg = segments.create_segment(
        beta, name="beta spenders", dataset="beta-customers", rules_json=HIGH_SPEND, now=NOW
    )
    markers = [r[EMAIL] for r in a_rows if r[EMAIL]] + [r[PHONE] for r in a_rows if r[PHONE]]
    markers += ["alpha big spenders", "alpha-audience"]
    _, alice_token = auth.create_token(db, "alice", "alpha", "ci", NOW)
    _, bob_token = auth.create_token(db, "bob", "beta", "ci", NOW)
    return Team(
        db, alpha, beta, settings, alice_token, bob_token, a_seg.id, dest.id, b_seg.id,
        a_rows[0][0], markers,
    )  # fmt: skip


def _import(db: Database, name: str, rows: list[tuple[str, ...]]) -> None:
    ingest.import_csv(
        db, io.BytesIO(csv_bytes(rows)), ingest.ImportOptions(dataset=name, key="id"),
        source="t.csv", now=NOW,
    )  # fmt: skip
    segments_of = datasets.find_dataset(db, name)
    assert segments_of is not None


@pytest.fixture
def app_client(team: Team) -> Iterator[TestClient]:
    app = create_app(team.db, team.settings, background=False)
    with TestClient(app, base_url=BASE) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _snapshot(db: Database) -> Any:
    """Everything a workspace holds that a person could see or change."""
    out: dict[str, Any] = {}
    for d in datasets.list_datasets(db):
        out[d.name] = (d.record_count, datasets.page_records(db, d.name, limit=1000)[0])
    out["segments"] = [(s.name, s.member_count, s.rules) for s in segments.list_segments(db)]
    out["destinations"] = [d.public() for d in destinations.list_destinations(db)]
    out["links"] = [(s.link.segment, s.link.destination, s.synced) for s in links.status(db)]
    return out


# ---------------------------------------------------------------- isolation


def _api_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every /api/ route in the app's route table."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        # FastAPI 0.116+ keeps included routers as such; their routes come
        # out of effective_route_contexts with the full path.
        entries = [route] if isinstance(route, APIRoute) else []
        if hasattr(route, "effective_route_contexts"):
            entries = list(route.effective_route_contexts())
        for entry in entries:
            if entry.path.startswith("/api/"):
                found.update((method, entry.path) for method in entry.methods)
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if path.startswith("/api/")
    }
    assert documented <= found, documented - found
    return sorted(found)


#: Routes that create in the caller's own workspace whatever name they are
#: given: called with A's names, they must make B's own object, not touch A's.
_CREATES_OWN = {
    ("POST", "/api/datasets/{name}/imports"),
    # Reads B's own dataset of that name (none: a new one), storing nothing.
    ("POST", "/api/datasets/{name}/imports/preview"),
}
#: Routes with a test of their own below.
_TESTED_APART = {
    ("GET", "/api/stream"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/password"),
}


def _request_for(team: Team, method: str, path: str) -> dict[str, Any]:
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/datasets/{name}/imports"): {
            "files": {"file": ("b.csv", csv_bytes(customers(3, seed=11, start_id=9000)))}
        },
        ("POST", "/api/datasets/{name}/imports/preview"): {
            "files": {"file": ("b.csv", csv_bytes(customers(3, seed=11, start_id=9000)))}
        },
        ("POST", "/api/segments"): {
            "json": {"name": "probe", "dataset": "alpha-customers", "rules": HIGH_SPEND}
        },
        ("POST", "/api/segments/preview"): {
            "json": {
                "dataset": "alpha-customers",
                "rules": HIGH_SPEND,
                "segment_id": team.a_segment,
            }
        },
        ("PATCH", "/api/segments/{segment_id}"): {"json": {"name": "taken over"}},
        ("PATCH", "/api/datasets/{name}/identifiers"): {"json": {"email": "email"}},
        ("PUT", "/api/datasets/{name}/columns/{column}/type"): {"json": {"type": "text"}},
        ("POST", "/api/destinations"): {
            "json": {"name": "probe", "kind": "file", "config": {"path": "probe.jsonl"}}
        },
        ("POST", "/api/segments/{segment_id}/links"): {
            "json": {"destination_id": team.a_destination}
        },
        ("POST", "/api/segments/{segment_id}/links/{destination_id}/resume"): {
            "json": {"retry_failed": True}
        },
        # Refused before Google is asked: the route reads no workspace's data.
        ("POST", "/api/google-ads/lists"): {"json": {"operating_account_id": "probe"}},
        ("PUT", "/api/destinations/{destination_id}/credentials"): {
            "json": {
                "credentials": {
                    "type": "oauth",
                    "client_id": "probe",
                    "client_secret": "probe",
                    "refresh_token": "probe",
                }
            }
        },
        ("POST", "/api/auth/login"): {"json": {"name": "bob", "password": PASSWORD}},
        ("POST", "/api/auth/workspace"): {"json": {"workspace": "alpha"}},
    }
    if method in ("POST", "PATCH", "PUT") and (method, path) not in bodies:
        raise AssertionError(f"new route {method} {path}: say how to call it here")
    return bodies.get((method, path), {})


def test_every_route_hides_workspace_a_from_a_user_of_b(team: Team, app_client: TestClient) -> None:
    before = _snapshot(team.alpha)
    params = {
        "name": "alpha-customers",
        "segment_id": str(team.a_segment),
        "destination_id": str(team.a_destination),
        "key": team.a_key,
        "column": "email",
    }
    routes = [r for r in _api_routes(app_client.app) if r not in _TESTED_APART]
    assert len(routes) >= 25
    # Imports create B's own dataset named like A's: run them last.
    routes.sort(key=lambda r: r in _CREATES_OWN)
    for method, path in routes:
        url = path.format(**params)
        response = app_client.request(
            method, url, headers=_bearer(team.bob_token), **_request_for(team, method, path)
        )
        where = f"{method} {path}: {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, where
        if "{" in path and (method, path) not in _CREATES_OWN:
            assert response.status_code == 404, where
        for marker in team.markers:
            assert marker not in response.text, where
    # B's own segment cannot be linked to A's destination either.
    response = app_client.post(
        f"/api/segments/{team.b_segment}/links",
        json={"destination_id": team.a_destination},
        headers=_bearer(team.bob_token),
    )
    assert response.status_code == 404
    response = app_client.post(
        "/api/segments/preview",
        json={"dataset": "beta-customers", "rules": HIGH_SPEND, "segment_id": team.a_segment},
        headers=_bearer(team.bob_token),
    )
    assert response.status_code == 404
    assert _snapshot(team.alpha) == before
    # The import made B a dataset of the same name, beside A's.
    assert [d.record_count for d in datasets.list_datasets(team.beta)
            if d.name == "alpha-customers"] == [3]  # fmt: skip


def test_the_same_names_live_side_by_side_in_two_workspaces(team: Team) -> None:
    _import(team.beta, "alpha-customers", customers(5, seed=2, start_id=7000))
    segments.create_segment(
        team.beta, name="alpha big spenders", dataset="alpha-customers",
        rules_json=HIGH_SPEND, now=NOW,
    )  # fmt: skip
    destinations.add_destination(team.beta, "alpha-audience", "file", {"path": "b.jsonl"}, NOW)
    assert datasets.get_dataset(team.alpha, "alpha-customers").record_count == 40
    assert datasets.get_dataset(team.beta, "alpha-customers").record_count == 5
    names = {s.name: s.dataset for s in segments.list_segments(team.beta)}
    assert names == {"alpha big spenders": "alpha-customers", "beta spenders": "beta-customers"}


@pytest.mark.slow
def test_a_stream_of_b_never_carries_a_events(team: Team) -> None:
    settings = Settings(auth=True)
    with live_server(team.db, settings, poll_interval=0.1) as server:
        seen: list[tuple[str, Any]] = []
        stop = threading.Event()
        reader = threading.Thread(
            target=_read_events, args=(server.url, seen, stop, _bearer(team.bob_token)), daemon=True
        )
        reader.start()
        _wait(lambda: any(k == "segment" and d["id"] == team.b_segment for k, d in seen))
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for token, name, seed in ((team.alice_token, "alpha-customers", 21),
                                      (team.bob_token, "beta-customers", 22)):  # fmt: skip
                response = http.post(
                    f"/api/datasets/{name}/imports",
                    files={"file": ("c.csv", csv_bytes(customers(20, seed=seed, start_id=1)))},
                    headers=_bearer(token),
                )
                assert response.status_code == 201, response.text
        # B's import shows on B's stream; by then A's (earlier) would have too.
        _wait(lambda: any(k == "import" and d["dataset"] == "beta-customers" for k, d in seen))
        time.sleep(0.5)
        stop.set()
    text = json.dumps(seen)
    assert "alpha" not in text
    assert {d["id"] for k, d in seen if k == "segment"} == {team.b_segment}
    assert not [d for k, d in seen if k == "sync"]  # B has no links; A's stay A's


@pytest.mark.slow
def test_an_open_stream_ends_when_its_token_is_revoked(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "RECHECK_SECONDS", 0.2)
    with live_server(team.db, Settings(auth=True), poll_interval=0.1) as server:
        streams = {}
        for name, token in (("alice", team.alice_token), ("bob", team.bob_token)):
            seen: list[tuple[str, Any]] = []
            reader = threading.Thread(
                target=_read_events,
                args=(server.url, seen, threading.Event(), _bearer(token)),
                daemon=True,
            )
            reader.start()
            streams[name] = (reader, seen)
        _wait(lambda: all(seen for _, seen in streams.values()))
        (bobs,) = auth.list_tokens(team.db, "bob")
        auth.revoke_token(team.db, bobs["id"], NOW)
        streams["bob"][0].join(timeout=10)
        assert not streams["bob"][0].is_alive(), "the revoked token's stream is still open"
        # Alice's stream is still served and still receives her workspace's changes.
        assert streams["alice"][0].is_alive()
        response = httpx.post(
            f"{server.url}/api/datasets/alpha-customers/imports",
            files={"file": ("c.csv", csv_bytes(customers(3, seed=31, start_id=9000)))},
            headers=_bearer(team.alice_token),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        _wait(lambda: any(k == "import" for k, _ in streams["alice"][1]))
        assert streams["alice"][0].is_alive()


# ---------------------------------------------------------------- authentication


def test_without_a_session_or_token_every_api_route_answers_401(
    team: Team, app_client: TestClient
) -> None:
    public = {("POST", "/api/auth/login")}
    for method, path in _api_routes(app_client.app):
        if (method, path) in public:
            continue
        url = path.format(name="x", segment_id="1", destination_id="1", key="k", column="c")
        response = app_client.request(method, url)
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
        assert response.json()["error"]["code"] == "unauthenticated"
        wrong = app_client.request(method, url, headers=_bearer("sf_not-a-token"))
        assert wrong.status_code == 401
    page = app_client.get("/segments", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert app_client.get("/login").status_code == 200
    assert app_client.get("/healthz").status_code == 200


def test_a_revoked_token_stops_working_at_once(team: Team, app_client: TestClient) -> None:
    assert app_client.get("/api/segments", headers=_bearer(team.bob_token)).status_code == 200
    (listed,) = [t for t in auth.list_tokens(team.db, "bob")]
    assert "token" not in json.dumps(listed).replace('"name"', "")  # never the secret
    auth.revoke_token(team.db, listed["id"], NOW)
    assert app_client.get("/api/segments", headers=_bearer(team.bob_token)).status_code == 401
    # A user taken out of the workspace loses the tokens they had there.
    assert app_client.get("/api/segments", headers=_bearer(team.alice_token)).status_code == 200
    auth.revoke_membership(team.db, "alpha", "alice")
    assert app_client.get("/api/segments", headers=_bearer(team.alice_token)).status_code == 401


def _login(client: TestClient, name: str = "bob", password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/auth/login", json={"name": name, "password": password})


def test_a_signed_in_user_changes_their_own_password(team: Team, app_client: TestClient) -> None:
    url, new = "/api/auth/password", "a brand new passphrase"
    csrf = {"X-CSRF-Token": _login(app_client).json()["csrf_token"]}
    with TestClient(app_client.app, base_url=BASE) as elsewhere:
        assert _login(elsewhere).status_code == 200
        change = {"current_password": PASSWORD, "new_password": new}

        wrong = app_client.post(
            url, json={**change, "current_password": "not my password"}, headers=csrf
        )
        assert wrong.status_code == 403
        assert wrong.json()["error"]["message"] == "the current password is wrong"
        short = app_client.post(url, json={**change, "new_password": "short"}, headers=csrf)
        assert short.status_code == 400
        assert app_client.post(url, json=change).status_code == 403  # no CSRF header
        by_token = app_client.post(url, json=change, headers=_bearer(team.bob_token))
        assert by_token.status_code == 403 and "API token" in by_token.json()["error"]["message"]
        assert _login(elsewhere).status_code == 200  # nothing changed so far

        assert app_client.post(url, json=change, headers=csrf).status_code == 204
        assert app_client.get("/api/auth/me").json()["user"] == "bob"  # this session stays
        assert elsewhere.get("/api/segments").status_code == 401  # the other one ended
        assert _login(elsewhere).status_code == 401
        assert _login(elsewhere, password=new).status_code == 200

    # Guessing the current password is throttled like signing in.
    for _ in range(5):
        attempt = app_client.post(
            url, json={"current_password": "guess", "new_password": "whatever it is"}, headers=csrf
        )
        assert attempt.status_code == 403
    locked = app_client.post(
        url, json={"current_password": new, "new_password": "whatever it is"}, headers=csrf
    )
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0


def test_only_team_mode_has_passwords_to_change(db: Database) -> None:
    with TestClient(create_app(db, Settings(), background=False), base_url=BASE) as client:
        response = client.post(
            "/api/auth/password", json={"current_password": "a", "new_password": "b" * 12}
        )
    assert response.status_code == 400 and "team mode is off" in response.text


def test_sign_in_sets_a_locked_down_session_and_csrf_guards_every_change(
    team: Team, app_client: TestClient
) -> None:
    response = _login(app_client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user"], body["workspace"], body["workspaces"]) == ("bob", "beta", ["beta"])
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("segflow_session="))
    for flag in ("HttpOnly", "Secure", "SameSite=strict"):
        assert flag.lower() in session.lower()
    csrf = body["csrf_token"]
    assert any(c.startswith(f"segflow_csrf={csrf}") for c in cookies)

    assert app_client.get("/api/segments").status_code == 200  # reading needs no token
    create = {"name": "new", "dataset": "beta-customers", "rules": HIGH_SPEND}
    refused = app_client.post("/api/segments", json=create)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    wrong = app_client.post("/api/segments", json=create, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    assert [s.name for s in segments.list_segments(team.beta)] == ["beta spenders"]
    made = app_client.post("/api/segments", json=create, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # Uploads too.
    upload = app_client.post(
        "/api/datasets/beta-customers/imports",
        files={"file": ("c.csv", csv_bytes(customers(2, seed=1, start_id=1)))},
    )
    assert upload.status_code == 403

    # Switching to a workspace one is not a member of is refused.
    other = app_client.post(
        "/api/auth/workspace", json={"workspace": "alpha"}, headers={"X-CSRF-Token": csrf}
    )
    assert other.status_code == 404
    out = app_client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert app_client.get("/api/segments").status_code == 401


def test_a_user_of_two_workspaces_switches_between_them(team: Team, app_client: TestClient) -> None:
    auth.grant(team.db, "alpha", "bob")
    body = _login(app_client).json()
    assert body["workspaces"] == ["alpha", "beta"]
    names = {body["workspace"]: [s["name"] for s in app_client.get("/api/segments").json()]}
    switched = app_client.post(
        "/api/auth/workspace",
        json={"workspace": "beta" if body["workspace"] == "alpha" else "alpha"},
        headers={"X-CSRF-Token": body["csrf_token"]},
    )
    assert switched.status_code == 200
    names[switched.json()["workspace"]] = [
        s["name"] for s in app_client.get("/api/segments").json()
    ]
    assert names == {"alpha": ["alpha big spenders"], "beta": ["beta spenders"]}


def test_sign_in_is_throttled_after_repeated_failures(team: Team, app_client: TestClient) -> None:
    for _ in range(passwords.MAX_FAILURES):
        wrong = _login(app_client, password="not the password")
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"] == "wrong name or password"
    locked = _login(app_client)  # even the right password, for now
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    # An unknown name is throttled the same way: failures reveal nothing.
    for _ in range(passwords.MAX_FAILURES):
        assert _login(app_client, name="nobody").status_code == 401
    assert _login(app_client, name="nobody").status_code == 429
    later = NOW.replace(year=2099)
    principal, _ = auth.login(team.db, "bob", PASSWORD, later, hours=1)
    assert principal.workspace == "beta"


def test_one_address_cannot_try_a_password_on_many_names(
    team: Team, app_client: TestClient
) -> None:
    for n in range(passwords.MAX_CLIENT_FAILURES):
        assert _login(app_client, name=f"guess{n}", password="Winter2026!").status_code == 401
    locked = _login(app_client)  # bob's right password, from the same address
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "from this address" in locked.json()["error"]["message"]
    # Other addresses sign in as usual.
    with TestClient(app_client.app, base_url=BASE, client=("203.0.113.9", 40000)) as other:
        assert _login(other).status_code == 200
    # A name no user can have is not a throttle key: the locked address's key,
    # typed as a name elsewhere, is neither locked for that client nor counted.
    with TestClient(app_client.app, base_url=BASE, client=("203.0.113.10", 40000)) as third:
        for _ in range(passwords.MAX_FAILURES + 1):
            assert _login(third, name="client:testclient").status_code == 401
        assert _login(third).status_code == 200


def test_sessions_expire(team: Team) -> None:
    principal, secret = auth.login(team.db, "bob", PASSWORD, NOW, hours=2)
    assert auth.session_principal(team.db, secret, NOW + dt.timedelta(hours=1)) == principal
    assert auth.session_principal(team.db, secret, NOW + dt.timedelta(hours=2)) is None


def test_passwords_are_stored_as_argon2_hashes_only(team: Team) -> None:
    with team.db.read() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM sf_users")).scalars().all()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)
    with pytest.raises(Exception, match="10 to 1024"):
        auth.add_user(team.db, "carol", "short", NOW)


def test_file_destinations_are_for_operators_in_team_mode(
    team: Team, app_client: TestClient
) -> None:
    response = app_client.post(
        "/api/destinations",
        json={"name": "x", "kind": "file", "config": {"path": "/etc/passwd"}},
        headers=_bearer(team.bob_token),
    )
    assert response.status_code == 400 and "operator" in response.json()["error"]["message"]


# ---------------------------------------------------------------- migration


def _dataset_row(table: str, ts: str, workspace: int | None = None) -> str:
    owner = ("", "") if workspace is None else (", workspace_id", f", {workspace}")
    return (
        "INSERT INTO sf_datasets (name, key_column, records_table, record_count, created_at, "
        f"updated_at{owner[0]}) VALUES ('customers', 'id', {table}, 0, {ts}, {ts}{owner[1]})"
    )


def test_upgrading_an_existing_database_puts_everything_in_the_default_workspace(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segflow.db.migrations as migrations

    db = Database(db_url)
    try:
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:4])
        upgrade(db)
        ts = "'2026-01-01 00:00:00'"
        with db.write() as conn:
            for statement in (
                _dataset_row("'sf_records_1'", ts),
                "INSERT INTO sf_segments (name, dataset_id, rules, rules_version, "
                "evaluated_version, watermark, member_count, created_at, updated_at) "
                f"VALUES ('seg', 1, '{{}}', 1, 1, 0, 1, {ts}, {ts})",
                f"INSERT INTO sf_members (segment_id, rid, since) VALUES (1, 7, {ts})",
                "INSERT INTO sf_destinations (name, kind, config, created_at, updated_at) "
                f"VALUES ('dest', 'file', '{{}}', {ts}, {ts})",
                "INSERT INTO sf_links (segment_id, destination_id, created_at) "
                f"VALUES (1, 1, {ts})",
            ):
                conn.exec_driver_sql(statement)
        monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
        # Migration 5 and every later one apply; 5 moves the rows into workspaces.
        assert [m.version for m in upgrade(db)] == [m.version for m in MIGRATIONS[4:]]
        with db.read() as conn:
            for table in ("sf_datasets", "sf_segments", "sf_destinations"):
                owners = conn.exec_driver_sql(f"SELECT workspace_id FROM {table}").scalars().all()
                assert owners == [1], table
            assert conn.exec_driver_sql("SELECT rid FROM sf_members").scalars().all() == [7]
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM sf_links").scalar() == 1
            if db.is_sqlite:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").first() is None
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        ws = auth.add_workspace(db, "second", NOW)
        with db.write() as conn:  # the same name in another workspace is fine...
            conn.exec_driver_sql(_dataset_row("'sf_records_2'", ts, ws))
        with pytest.raises(sa.exc.IntegrityError), db.write() as conn:  # ...twice in one is not
            conn.exec_driver_sql(_dataset_row("'sf_records_3'", ts, ws))
        with db.write() as conn:  # cascades still work after the rebuild
            conn.exec_driver_sql("DELETE FROM sf_links")
            conn.exec_driver_sql("DELETE FROM sf_datasets WHERE id = 1")
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM sf_members").scalar() == 0
    finally:
        db.dispose()


# ---------------------------------------------------------------- nothing leaks


def test_a_full_team_scenario_logs_and_answers_no_secret_and_no_raw_identifier(
    team: Team, fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    import grpc

    from segflow.activation.fake import Failure

    # Everything at DEBUG, except SQLAlchemy's result rows (DEBUG on its
    # engine logger is an operator asking to dump data); its INFO lines,
    # statements and their parameters, are in.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    settings = Settings(auth=True, datamanager_endpoint=fake.address, sync_timeout=2)
    fake.add_list("1234567890", "77")  # Google holds only lists that were created
    secret = {
        "type": "oauth",
        "client_id": "client-id-7f3a",
        "client_secret": "GOCSPX-client-secret-91c2",
        "refresh_token": "1//refresh-token-5d8e",
    }
    rows = customers(60, seed=4, start_id=20_000)
    raw = [r[EMAIL] for r in rows if r[EMAIL]] + [r[PHONE] for r in rows if r[PHONE]]
    answers: list[str] = []
    app = create_app(team.db, settings, background=False)
    with TestClient(app, base_url=BASE) as client:
        headers = _bearer(team.alice_token)

        def call(method: str, url: str, **kwargs: Any) -> Any:
            response = client.request(method, url, headers=headers, **kwargs)
            assert response.status_code < 300, response.text
            answers.append(response.text)
            return response.json() if response.content else None

        call("POST", "/api/datasets/people/imports",
             files={"file": ("people.csv", csv_bytes(rows))})  # fmt: skip
        body = {"name": "people spenders", "dataset": "people", "rules": HIGH_SPEND}
        seg = call("POST", "/api/segments", json=body)
        dest = call("POST", "/api/destinations", json={
            "name": "ads", "kind": "google_ads", "credentials": secret,
            "config": {"operating_account_id": "1234567890", "product_destination_id": "77",
                       "terms_accepted": True, "ad_user_data": "granted",
                       "ad_personalization": "granted"},
        })  # fmt: skip
        call("POST", f"/api/segments/{seg['id']}/links", json={"destination_id": dest["id"]})
        fake.fail_next(Failure(grpc.StatusCode.UNAVAILABLE, "try later"))
        clock = Clock()
        for _ in range(3):
            run_sync(team.db, settings, clock)
            clock.advance(hours=1)
        assert fake.members("77"), "the list was synced"
        for url in ("/api/destinations", f"/api/segments/{seg['id']}/links",
                    f"/api/segments/{seg['id']}", "/api/segments", "/api/auth/me",
                    "/api/datasets"):  # fmt: skip
            call("GET", url)
        refused = client.get("/api/segments/999999", headers=headers)
        answers.append(refused.text)
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert len(logged) > 20, "the scenario logged something to inspect"
    text = "\n".join(logged + answers)
    for value in [*secret.values(), team.alice_token, *raw]:
        if value != "oauth":
            assert value not in text
    # What left the machine: SHA-256 hashes only.
    sent = "".join(str(r) for r in fake.received)
    assert not [v for v in raw if v in sent]


# ---------------------------------------------------------------- CLI


def test_the_cli_manages_users_workspaces_and_tokens(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from segflow import cli

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        code = cli.main([*argv, "--db", db_url])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("workspaces", "add", "sales")[0] == 0
    assert run("workspaces", "add", "sales")[2].strip().endswith("already exists")
    code, _, err = run("users", "add", "dana", "--member-of", "sales", "--password-stdin",
                       stdin="short\n")  # fmt: skip
    assert code == 1 and "10 to 1024 characters" in err
    code, out, _ = run("users", "add", "dana", "--member-of", "sales", "--password-stdin",
                       stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0 and "member of sales" in out
    assert run("workspaces", "grant", "default", "dana")[0] == 0
    code, out, _ = run("users", "list", "--json")
    assert json.loads(out) == [
        {
            "name": "dana",
            "workspaces": ["default", "sales"],
            "created_at": json.loads(out)[0]["created_at"],
        }
    ]
    code, out, _ = run("tokens", "create", "--user", "dana", "--workspace", "sales",
                       "--name", "ci", "--json")  # fmt: skip
    token = json.loads(out)
    assert token["token"].startswith("sf_") and token["workspace"] == "sales"
    code, out, _ = run("tokens", "list")
    assert "ci\tdana@sales\tactive" in out and token["token"] not in out

    # The operator works in a workspace with --workspace; others do not see it.
    data = Path("sales.csv")
    data.write_bytes(csv_bytes(customers(5, seed=1)))
    assert run("import", str(data), "--dataset", "leads", "--workspace", "sales")[0] == 0
    assert "leads" in run("datasets", "list", "--workspace", "sales")[1]
    assert "leads" not in run("datasets", "list")[1]
    code, _, err = run("datasets", "list", "--workspace", "nowhere")
    assert code == 1 and "no workspace named 'nowhere'" in err

    db = Database(db_url)
    try:
        assert auth.token_principal(db, token["token"], NOW) is not None
        assert run("tokens", "revoke", str(token["id"]))[0] == 0
        assert auth.token_principal(db, token["token"], NOW) is None
        assert run("users", "remove", "dana")[0] == 0
        assert auth.list_users(db) == []
    finally:
        db.dispose()


def test_serve_binds_a_public_address_only_in_team_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from segflow import cli

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli.main(["serve", "--host", "0.0.0.0", "--db", url]) == 1
    assert "SEGFLOW_AUTH=on" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cli_works_through_a_server_with_a_token(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from segflow import cli

    monkeypatch.delenv("SEGFLOW_TOKEN", raising=False)
    data = tmp_path / "remote.csv"
    rows = customers(12, seed=5, start_id=300)
    data.write_bytes(csv_bytes(rows))
    with live_server(team.db, Settings(auth=True)) as server:

        def run(*argv: str, token: str | None = team.bob_token) -> tuple[int, str, str]:
            extra = ["--server", server.url] + (["--token", token] if token else [])
            code = cli.main([*argv, *extra])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, _ = run("import", str(data), "--dataset", "remote", "--key", "id")
        assert code == 0 and "Imported remote.csv into dataset 'remote'" in out
        assert "12 inserted" in out
        rules = json.dumps(HIGH_SPEND)
        code, out, _ = run(
            "segments", "create", "--dataset", "remote", "--name", "r", "--rules", rules
        )
        assert code == 0 and "created segment 'r' on 'remote'" in out
        code, out, _ = run("segments", "list", "--json")
        assert sorted(s["name"] for s in json.loads(out)) == ["beta spenders", "r"]
        code, out, _ = run("datasets", "show", "remote", "--json")
        assert json.loads(out)["records"] == 12
        code, out, _ = run("segments", "explain", "r", rows[0][0])
        assert code == 0 and f"record {rows[0][0]!r}" in out
        # Bob's token sees bob's workspace only.
        code, _, err = run("segments", "show", "alpha big spenders")
        assert code == 1 and "no segment named 'alpha big spenders'" in err
        code, _, err = run("datasets", "list", token=None)
        assert code == 1 and "give --token or SEGFLOW_TOKEN" in err
        code, _, err = run("users", "list")
        assert code == 1 and "works on the database only" in err
    assert [d.name for d in datasets.list_datasets(team.beta)] == ["beta-customers", "remote"]
    assert "remote" not in [d.name for d in datasets.list_datasets(team.alpha)]


def test_failures_older_than_the_window_do_not_count(team: Team) -> None:
    def fail(at: dt.datetime) -> None:
        with pytest.raises(NotAuthenticated):
            auth.login(team.db, "bob", "not the password", at, hours=1)

    for _ in range(passwords.MAX_FAILURES - 1):
        fail(NOW)
    later = NOW + passwords.FAILURE_WINDOW + dt.timedelta(seconds=1)
    fail(later)  # a new window: one failure, not five
    assert auth.login(team.db, "bob", PASSWORD, later, hours=1)[0].user == "bob"
    for _ in range(passwords.MAX_FAILURES):
        fail(later)
    with pytest.raises(Throttled):
        auth.login(team.db, "bob", PASSWORD, later + dt.timedelta(minutes=1), hours=1)
