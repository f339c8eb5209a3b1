"""The JSON API on both engines: every route, its status codes and error bodies."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from segflow import demo, segments
from segflow.config import Settings
from segflow.db import Database
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.sync_helpers import NOW, csv_bytes

HIGH = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 100}]}


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    app = create_app(db, Settings(max_upload_bytes=2_000_000), background=False)
    with TestClient(app) as test_client:
        yield test_client


def _upload(client: TestClient, data: bytes, name: str = "customers", **form: str) -> Any:
    return client.post(
        f"/api/datasets/{name}/imports",
        files={"file": ("customers.csv", data, "text/csv")},
        data=form,
    )


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    assert body["message"]
    return body  # type: ignore[no-any-return]


@pytest.fixture
def loaded(client: TestClient) -> TestClient:
    response = _upload(client, csv_bytes(list(demo.rows(300, seed=5))), key="id")
    assert response.status_code == 201, response.text
    return client


def test_health(client: TestClient, db: Database) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": db.dialect}


def test_upload_gives_the_same_summary_as_the_cli(client: TestClient) -> None:
    response = _upload(client, csv_bytes(list(demo.rows(50))), key="id")
    assert response.status_code == 201
    summary = response.json()
    assert (summary["inserted"], summary["rejected"], summary["key"]) == (50, 0, "id")
    assert {c["name"] for c in summary["columns"]} == set(demo.HEADER)
    again = _upload(client, csv_bytes(list(demo.rows(50))))
    assert again.json()["unchanged"] == 50


def _break_event_writes(db: Database) -> None:
    """Make every enter/exit event write fail in the database itself."""
    with db.write() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql(
                "CREATE TRIGGER sf_test_broken BEFORE INSERT ON sf_segment_events "
                "BEGIN SELECT RAISE(ABORT, 'events are broken'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION sf_test_broken() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'events are broken' USING ERRCODE = 'XX000'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER sf_test_broken BEFORE INSERT ON sf_segment_events "
                "FOR EACH ROW EXECUTE FUNCTION sf_test_broken()"
            )


def test_an_import_stands_when_the_tick_after_it_fails(client: TestClient, db: Database) -> None:
    rows = list(demo.rows(80, seed=2))
    _upload(client, csv_bytes(rows), key="id")
    created = client.post(
        "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
    )
    before = created.json()["member_count"]
    _break_event_writes(db)
    changed = [(*r[:8], "999.00", *r[9:]) for r in rows]
    response = _upload(client, csv_bytes(changed))
    assert response.status_code == 201, response.text
    summary = response.json()
    assert summary["updated"] > 0 and summary["segments"] == []
    assert "next tick" in summary["segments_deferred"]
    assert client.get("/api/segments").json()[0]["member_count"] == before
    with db.write() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER sf_test_broken" + ("" if db.is_sqlite else " ON sf_segment_events")
        )
    from segflow import engine

    engine.tick(db, NOW)  # the next tick catches up
    assert client.get("/api/segments").json()[0]["member_count"] == 80


def test_a_bad_file_is_refused_with_its_line_and_nothing_is_stored(client: TestClient) -> None:
    body = _error(_upload(client, b"id,email\n1,a@b.com\n2,\xff\xfe\n"), 400, "import_failed")
    assert body["details"]["line"] == 3
    assert "line 3" in body["message"]
    _error(client.get("/api/datasets/customers"), 404, "not_found")


def test_rejected_rows_are_listed_with_line_numbers(client: TestClient) -> None:
    data = b"id,email\n1,a@b.com\n1,dup@b.com\n,empty@b.com\n"
    summary = _upload(client, data, name="people").json()
    assert [r["line"] for r in summary["rejects"]] == [3, 4]


def test_upload_bad_form_input(client: TestClient) -> None:
    _error(client.post("/api/datasets/x/imports"), 422, "invalid_request")
    response = _upload(client, csv_bytes([]), mode="merge")
    body = _error(response, 422, "invalid_request")
    assert "mode" in body["message"]


def test_an_oversized_upload_is_refused_before_it_is_read(client: TestClient) -> None:
    big = b"id,email\n" + b"1,a@b.com\n" * 250_000
    body = _error(_upload(client, big), 413, "too_large")
    assert "2,000,000 bytes" in body["message"]
    _error(client.get("/api/datasets/customers"), 404, "not_found")


def test_datasets_routes(loaded: TestClient) -> None:
    (listed,) = loaded.get("/api/datasets").json()
    assert (listed["name"], listed["records"]) == ("customers", 300)
    info = loaded.get("/api/datasets/customers").json()
    spend = next(c for c in info["columns"] if c["name"] == "lifetime_spend")
    assert spend["type"] == "number" and "greater_than" in spend["operators"]
    assert info["identifier_mapping"]["email"] == ["email"]
    assert {q["kind"] for q in info["identifier_quality"]} >= {"email", "phone"}
    first = loaded.get("/api/datasets/customers/records?limit=120").json()
    second = loaded.get(f"/api/datasets/customers/records?limit=500&cursor={first['next_cursor']}")
    keys = [r["key"] for r in first["items"] + second.json()["items"]]
    assert len(keys) == len(set(keys)) == 300
    assert second.json()["next_cursor"] is None
    _error(loaded.get("/api/datasets/customers/records?limit=0"), 422, "invalid_request")
    _error(loaded.get("/api/datasets/nope/records"), 404, "not_found")
    assert loaded.delete("/api/datasets/customers").status_code == 204
    _error(loaded.delete("/api/datasets/customers"), 404, "not_found")


def test_segment_lifecycle(loaded: TestClient, db: Database) -> None:
    created = loaded.post(
        "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
    )
    assert created.status_code == 201
    segment = created.json()
    assert {"id", "name", "dataset", "rules", "member_count", "last_processed_at"} <= set(segment)
    assert segment["member_count"] == len(segments.member_keys(db, segment["id"])) > 0
    sid = segment["id"]
    _error(
        loaded.post("/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}),
        409,
        "conflict",
    )
    assert [s["name"] for s in loaded.get("/api/segments").json()] == ["big"]
    assert loaded.get(f"/api/segments/{sid}").json()["member_count"] == segment["member_count"]
    stricter = {
        "conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 300}]
    }
    edited = loaded.patch(f"/api/segments/{sid}", json={"rules": stricter, "name": "bigger"})
    assert edited.status_code == 200
    assert edited.json()["name"] == "bigger"
    assert edited.json()["member_count"] < segment["member_count"]
    _error(loaded.patch(f"/api/segments/{sid}", json={}), 400, "invalid_input")
    assert loaded.delete(f"/api/segments/{sid}").status_code == 204
    for method, path in (
        ("get", f"/api/segments/{sid}"),
        ("patch", f"/api/segments/{sid}"),
        ("delete", f"/api/segments/{sid}"),
        ("get", f"/api/segments/{sid}/members"),
        ("get", f"/api/segments/{sid}/members.csv"),
        ("get", f"/api/segments/{sid}/events"),
        ("get", f"/api/segments/{sid}/history"),
        ("get", f"/api/segments/{sid}/explain/1"),
        ("get", f"/api/segments/{sid}/links"),
    ):
        kwargs: dict[str, Any] = {"json": {"name": "x"}} if method == "patch" else {}
        _error(getattr(loaded, method)(path, **kwargs), 404, "not_found")


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ({"conditions": [{"field": "nope", "operator": "equals", "value": 1}]}, "conditions[0]"),
        (
            {"conditions": [{"field": "state", "operator": "greater_than", "value": 1}]},
            "conditions[0]",
        ),
        ({"conditions": []}, "rules.conditions"),
        ({"logic": "XOR", "conditions": []}, "rules.logic"),
    ],
)
def test_invalid_rules_name_the_offending_part(
    loaded: TestClient, rules: dict[str, Any], path: str
) -> None:
    body = _error(
        loaded.post("/api/segments", json={"name": "s", "dataset": "customers", "rules": rules}),
        400,
        "invalid_rules",
    )
    assert path in body["details"]["path"]
    _error(loaded.post("/api/segments/preview", json={"dataset": "customers", "rules": rules}),
           400, "invalid_rules")  # fmt: skip


def test_malformed_json_and_unknown_dataset(loaded: TestClient) -> None:
    response = loaded.post(
        "/api/segments", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(response, 422, "invalid_request")
    _error(
        loaded.post("/api/segments", json={"name": "s", "dataset": "ghost", "rules": HIGH}),
        404,
        "not_found",
    )
    _error(loaded.get("/api/segments/abc"), 422, "invalid_request")
    _error(loaded.get("/api/nothing-here"), 404, "not_found")


def test_preview_counts_and_would_enter_and_leave(loaded: TestClient, db: Database) -> None:
    sid = loaded.post(
        "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
    ).json()["id"]
    wider = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 50}]}
    plain = loaded.post("/api/segments/preview", json={"dataset": "customers", "rules": wider})
    result = plain.json()
    assert result["count"] == segments.count_matching(db, "customers", wider, NOW)
    assert result["would_enter"] is None and len(result["sample"]) == 10
    against = loaded.post(
        "/api/segments/preview", json={"dataset": "customers", "rules": wider, "segment_id": sid}
    ).json()
    members = loaded.get(f"/api/segments/{sid}").json()["member_count"]
    assert (against["would_enter"], against["would_exit"]) == (against["count"] - members, 0)
    narrower = {
        "conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 200}]
    }
    against = loaded.post(
        "/api/segments/preview",
        json={"dataset": "customers", "rules": narrower, "segment_id": sid},
    ).json()
    assert (against["would_enter"], against["would_exit"]) == (0, members - against["count"])


def test_members_pages_and_a_csv_export_that_spreadsheets_cannot_run(
    client: TestClient,
) -> None:
    rows = list(demo.rows(30, seed=2))
    rows[0] = ("1", "=HYPERLINK(\"http://x\")", "+14155550100", "@SUM", "-1", "CA", "US",
               "02134", "500", "2024-01-01", "true")  # fmt: skip
    assert _upload(client, csv_bytes(rows), key="id").status_code == 201
    sid = client.post(
        "/api/segments", json={"name": "all", "dataset": "customers", "rules": {
            "conditions": [{"field": "id", "operator": "greater_than", "value": 0}]}},
    ).json()["id"]  # fmt: skip
    page = client.get(f"/api/segments/{sid}/members?limit=20").json()
    rest = client.get(f"/api/segments/{sid}/members?cursor={page['next_cursor']}").json()
    assert len(page["items"]) + len(rest["items"]) == 30
    exported = client.get(f"/api/segments/{sid}/members.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    assert "phone numbers" in exported.headers["x-segflow-export-note"]
    table = list(csv.reader(io.StringIO(exported.text)))
    assert table[0] == list(demo.HEADER)
    assert len(table) == 31
    first = dict(zip(table[0], table[1], strict=True))
    assert first["email"] == '\'=HYPERLINK("http://x")'
    assert first["phone"] == "'+14155550100"
    assert first["first_name"] == "'@SUM" and first["last_name"] == "'-1"
    assert first["zip"] == "02134"


def test_events_history_and_explain(loaded: TestClient) -> None:
    sid = loaded.post(
        "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
    ).json()["id"]
    members = loaded.get(f"/api/segments/{sid}/members?limit=1").json()["items"]
    key = members[0]["key"]
    row = next(r for r in demo.rows(300, seed=5) if r[0] == key)
    changed = list(row)
    changed[8] = "1.00"
    _upload(loaded, csv_bytes([tuple(changed)]))
    events = loaded.get(f"/api/segments/{sid}/events?limit=5").json()
    assert events["items"][0] == {**events["items"][0], "key": key, "kind": "exit"}
    history = loaded.get(f"/api/segments/{sid}/history").json()
    assert history[-1]["members"] == loaded.get(f"/api/segments/{sid}").json()["member_count"]
    assert history[-1]["members"] == history[-2]["members"] - 1
    explained = loaded.get(f"/api/segments/{sid}/explain/{key}").json()
    assert (explained["member"], explained["matches"]) == (False, False)
    assert explained["rules"]["conditions"][0]["actual"] == "1.00"
    _error(loaded.get(f"/api/segments/{sid}/explain/no-such-key"), 404, "not_found")


def test_destinations_and_links(loaded: TestClient, tmp_path: Any) -> None:
    sid = loaded.post(
        "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
    ).json()["id"]
    path = tmp_path / "out.jsonl"
    made = loaded.post(
        "/api/destinations", json={"name": "dry", "kind": "file", "config": {"path": str(path)}}
    )
    assert made.status_code == 201
    did = made.json()["id"]
    _error(
        loaded.post("/api/destinations", json={"name": "x", "kind": "ftp"}), 422, "invalid_request"
    )
    _error(
        loaded.post("/api/destinations", json={"name": "g", "kind": "google_ads", "config": {}}),
        400,
        "invalid_input",
    )
    secret = {"type": "oauth", "client_id": "cid", "client_secret": "very-secret-value",
              "refresh_token": "1//refresh-token-value"}  # fmt: skip
    google = loaded.post(
        "/api/destinations",
        json={
            "name": "ads",
            "kind": "google_ads",
            "config": {
                "operating_account_id": "1",
                "product_destination_id": "2",
                "ad_user_data": "granted",
                "ad_personalization": "denied",
            },
            "credentials": secret,
        },
    )
    assert google.status_code == 201
    everything = json.dumps(loaded.get("/api/destinations").json()) + google.text
    assert "very-secret-value" not in everything and "refresh-token-value" not in everything
    linked = loaded.post(f"/api/segments/{sid}/links", json={"destination_id": did})
    assert linked.status_code == 201
    assert (
        linked.json()["pending_adds"] == loaded.get(f"/api/segments/{sid}").json()["member_count"]
    )
    _error(loaded.post(f"/api/segments/{sid}/links", json={"destination_id": did}), 409, "conflict")
    _error(
        loaded.post(f"/api/segments/{sid}/links", json={"destination_id": 999}), 404, "not_found"
    )
    (status,) = loaded.get(f"/api/segments/{sid}/links").json()
    assert status["destination"] == "dry"
    assert loaded.get(f"/api/segments/{sid}").json()["destinations"] == ["dry"]
    _error(loaded.delete(f"/api/destinations/{did}"), 400, "invalid_input")
    assert loaded.delete(f"/api/segments/{sid}/links/{did}").status_code == 204
    assert loaded.delete(f"/api/destinations/{did}").status_code == 204
    _error(loaded.delete(f"/api/destinations/{did}"), 404, "not_found")


def test_the_openapi_document_and_docs_page_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/segments/preview" in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "cdn" not in page.text.lower()


# ---------------------------------------------------------------- live stream


def _read_events(
    url: str,
    into: list[tuple[str, dict[str, Any]]],
    stop: threading.Event,
    headers: dict[str, str] | None = None,
) -> None:
    with httpx.stream("GET", f"{url}/api/stream", headers=headers, timeout=30) as response:
        kind = None
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                into.append((kind, json.loads(line[6:])))


def _wait(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.mark.slow
def test_the_stream_sends_current_state_then_changes_and_reads_once_per_change(
    db: Database,
) -> None:
    # 41 streams at once, over the default cap of 20 per user.
    with (
        live_server(db, Settings(max_streams=100), poll_interval=30) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        http.post(
            "/api/datasets/customers/imports",
            files={"file": ("c.csv", csv_bytes(list(demo.rows(200, seed=5))), "text/csv")},
            data={"key": "id"},
        )
        sid = http.post(
            "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
        ).json()["id"]
        broadcaster = server.app.state.segflow.broadcaster

        def change_and_count(clients: int, spend: str) -> int:
            streams = [[] for _ in range(clients)]  # type: ignore[var-annotated]
            stop = threading.Event()
            threads = [
                threading.Thread(target=_read_events, args=(server.url, s, stop), daemon=True)
                for s in streams
            ]
            for t in threads:
                t.start()
            _wait(lambda: all(any(k == "segment" for k, _ in s) for s in streams))
            _wait(lambda: broadcaster.subscriber_count == clients)
            before_reads = broadcaster.reads
            target = http.get("/api/segments").json()[0]["member_count"] - 1
            key = http.get(f"/api/segments/{sid}/members?limit=1").json()["items"][0]["key"]
            row = list(next(r for r in demo.rows(200, seed=5) if r[0] == key))
            row[8] = spend
            http.post(
                "/api/datasets/customers/imports",
                files={"file": ("c.csv", csv_bytes([tuple(row)]), "text/csv")},
            )
            for s in streams:
                _wait(
                    lambda s=s: any(
                        k == "segment" and d.get("member_count") == target for k, d in s
                    ),
                    timeout=5,
                )
            reads = broadcaster.reads - before_reads
            stop.set()
            return reads

        # Two reads per wake-up of the broadcaster, whatever the number of
        # streams; wake-ups vary with timing (on PostgreSQL every committed
        # write notifies), but reading per client would take 40 or more.
        one = change_and_count(1, "1.00")
        many = change_and_count(40, "2.00")
        assert one <= 16 and many <= 16


@pytest.mark.slow
def test_serve_answers_and_stops_cleanly_on_sigterm_with_a_stream_open(tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys

    from segflow.web.server import free_port

    port = free_port()
    log = tmp_path / "serve.log"
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segflow.cli", "serve", "--port", str(port), "--db", url],
            stderr=err,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _answers(f"{base}/healthz"), timeout=30)
        with httpx.stream("GET", f"{base}/api/stream", timeout=30) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "segflow: stopped" in log.read_text()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_refuses_a_public_address_without_accounts(tmp_path: Any) -> None:
    from segflow import cli

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert cli.main(["serve", "--host", "0.0.0.0", "--db", url]) == 1


def test_postgres_streams_learn_of_other_processes_writes_at_once(
    db: Database, db_url: str
) -> None:
    if not db.is_postgres:
        pytest.skip("SQLite has no LISTEN/NOTIFY; other processes' writes show within a second")
    with live_server(db, poll_interval=60) as server:
        events: list[tuple[str, dict[str, Any]]] = []
        stop = threading.Event()
        threading.Thread(target=_read_events, args=(server.url, events, stop), daemon=True).start()
        _wait(lambda: server.app.state.segflow.broadcaster.subscriber_count == 1)
        other = Database(db_url)  # as another process would open it
        try:
            from tests.helpers import do_import

            do_import(other, csv_bytes(list(demo.rows(20, seed=1))), "customers", key="id")
            segments.create_segment(other, name="elsewhere", dataset="customers",
                                    rules_json=HIGH, now=NOW)  # fmt: skip
        finally:
            other.dispose()
        _wait(lambda: any(d.get("name") == "elsewhere" for _, d in events), timeout=5)
        stop.set()


def test_forget_a_person_through_the_api(loaded: TestClient) -> None:
    sid = loaded.post(
        "/api/segments", json={"name": "big", "dataset": "customers", "rules": HIGH}
    ).json()["id"]
    key = loaded.get(f"/api/segments/{sid}/members?limit=1").json()["items"][0]["key"]
    report = loaded.delete(f"/api/datasets/customers/records/{key}")
    assert report.status_code == 200
    assert report.json()["segments_left"] == ["big"]
    _error(loaded.get(f"/api/segments/{sid}/explain/{key}"), 404, "not_found")
    _error(loaded.delete(f"/api/datasets/customers/records/{key}"), 404, "not_found")


def test_nul_characters_and_huge_numbers_are_refused_not_crashed_on(loaded: TestClient) -> None:
    _error(loaded.get("/api/segments?dataset=%00"), 400, "invalid_input")
    _error(loaded.get("/api/datasets/a%00b"), 400, "invalid_input")
    for value, field, op in (
        ("a\x00b", "email", "contains"),
        (2**70, "lifetime_spend", "greater_than"),
    ):
        rules = {"conditions": [{"field": field, "operator": op, "value": value}]}
        body = _error(
            loaded.post("/api/segments/preview", json={"dataset": "customers", "rules": rules}),
            400,
            "invalid_rules",
        )
        assert body["details"]["path"] == "rules.conditions[0].value"


def test_the_icon_is_served_where_browsers_and_pages_look(client: TestClient) -> None:
    for path in ("/favicon.ico", "/static/favicon.svg"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert answer.text.startswith("<svg")
    assert '<link rel="icon" href="/static/favicon.svg"' in client.get("/").text


def test_an_upload_takes_the_encoding_and_delimiter_the_cli_takes(client: TestClient) -> None:
    data = "id|name|city\n1|Zoë|Köln\n2|Ann|Paris €\n".encode("cp1252")
    refused = _upload(client, data, name="people")
    assert "not valid utf-8" in _error(refused, 400, "import_failed")["message"]
    response = _upload(client, data, name="people", encoding="cp1252", delimiter="pipe")
    assert response.status_code == 201, response.text
    summary = response.json()
    assert summary["delimiter"] == "|" and summary["inserted"] == 2
    records = client.get("/api/datasets/people/records").json()["items"]
    assert [r["record"]["city"] for r in records] == ["Köln", "Paris €"]
