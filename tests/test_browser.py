"""The pages in a real browser: Debian's Chromium driven by Playwright.

Screenshots of every page land in ``test-artifacts/screenshots`` (or
``$SEGFLOW_TEST_ARTIFACTS``). Without ``/usr/bin/chromium`` these tests are
skipped and say so; ``.ci/run`` installs it.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from segflow import datasets, demo, segments
from segflow.activation import destinations, links
from segflow.config import Settings
from segflow.datasets import get_dataset
from segflow.db import Database
from segflow.db.schema import imports as imports_table
from segflow.db.schema import segments as segments_table
from segflow.web.server import LiveServer, free_port, live_server
from tests.helpers import asks_in_row, confirm_in_row, needs_chromium
from tests.sync_helpers import NOW, csv_bytes

ARTIFACTS = (
    Path(os.environ.get("SEGFLOW_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
    / "screenshots"
)

pytestmark = needs_chromium


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(db, Settings(), poll_interval=0.2) as running:
        yield running


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # Whatever the Content-Security-Policy blocks on the app's own pages.
    opened.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors or CSP violations: {errors}"


def _big_spenders(server: LiveServer, db: Database, customers: int) -> Any:
    """``customers`` demo customers imported through the page's API, and segment
    "big" of those who spent over 100."""
    _import(server, list(demo.rows(customers, seed=8)), key="id")
    rule = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 100}]}
    return segments.create_segment(db, name="big", dataset="customers", rules_json=rule, now=NOW)


def _shot(page: Any, name: str, request: pytest.FixtureRequest) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    engine = request.node.callspec.params.get("db_url", "db")
    page.screenshot(path=str(ARTIFACTS / f"{name}-{engine}.png"), full_page=True)


def _ready(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def test_upload_a_csv_through_the_page_and_see_the_summary(
    server: LiveServer, page: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rows = list(demo.rows(400, seed=9))
    rows.append(("", "no-key@example.com", "", "", "", "", "", "", "", "", ""))
    rows.append(rows[0])  # a duplicate key: rejected with its line
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_bytes(rows))

    _ready(page, f"{server.url}/datasets")
    page.set_input_files("#file", str(path))
    assert page.input_value("#dataset-name") == "customers"
    page.fill("#key", "id")
    page.click("#upload-button")
    page.wait_for_selector("#import-summary .import-counts")
    counts = page.text_content("#import-summary .import-counts")
    assert "402 rows: 400 inserted" in counts and "2 rejected" in counts
    rejects = page.text_content("#import-summary .rejects")
    assert "line 403" in rejects and "duplicate key" in rejects
    assert "line 402" in rejects
    page.wait_for_selector("#datasets a:text('customers')")
    _shot(page, "datasets", request)
    page.click("#datasets a:text('customers')")
    page.wait_for_selector("#records tbody tr")
    assert page.locator("#columns tbody tr").count() == len(demo.HEADER)
    _shot(page, "dataset", request)


def test_a_windows_excel_export_imports_with_the_encoding_and_delimiter_chosen_on_the_page(
    server: LiveServer, page: Any, tmp_path: Path, db: Database
) -> None:
    path = tmp_path / "kunden.csv"
    path.write_bytes("id|Name|Stadt\n1|Zoë|Köln\n2|Jörg|Düsseldorf\n".encode("cp1252"))

    _ready(page, f"{server.url}/datasets")
    page.set_input_files("#file", str(path))
    page.click("#upload-button")
    page.wait_for_selector("#upload-status .error")
    assert "not valid utf-8" in (page.text_content("#upload-status") or "")
    page.select_option("#encoding", "cp1252")
    page.select_option("#delimiter", "pipe")
    page.click("#upload-button")
    page.wait_for_selector("#import-summary .import-counts")
    assert "2 inserted" in (page.text_content("#import-summary .import-counts") or "")
    cities = [r["Stadt"] for r in datasets.read_records(db, "kunden", limit=5)]
    assert cities == ["Köln", "Düsseldorf"]


DROP_FILE = """([name, text]) => {
    const data = new DataTransfer();
    data.items.add(new File([text], name, { type: "text/csv" }));
    const zone = document.getElementById("drop");
    const event = (type) => new DragEvent(type, { dataTransfer: data, cancelable: true });
    zone.dispatchEvent(event("dragover"));
    const highlighted = zone.classList.contains("over");
    zone.dispatchEvent(event("drop"));
    return highlighted;
}"""


def test_drop_a_csv_on_the_page_and_upload_it_with_progress(
    db: Database, server: LiveServer, page: Any
) -> None:
    text = csv_bytes(list(demo.rows(2_000, seed=12))).decode()
    _ready(page, f"{server.url}/datasets")
    assert page.evaluate(DROP_FILE, ["dropped customers.csv", text]) is True
    assert page.input_value("#dataset-name") == "dropped_customers"
    assert "dropped customers.csv" in page.text_content("#file-name")
    page.click("#upload-button")
    page.wait_for_selector("#import-summary .import-counts")
    assert "2,000 rows: 2,000 inserted" in page.text_content("#import-summary .import-counts")
    # Nothing absent shows as "null" (no segments, no rejects here).
    assert "null" not in page.text_content("#import-summary")
    # The bar was shown and ends full once the server answered.
    assert page.eval_on_selector("#upload-progress", "b => [b.hidden, b.value]") == [False, 100]
    assert page.text_content("#upload-status") == "done"
    page.wait_for_selector("#datasets a:text('dropped_customers')")
    assert get_dataset(db, "dropped_customers").record_count == 2_000


def _import(server: LiveServer, rows: list[tuple[str, ...]], **form: str) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/datasets/customers/imports",
        files={"file": ("c.csv", csv_bytes(rows), "text/csv")},
        data=form,
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_build_a_segment_by_clicking_and_typing_then_save(
    server: LiveServer, page: Any, db: Database, request: pytest.FixtureRequest
) -> None:
    _import(server, list(demo.rows(500, seed=4)), key="id")
    rule = {
        "logic": "AND",
        "conditions": [
            {"field": "lifetime_spend", "operator": "greater_than", "value": 100},
            {
                "logic": "OR",
                "conditions": [{"field": "state", "operator": "equals", "value": "ca"}],
            },
        ],
    }
    expected = segments.count_matching(db, "customers", rule, NOW)

    _ready(page, f"{server.url}/segments/new?dataset=customers")
    page.fill("#seg-name", "High spenders in CA")
    first = page.locator("#rules .condition").first
    first.locator(".field").select_option("lifetime_spend")
    first.locator(".operator").select_option("greater_than")
    first.locator(".value").fill("100")
    page.click("#rules .group-head .add-group")
    inner = page.locator("#rules .group .group").first
    inner.locator(".add-condition").click()
    condition = inner.locator(".condition").first
    condition.locator(".field").select_option("state")
    condition.locator(".operator").select_option("equals")
    condition.locator(".value").fill("ca")
    page.wait_for_function(
        "expected => document.querySelector('#preview-count')?.textContent === expected",
        arg=f"{expected:,}",
        timeout=5000,
    )
    _shot(page, "builder", request)
    page.click("#save")
    page.wait_for_url("**/segments/*")
    page.wait_for_selector("#member-count")
    assert page.text_content("#member-count") == f"{expected:,}"
    saved = segments.get_segment(db, "High spenders in CA")
    assert saved.member_count == expected
    page.wait_for_selector("#chart svg")
    page.wait_for_selector("#members tbody tr")
    _shot(page, "segment", request)


def test_an_import_changes_the_count_on_an_open_page_without_reload(
    server: LiveServer, page: Any, db: Database, request: pytest.FixtureRequest
) -> None:
    rows = list(demo.rows(300, seed=6))
    _import(server, rows, key="id")
    rule = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 100}]}
    created = segments.create_segment(db, name="big", dataset="customers", rules_json=rule, now=NOW)
    _ready(page, f"{server.url}/segments")
    count = page.locator(f"tr[data-segment='{created.id}'] .count")
    assert count.text_content() == f"{created.member_count:,}"
    page.evaluate("window.__no_reload = true")

    changed = [r for r in rows if float(r[8]) <= 100][:7]
    _import(server, [(*r[:8], "999.00", *r[9:]) for r in changed])

    page.wait_for_function(
        "([id, text]) => document.querySelector(`tr[data-segment='${id}'] .count`)"
        "?.textContent === text",
        arg=[created.id, f"{created.member_count + 7:,}"],
        timeout=5000,
    )
    assert page.evaluate("window.__no_reload") is True
    _shot(page, "segments", request)


def test_export_the_members_as_csv(
    server: LiveServer, page: Any, db: Database, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _import(server, list(demo.rows(120, seed=8)), key="id")
    rule = {"conditions": [{"field": "state", "operator": "equals", "value": "CA"}]}
    created = segments.create_segment(db, name="ca", dataset="customers", rules_json=rule, now=NOW)
    _ready(page, f"{server.url}/segments/{created.id}")
    with page.expect_download() as download:
        page.click("#export")
    target = tmp_path / "members.csv"
    download.value.save_as(target)
    with target.open(newline="") as exported:
        table = list(csv.reader(exported))
    assert table[0] == list(demo.HEADER)
    assert {row[0] for row in table[1:]} == segments.member_keys(db, created.id)
    assert all(row[5] == "CA" for row in table[1:])


def test_add_a_destination_and_the_credentials_never_come_back(
    server: LiveServer, page: Any, request: pytest.FixtureRequest
) -> None:
    _ready(page, f"{server.url}/destinations")
    page.fill("#d-name", "ads")
    page.select_option("#d-kind", "google_ads")
    page.fill("#d-account", "123-456-7890")
    page.fill("#d-list", "42")
    page.select_option("#d-aud", "denied")
    page.select_option("#d-ap", "denied")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#destinations td:text('ads')")
    assert "1234567890" in page.text_content("#destinations")
    _shot(page, "destinations", request)
    _ready(page, f"{server.url}/docs")
    page.wait_for_selector(".operation")
    _shot(page, "api", request)


def test_a_google_ads_destination_needs_its_consent_chosen_on_the_page(
    server: LiveServer, page: Any, db: Database
) -> None:
    _ready(page, f"{server.url}/destinations")
    assert page.input_value("#d-aud") == "" and page.input_value("#d-ap") == ""
    page.fill("#d-name", "eu")
    page.select_option("#d-kind", "google_ads")
    page.fill("#d-account", "123-456-7890")
    page.fill("#d-list", "42")
    page.select_option("#d-aud", "granted")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#d-error:text('ad_personalization is missing')")
    assert destinations.list_destinations(db) == []
    page.select_option("#d-ap", "denied")
    page.click("#destination-form button[type=submit]")
    page.wait_for_selector("#destinations td:text('eu')")
    (added,) = destinations.list_destinations(db)
    assert added.consent == ("granted", "denied")


def _sign_in(page: Any, name: str, password: str) -> None:
    """Fill in and send the sign-in form (the page is on its way to /login)."""
    page.wait_for_url("**/login")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-form button")


def test_team_mode_sign_in_workspace_isolation_and_csrf_from_the_pages(
    db: Database, browser: Any, page: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from segflow import auth

    password = "a long enough password"
    alpha = db.in_workspace(auth.add_workspace(db, "alpha", NOW))
    auth.add_workspace(db, "beta", NOW)
    auth.add_user(db, "erin", password, NOW, member_of=["beta"])
    from tests.helpers import do_import

    do_import(alpha, csv_bytes(list(demo.rows(50, seed=4))), "alpha-secrets", key="id")
    path = tmp_path / "beta.csv"
    path.write_bytes(csv_bytes(list(demo.rows(30, seed=6))))
    with live_server(db, Settings(auth=True), poll_interval=0.2) as server:
        page.goto(f"{server.url}/datasets")
        _sign_in(page, "erin", "wrong password!")
        page.wait_for_selector("#login-error:text('wrong name or password')")
        _sign_in(page, "erin", password)
        page.wait_for_url("**/segments")
        page.wait_for_selector("body[data-ready=true]")
        assert page.text_content("#user") == "erin"
        assert page.input_value("#workspace") == "beta"
        _shot(page, "team-segments", request)
        # An upload from the page carries the session's CSRF token.
        _ready(page, f"{server.url}/datasets")
        page.set_input_files("#file", str(path))
        page.fill("#dataset-name", "beta-customers")
        page.fill("#key", "id")
        page.click("#upload-button")
        page.wait_for_selector("#import-summary .import-counts")
        assert "30 inserted" in page.text_content("#import-summary .import-counts")
        page.wait_for_selector("#datasets a:text('beta-customers')")
        assert "alpha-secrets" not in page.content()
        # Changing one's own password from the header.
        page.click("#password summary")
        page.fill("#current-password", "not the password")
        page.fill("#new-password", "an even longer password")
        page.click("#password-button")
        page.wait_for_selector("#password-status .error:text('the current password is wrong')")
        page.fill("#current-password", password)
        page.click("#password-button")
        page.wait_for_selector("#password-status:text('Changed')")
        _shot(page, "team-password", request)
        page.click("#sign-out")
        _sign_in(page, "erin", "an even longer password")
        page.wait_for_url("**/segments")
        page.wait_for_selector("body[data-ready=true]")
        # Leave before the server stops, so no request of the page is cut off.
        page.goto("about:blank")
    # The cookie the browser held was locked down.
    assert "alpha-secrets" in [
        d.name for d in __import__("segflow.datasets").datasets.list_datasets(alpha)
    ]


# ---------------------------------------------------------------- hostile pages


@contextmanager
def _other_site(html: str) -> Iterator[str]:
    """A page of another origin (another local port), as any site the user opens."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/"
    finally:
        site.shutdown()
        site.server_close()


ATTACK = """<!doctype html><html><body><script>
const target = %s;
async function attack() {
  const out = {};
  const form = new FormData();
  const file = new Blob(["id,email\\nevil,evil@example.com\\n"], {type: "text/csv"});
  form.append("file", file, "x.csv");
  form.append("key", "id");
  form.append("mode", "replace");
  const imports = target + "/api/datasets/customers/imports";
  try {
    await fetch(imports, {method: "POST", mode: "no-cors", body: form});
    out.replace = "sent";
  } catch (e) { out.replace = "failed: " + e; }
  try {
    const answer = await fetch(target + "/api/datasets/customers/records");
    out.records = await answer.text();
  } catch (e) { out.records = "failed: " + e; }
  window.result = out;
}
attack();
</script></body></html>"""


def test_a_page_of_another_origin_can_neither_change_nor_read_anything(
    server: LiveServer, browser: Any, db: Database
) -> None:
    _import(server, list(demo.rows(40, seed=3)), key="id")
    before = {r["key"] for r in _records(server)}
    context = browser.new_context()
    attacker = context.new_page()
    answers: dict[str, int] = {}
    attacker.on(
        "response",
        lambda r: (
            answers.__setitem__(f"{r.request.method} {r.url}", r.status)
            if r.url.startswith(server.url)
            else None
        ),
    )
    with _other_site(ATTACK % json.dumps(server.url)) as url:
        attacker.goto(url)
        attacker.wait_for_function("window.result !== undefined")
        result = attacker.evaluate("window.result")
    context.close()
    # The browser sent the replace (no-cors hides the answer from the page);
    # the server refused it.
    assert result["replace"] == "sent"
    assert answers[f"POST {server.url}/api/datasets/customers/imports"] == 403
    # Reading is CORS's part: no Access-Control-Allow-Origin, so no body.
    assert result["records"].startswith("failed: TypeError")
    assert get_dataset(db, "customers").record_count == 40
    assert {r["key"] for r in _records(server)} == before


def _records(server: LiveServer) -> list[dict[str, Any]]:
    answer = httpx.get(f"{server.url}/api/datasets/customers/records?limit=1000")
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]


def test_a_page_of_the_app_does_not_render_in_another_origins_frame(
    server: LiveServer, browser: Any
) -> None:
    context = browser.new_context()
    framing = context.new_page()
    refused: list[str] = []
    framing.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    html = f'<!doctype html><iframe id="app" src="{server.url}/segments"></iframe>'
    with _other_site(html) as url:
        framing.goto(url)
        framing.wait_for_load_state("load")
        frames = [f for f in framing.frames if f is not framing.main_frame]
        assert len(frames) == 1
        # Chromium shows its error page instead of the app's.
        assert frames[0].query_selector("body[data-page]") is None
    context.close()
    assert refused, "Chromium did not report refusing the frame"


def test_a_dataset_address_with_html_in_it_still_loads_the_app(
    server: LiveServer, page: Any
) -> None:
    # "<!--<script>" inside a script element would swallow the next one.
    _ready(page, f"{server.url}/datasets/%3C!--%3Cscript%3E")
    assert page.text_content("#title") == "Dataset <!--<script>"


def test_no_page_scrolls_sideways_on_a_phone_width_window(
    server: LiveServer, db: Database, browser: Any, request: pytest.FixtureRequest
) -> None:
    """At 390 px (a phone) the header wraps and wide tables scroll inside their box."""
    _import(server, list(demo.rows(200, seed=3)), key="id")
    made = segments.create_segment(
        db, name="a segment with a long name", dataset="customers",
        rules_json={"conditions": [{"field": "lifetime_spend", "operator": "greater_than",
                                    "value": 100}]}, now=NOW,
    )  # fmt: skip
    destinations.add_destination(db, "an audience file", "file", {"path": "a.jsonl"}, NOW)
    context = browser.new_context(viewport={"width": 390, "height": 800})
    page = context.new_page()
    try:
        for name, path in [("segments", "/segments"), ("segment", f"/segments/{made.id}"),
                           ("builder", "/segments/new"), ("datasets", "/datasets"),
                           ("dataset", "/datasets/customers"),
                           ("destinations", "/destinations")]:  # fmt: skip
            _ready(page, server.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide"
            _shot(page, f"{name}-390px", request)
    finally:
        context.close()


def test_an_untouched_builder_asks_for_a_value_and_errors_name_conditions_in_words(
    server: LiveServer, page: Any, db: Database
) -> None:
    _import(server, list(demo.rows(50, seed=5)), key="id")
    _ready(page, f"{server.url}/segments/new?dataset=customers")
    page.wait_for_selector("#preview span.muted")
    # No red rule path on a form nobody has touched: a hint in words instead.
    hint = "Give condition 1 a value to count the records it matches."
    assert page.text_content("#preview") == hint
    assert page.locator("#preview .error").count() == 0

    page.fill("#seg-name", "unfinished")
    page.click("#save")
    page.wait_for_selector("#save-error:not(:empty)")
    error = page.text_content("#save-error") or ""
    assert error.startswith("condition 1: ") and "rules.conditions" not in error
    assert segments.list_segments(db) == []


def test_the_segments_list_shows_sync_badges_on_every_load(
    server: LiveServer, page: Any, db: Database
) -> None:
    """The stream's first snapshot often arrives while the page still loads; it waits
    for the page's listeners instead of being lost (1 load in 5 showed badges before)."""
    made = _big_spenders(server, db, 60)
    destinations.add_destination(db, "audience", "file", {"path": "a.jsonl"}, NOW)
    links.link(db, "big", "audience", NOW)
    for _ in range(5):
        _ready(page, f"{server.url}/segments")
        badge = page.locator(f"tr[data-segment='{made.id}'] .sync .badge")
        badge.wait_for(timeout=5000)
        assert (badge.text_content() or "").startswith("audience: ")


def test_a_segment_that_stopped_updating_says_so_in_words(
    server: LiveServer, page: Any, db: Database
) -> None:
    made = _big_spenders(server, db, 20)
    reason = (
        "the database cannot evaluate these rules: rules.conditions[0].value: "
        + "a value the database refused, " * 5
    )
    with db.write() as conn:  # as the engine records a segment it could not evaluate
        conn.execute(sa.update(segments_table).values(error=reason))
    _ready(page, f"{server.url}/segments")
    note = page.locator(f"tr[data-segment='{made.id}'] .processed span.error")
    shown = note.text_content() or ""
    assert shown.startswith("not updating: the database cannot evaluate these rules: condition 1:")
    assert len(shown) < 100 and "rules.conditions" not in (note.get_attribute("title") or "")
    _ready(page, f"{server.url}/segments/{made.id}")
    assert "not updating: " in (page.text_content("#summary") or "")


def test_the_segment_page_links_only_new_destinations_unlinks_after_asking_and_explains_events(
    server: LiveServer, page: Any, db: Database
) -> None:
    made = _big_spenders(server, db, 60)
    for name in ("first", "second"):
        destinations.add_destination(db, name, "file", {"path": f"{name}.jsonl"}, NOW)
    links.link(db, "big", "first", NOW)
    _ready(page, f"{server.url}/segments/{made.id}")
    offered = page.locator("#link-destination option").all_text_contents()
    assert offered == ["second (file)"]  # "first" is linked already
    page.click("#link-form button[type=submit]")
    page.wait_for_selector("#links tbody tr:has-text('second')")
    assert page.is_hidden("#link-form")
    assert (page.text_content("#link-none") or "").startswith("Linked to every destination.")

    row = page.locator("#links tbody tr", has_text="second").first
    asks_in_row(row, "Unlink", "Stop syncing to second?")
    assert [lk.destination for lk in links.list_links(db)] == ["first", "second"]
    confirm_in_row(row, "Unlink")
    page.wait_for_selector("#links tbody tr:has-text('second')", state="detached")
    assert [lk.destination for lk in links.list_links(db)] == ["first"]
    assert page.locator("#link-destination option").all_text_contents() == ["second (file)"]

    # Events: no internal sequence column; a key explains that record.
    assert page.locator("#events thead th").all_text_contents() == ["When", "Record", "Change"]
    first_event = page.locator("#events tbody tr").first
    key = first_event.locator("a").text_content() or ""
    assert (first_event.locator("td").nth(2).text_content() or "") == "entered"
    first_event.locator("a").click()
    page.wait_for_selector("#explain p")
    assert (page.text_content("#explain p") or "").startswith(f"{key} is a member")


def test_a_double_click_imports_once_and_a_failed_import_hides_the_bar(
    db: Database, server: LiveServer, page: Any, tmp_path: Path
) -> None:
    good = tmp_path / "customers.csv"
    good.write_bytes(csv_bytes(list(demo.rows(3_000, seed=13))))
    _ready(page, f"{server.url}/datasets")
    page.set_input_files("#file", str(good))
    page.fill("#key", "id")
    page.dblclick("#upload-button")  # the second click meets a disabled button
    page.wait_for_selector("#import-summary .import-counts")
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(imports_table)).scalar() == 1
    assert page.is_enabled("#upload-button")

    bad = tmp_path / "logo.csv"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    page.set_input_files("#file", str(bad))
    page.click("#upload-button")
    page.wait_for_selector("#upload-status .error")
    assert "PNG" in (page.text_content("#upload-status") or "")
    # A failed import leaves no full blue bar behind.
    assert page.is_hidden("#upload-progress") and page.is_enabled("#upload-button")
