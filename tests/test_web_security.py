"""The web app against hostile callers: other sites' pages and rebinding names in
the local mode, oversized JSON, too many event streams, and the headers and
export names every answer must get right."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from segflow import auth, segments
from segflow.config import Settings
from segflow.db import Database
from segflow.web import pages
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.sync_helpers import NOW, csv_bytes

RULE = {"logic": "AND", "conditions": [{"field": "email", "operator": "is_not_empty"}]}
ROWS = [("a", "a@example.com"), ("b", "b@example.com")]


def _import(client: Any, rows: list[tuple[str, ...]], **form: str) -> httpx.Response:
    return client.post(  # type: ignore[no-any-return]
        "/api/datasets/customers/imports",
        files={"file": ("c.csv", csv_bytes(rows, header=("id", "email")), "text/csv")},
        data={"key": "id", **form},
    )


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = create_app(db, Settings(max_json_bytes=2_000), background=False)
    with TestClient(app) as test_client:
        assert _import(test_client, ROWS).status_code == 201
        yield test_client


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    return error


# ---------------------------------------------------------------- other sites


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        # Another port of localhost is the same site, not the same origin.
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "http://evil.example/page"},
    ],
)
def test_local_mode_refuses_a_change_from_another_sites_page(
    client: TestClient, db: Database, headers: dict[str, str]
) -> None:
    error = _error(
        client.post(
            "/api/segments",
            json={"name": "s", "dataset": "customers", "rules": RULE},
            headers=headers,
        ),
        403,
        "cross_origin",
    )
    assert "another web site" in error["message"]
    replace = client.post(
        "/api/datasets/customers/imports",
        files={"file": ("c.csv", b"id,email\nx,x@example.com\n", "text/csv")},
        data={"key": "id", "mode": "replace"},
        headers=headers,
    )
    _error(replace, 403, "cross_origin")
    _error(client.delete("/api/datasets/customers", headers=headers), 403, "cross_origin")
    assert segments.list_segments(db) == []
    keys = [r["key"] for r in client.get("/api/datasets/customers/records").json()["items"]]
    assert keys == ["a", "b"]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the CLI's --server requests, curl
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},  # the app's pages
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
        {"Referer": "http://testserver/segments/new"},
    ],
)
def test_local_mode_takes_changes_from_its_own_pages_and_programs(
    client: TestClient, headers: dict[str, str]
) -> None:
    created = client.post(
        "/api/segments", json={"name": "s", "dataset": "customers", "rules": RULE}, headers=headers
    )
    assert created.status_code == 201, created.text


def test_reading_needs_no_origin_check(client: TestClient) -> None:
    # A browser keeps another site's page from reading the answer (no CORS).
    answer = client.get("/api/datasets", headers={"Origin": "http://evil.example"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def _served(db: Database, settings: Settings, base_url: str) -> TestClient:
    app = create_app(db, settings, background=False, address=("127.0.0.1", 8000))
    return TestClient(app, base_url=base_url)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"],
)
def test_a_server_answers_its_own_address_and_localhost(db: Database, base_url: str) -> None:
    with _served(db, Settings(), base_url) as served:
        assert served.get("/api/datasets").status_code == 200
        assert served.get("/segments").status_code == 200


@pytest.mark.parametrize(
    "host", ["rebind.example:8000", "rebind.example", "127.0.0.1:9000", "localhost.evil:8000", ""]
)
def test_a_server_refuses_any_other_host(db: Database, host: str) -> None:
    with _served(db, Settings(), "http://127.0.0.1:8000") as served:
        for path in ("/api/datasets/customers/records", "/segments", "/static/app.js"):
            error = _error(served.get(path, headers={"Host": host}), 421, "wrong_host")
            assert "127.0.0.1:8000" in error["message"]


def test_dns_rebinding_reads_nothing_from_a_live_server(db: Database) -> None:
    with live_server(db) as server, httpx.Client(base_url=server.url) as http:
        assert _import(http, ROWS).status_code == 201
        port = server.url.rsplit(":", 1)[1]
        rebound = http.get(
            "/api/datasets/customers/records", headers={"Host": f"rebind.example:{port}"}
        )
        error = _error(rebound, 421, "wrong_host")
        assert "a@example.com" not in rebound.text
        assert f"127.0.0.1:{port}" in error["message"]
        # The same request under the server's own name is answered.
        assert http.get("/api/datasets/customers/records").status_code == 200


def test_team_mode_leaves_other_sites_to_its_sign_in(db: Database) -> None:
    # A token is never sent by a browser on its own, and a session's change
    # needs its X-CSRF-Token: team mode checks neither Host nor Origin, so it
    # keeps working behind a proxy under a name the server cannot know.
    auth.add_user(db, "ana", "a long enough password", NOW, member_of=["default"])
    token = auth.create_token(db, "ana", "default", "t", NOW)[1]
    settings = Settings(auth=True)
    with _served(db, settings, "https://segflow.example.com") as served:
        answer = served.post(
            "/api/segments/preview",
            json={"dataset": "none", "rules": RULE},
            headers={"Authorization": f"Bearer {token}", "Origin": "https://other.example"},
        )
        _error(answer, 404, "not_found")  # past both checks, to the route


# ---------------------------------------------------------------- JSON bodies


def _padded(body: dict[str, Any], size: int) -> bytes:
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


def test_a_json_body_over_the_limit_is_refused_and_stores_nothing(
    client: TestClient, db: Database
) -> None:
    body = {"name": "s", "dataset": "customers", "rules": RULE}
    headers = {"Content-Type": "application/json"}
    over = client.post("/api/segments", content=_padded(body, 2_001), headers=headers)
    error = _error(over, 413, "too_large")
    assert "2,000 bytes" in error["message"] and "SEGFLOW_MAX_JSON_BYTES" in error["message"]
    # Without a Content-Length the body is counted as it arrives.
    chunks = iter([_padded(body, 2_001)[:1_000], _padded(body, 2_001)[1_000:]])
    chunked = client.post("/api/segments", content=chunks, headers=headers)
    assert "content-length" not in chunked.request.headers
    _error(chunked, 413, "too_large")
    # A JSON route does not take the upload limit by sending multipart.
    multipart = client.post("/api/segments", files={"f": ("x", b"x" * 3_000)})
    _error(multipart, 413, "too_large")
    assert segments.list_segments(db) == []
    at_limit = client.post("/api/segments", content=_padded(body, 2_000), headers=headers)
    assert at_limit.status_code == 201, at_limit.text
    assert [s.name for s in segments.list_segments(db)] == ["s"]


def test_uploads_keep_their_own_limit(client: TestClient) -> None:
    rows = [(f"k{i}", f"person{i}@example.com") for i in range(200)]
    assert len(csv_bytes(rows, header=("id", "email"))) > 2_000
    assert _import(client, rows).status_code == 201


def test_sign_in_refuses_a_body_over_the_limit_before_checking_anything(db: Database) -> None:
    app = create_app(db, Settings(auth=True, max_json_bytes=2_000), background=False)
    with TestClient(app, base_url="https://testserver") as team:
        body = {"name": "ana", "password": "x" * 3_000}
        error = _error(team.post("/api/auth/login", json=body), 413, "too_large")
        assert "SEGFLOW_MAX_JSON_BYTES" in error["message"]


def test_the_json_limit_is_a_setting_of_one_mib() -> None:
    assert Settings().max_json_bytes == 1024**2
    assert Settings.from_env({"SEGFLOW_MAX_JSON_BYTES": "5000"}).max_json_bytes == 5000
    assert Settings.from_env({"SEGFLOW_MAX_STREAMS": "3"}).max_streams == 3
    assert Settings().max_streams == 20


# ---------------------------------------------------------------- headers


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    answers = {
        "page": client.get("/segments"),
        "api": client.get("/api/datasets"),
        "asset": client.get("/static/app.js"),
        "missing": client.get("/api/segments/999"),
        "refused": client.post("/api/segments", json={}, headers={"Origin": "http://e.example"}),
        "too large": client.post("/api/segments", content=b" " * 3_000),
    }
    for what, answer in answers.items():
        csp = answer.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, what
        assert "unsafe-inline" not in csp, what
        assert answer.headers["x-frame-options"] == "DENY", what
        assert answer.headers["x-content-type-options"] == "nosniff", what
        assert answer.headers["referrer-policy"] == "same-origin", what
        expected = None if what == "asset" else "no-store"
        assert answer.headers.get("cache-control") == expected, what


def test_the_pages_have_no_inline_script(client: TestClient) -> None:
    page = client.get("/segments/new?dataset=x").text
    scripts = page.split("<script")[1:]
    assert len(scripts) == 2
    assert scripts[0].startswith(' id="page-data" type="application/json">')
    assert scripts[1].startswith(' src="/static/app.js"></script>')


def test_page_data_carries_no_markup() -> None:
    value = "</script><script>alert(1)</script><!--<script>&amp;"
    text = pages.page_data({"dataset": value})
    assert not set("<>&") & set(text)
    assert json.loads(text) == {"dataset": value}


@pytest.mark.parametrize("name", ["<!--<script>", "<script>alert(1)<", "a&b>c"])
def test_a_page_for_a_name_with_markup_keeps_its_script(client: TestClient, name: str) -> None:
    page = client.get(f"/datasets/{name}").text
    block = page.split('<script id="page-data" type="application/json">')[1]
    payload, rest = block.split("</script>", 1)
    # No "<" at all: "<!--<script>" would change how the parser reads on.
    assert "<" not in payload and json.loads(payload) == {"dataset": name}
    assert rest.lstrip().startswith('<script src="/static/app.js"></script>')


def _recursing_app(db: Database) -> FastAPI:
    app = create_app(db, Settings(), background=False)

    def deeper(n: int) -> int:
        return deeper(n + 1) + 1

    @app.get("/api/deep")
    def deep() -> int:
        return deeper(0)

    return app


def test_a_recursion_error_is_logged_in_one_line(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        TestClient(_recursing_app(db), raise_server_exceptions=False) as test_client,
        caplog.at_level(logging.ERROR, logger="segflow.web"),
    ):
        answer = test_client.get("/api/deep")
    _error(answer, 500, "internal")
    assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    records = [r for r in caplog.records if r.name == "segflow.web"]
    assert len(records) == 1
    assert records[0].exc_info is None
    line = records[0].getMessage()
    assert "\n" not in line and len(line) < 300
    assert line.startswith("GET /api/deep failed: RecursionError: maximum recursion depth")
    assert sys.getrecursionlimit() > 100  # the test did not change it


# ---------------------------------------------------------------- export


def test_the_export_names_any_segment_and_neutralises_spaced_formulas(db: Database) -> None:
    app = create_app(db, Settings(), background=False)
    with TestClient(app) as test_client:
        rows = [("a", " =1"), ("b", "\t@SUM(A1)"), ("c", "plain")]
        assert _import(test_client, rows).status_code == 201
        rule = {"logic": "AND", "conditions": [{"field": "id", "operator": "is_not_empty"}]}
        segment = test_client.post(
            "/api/segments",
            json={"name": "Kunden München 日本", "dataset": "customers", "rules": rule},
        ).json()
        exported = test_client.get(f"/api/segments/{segment['id']}/members.csv")
    assert exported.status_code == 200, exported.text
    disposition = exported.headers["content-disposition"]
    assert disposition == (
        'attachment; filename="Kunden-M-nchen.csv"; '
        "filename*=UTF-8''Kunden%20M%C3%BCnchen%20%E6%97%A5%E6%9C%AC.csv"
    )
    cells = {row[0]: row[1] for row in list(csv.reader(io.StringIO(exported.text)))[1:]}
    assert cells == {"a": "' =1", "b": "'\t@SUM(A1)", "c": "plain"}


# ---------------------------------------------------------------- streams


def _open_stream(
    http: httpx.Client, stack: list[Any], headers: dict[str, str] | None = None
) -> int:
    manager = http.stream("GET", "/api/stream", headers=headers)
    response = manager.__enter__()
    if response.status_code == 200:
        # "retry: 2000": the server holds the slot. The lines are kept: a
        # dropped iterator closes the connection.
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        stack.append((manager, lines))
    else:
        response.read()
        manager.__exit__(None, None, None)
        stack.append(response)
    return response.status_code


def test_event_streams_are_capped_per_user_and_a_closed_one_frees_its_slot(
    db: Database,
) -> None:
    opened: list[Any] = []
    with (
        live_server(db, Settings(max_streams=2)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        slots = server.app.state.segflow.streams
        try:
            assert [_open_stream(http, opened) for _ in range(2)] == [200, 200]
            assert _open_stream(http, opened) == 429
            refused = opened.pop()
            error = refused.json()["error"]
            assert error["code"] == "throttled"
            assert "2 event streams are already open" in error["message"]
            assert "SEGFLOW_MAX_STREAMS=2" in error["message"]
            opened.pop(0)[0].__exit__(None, None, None)
            # The server notices the closed connection on its own schedule.
            for _ in range(500):
                if slots.open(None) == 1:
                    break
                http.get("/healthz")
            assert slots.open(None) == 1
            assert _open_stream(http, opened) == 200
        finally:
            for manager, _lines in opened:
                manager.__exit__(None, None, None)


def test_one_users_streams_leave_anothers_alone(db: Database) -> None:
    tokens = {}
    for name in ("ana", "ben"):
        auth.add_user(db, name, "a long enough password", NOW, member_of=["default"])
        tokens[name] = {
            "Authorization": f"Bearer {auth.create_token(db, name, 'default', 't', NOW)[1]}"
        }
    opened: list[Any] = []
    with (
        live_server(db, Settings(auth=True, max_streams=1)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        try:
            assert _open_stream(http, opened, tokens["ana"]) == 200
            assert _open_stream(http, opened, tokens["ana"]) == 429
            assert "open for ana" in opened.pop().json()["error"]["message"]
            assert _open_stream(http, opened, tokens["ben"]) == 200
        finally:
            for manager, _lines in opened:
                manager.__exit__(None, None, None)
