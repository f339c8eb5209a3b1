"""HTML pages: a server-rendered shell per page; ``static/app.js`` fills it from the API.

Every asset is served from ``/static``: no CDN, so the pages work offline.
Names from the database only ever reach the HTML through ``html.escape`` or
as JSON that the script reads with ``textContent``.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

router = APIRouter(include_in_schema=False)

_NAV = (
    ("/segments", "Segments"),
    ("/datasets", "Datasets"),
    ("/destinations", "Destinations"),
    ("/docs", "API"),
)


def page_data(data: dict[str, Any]) -> str:
    """``data`` as JSON to put inside a ``<script type="application/json">``.

    With no ``<``, ``>`` or ``&`` left (JSON's ``\\u003c`` escapes mean the
    same), no value can end the element (``</script>``) or put the HTML parser
    in its script-escape states (``<!--<script>``), which would swallow the
    app's own script element after it.
    """
    text = json.dumps(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _layout(title: str, page: str, body: str, data: dict[str, Any] | None = None) -> HTMLResponse:
    nav = "".join(f'<a href="{href}">{label}</a>' for href, label in _NAV)
    payload = page_data(data or {})
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · segflow</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body data-page="{page}">
<header><a class="brand" href="/">segflow</a><nav>{nav}</nav>
<span id="account" class="account"></span>
<span id="live" class="live" title="live updates">●</span></header>
<main>
<h1 id="title">{html.escape(title)}</h1>
{body}
</main>
<script id="page-data" type="application/json">{payload}</script>
<script src="/static/app.js"></script>
</body>
</html>"""
    return HTMLResponse(document)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/segments")


@router.get("/segments")
def segments_page() -> HTMLResponse:
    body = """
<p><a class="button" href="/segments/new">New segment</a></p>
<div class="scroll"><table id="segments"><thead><tr><th>Segment</th><th>Dataset</th><th class="num">Members</th>
<th>Last processed</th><th>Sync</th></tr></thead><tbody></tbody></table></div>
<p id="empty" hidden>No segments yet. Import a dataset, then build one.</p>"""
    return _layout("Segments", "segments", body)


_BUILDER = """
<section id="builder">
<div class="row"><label>Name <input id="seg-name" required maxlength="100"></label>
<label>Dataset <select id="seg-dataset"></select></label></div>
<div id="rules"></div>
<div id="preview" class="preview" aria-live="polite"></div>
<p><button id="save" type="button">Save segment</button> <span id="save-error" class="error"></span></p>
</section>"""


@router.get("/segments/new")
def new_segment_page(request: Request) -> HTMLResponse:
    dataset = request.query_params.get("dataset")
    return _layout("New segment", "builder", _BUILDER, {"dataset": dataset})


@router.get("/segments/{segment_id}")
def segment_page(segment_id: int) -> HTMLResponse:
    body = f"""
<p id="summary" class="summary"></p>
<section><h2>Membership over time</h2><div id="chart" class="chart"></div></section>
<section><h2>Members</h2>
<p><a class="button" id="export" href="/api/segments/{segment_id}/members.csv">Export CSV</a>
<small>Cells starting with = + - @ (after any spaces) are prefixed with ' so spreadsheets do not run them;
phone numbers keep every digit.</small></p>
<table id="members"><thead></thead><tbody></tbody></table>
<p><button id="more-members" type="button" hidden>More members</button></p></section>
<section><h2>Why is a record (not) a member?</h2>
<form id="explain-form"><input id="explain-key" placeholder="record key" required>
<button type="submit">Explain</button></form><div id="explain"></div></section>
<section><h2>Destinations</h2><table id="links"><thead><tr><th>Destination</th><th>Status</th>
<th class="num">Synced</th><th class="num">Pending adds</th><th class="num">Pending removes</th>
<th class="num">Failed</th><th>Platform says</th><th>Last success</th><th>Last error</th></tr></thead>
<tbody></tbody></table>
<form id="link-form"><select id="link-destination" aria-label="destination to link"></select>
<button type="submit">Link destination</button></form>
<p id="link-none" hidden></p><p id="link-error" class="error" aria-live="polite"></p>
</section>
<section><h2>Recent events</h2><table id="events"><thead><tr><th>When</th><th>Record</th>
<th>Change</th></tr></thead><tbody></tbody></table></section>
<section><h2>Edit rules</h2>{_BUILDER}</section>"""
    return _layout("Segment", "segment", body, {"segment_id": segment_id})


@router.get("/datasets")
def datasets_page() -> HTMLResponse:
    body = """
<section id="upload"><h2>Import a CSV</h2>
<form id="upload-form">
<div id="drop" class="drop">Drop a CSV file here, or <label class="link">choose one
<input id="file" type="file" accept=".csv,.tsv,.txt,text/csv" hidden></label>
<div id="file-name"></div></div>
<div class="row"><label>Dataset <input id="dataset-name" required placeholder="customers"></label>
<label>Key column <input id="key" placeholder="detected"></label>
<label>Mode <select id="mode"><option value="upsert">upsert</option>
<option value="replace">replace</option></select></label>
<label title="UTF-8 also reads files with a byte order mark, and UTF-16 ones that start with one; Excel on Windows writes Windows-1252">Encoding <select id="encoding"><option value="utf-8">UTF-8</option>
<option value="cp1252">Windows-1252</option>
<option value="latin-1">Latin-1</option>
<option value="utf-16">UTF-16</option></select></label>
<label>Delimiter <select id="delimiter"><option value="">detected</option>
<option value="comma">comma ,</option><option value="semicolon">semicolon ;</option>
<option value="tab">tab</option><option value="pipe">pipe |</option></select></label>
<button id="upload-button" type="submit">Import</button></div>
<progress id="upload-progress" max="100" value="0" hidden></progress>
<div id="upload-status" aria-live="polite"></div>
</form>
<div id="import-summary"></div></section>
<section><h2>Datasets</h2><table id="datasets"><thead><tr><th>Dataset</th>
<th class="num">Records</th><th class="num">Columns</th><th>Key</th><th>Updated</th></tr></thead>
<tbody></tbody></table></section>"""
    return _layout("Datasets", "datasets", body)


@router.get("/datasets/{name}")
def dataset_page(name: str) -> HTMLResponse:
    body = """
<p id="summary" class="summary"></p>
<p><a class="button" id="new-segment" href="/segments/new">New segment on this dataset</a></p>
<section><h2>Columns</h2><table id="columns"><thead><tr><th>Column</th><th>Type</th>
<th class="num">Non-empty</th><th>Identifier</th></tr></thead><tbody></tbody></table></section>
<section><h2>Identifier quality (last import)</h2><table id="quality"><thead><tr>
<th>Kind</th><th>Column</th><th class="num">Valid</th><th class="num">Invalid</th></tr></thead>
<tbody></tbody></table>
<table id="consent-quality"><thead><tr><th>Consent</th><th>Column</th><th class="num">Granted</th>
<th class="num">Denied</th><th class="num">Empty (destination's consent)</th>
<th class="num">Unrecognised (sent as denied)</th></tr></thead><tbody></tbody></table></section>
<section><h2>Records</h2><table id="records"><thead></thead><tbody></tbody></table>
<p><button id="more-records" type="button" hidden>More records</button></p></section>"""
    return _layout(f"Dataset {name}", "dataset", body, {"dataset": name})


@router.get("/destinations")
def destinations_page() -> HTMLResponse:
    body = """
<p id="destinations-empty" hidden>No destinations yet. Add one below: a Google Customer Match list,
a Meta Custom Audience, a TikTok audience, or a file that records what would be sent.</p>
<div class="scroll"><table id="destinations"><thead><tr><th>Destination</th><th>Kind</th><th>Settings</th>
<th>Credentials</th><th>Segments</th><th></th></tr></thead><tbody></tbody></table></div>
<section><h2>Add a destination</h2>
<form id="destination-form" autocomplete="off" novalidate>
<div class="row"><label>Name <input id="d-name" required maxlength="100"></label>
<label>Kind <select id="d-kind"><option value="file">file (JSON lines)</option>
<option value="google_ads">google_ads (Customer Match)</option>
<option value="meta">meta (Custom Audience)</option>
<option value="tiktok">tiktok (customer-file audience)</option></select></label></div>
<div class="row kind-file"><label>Path <input id="d-path" placeholder="/tmp/audience.jsonl"></label></div>
<div class="row kind-google_ads" hidden>
<label>Operating account id <input id="d-account" placeholder="123-456-7890"></label>
<label>Login account id <input id="d-login" placeholder="optional"></label></div>
<div class="row kind-google_ads" hidden>
<label>Service-account key (JSON, write-only)
<textarea id="d-key" rows="3" placeholder="paste the key file; it is never shown again"></textarea></label>
<label><input id="d-terms" type="checkbox"> Customer Match terms accepted</label>
<label><input id="d-validate" type="checkbox"> validate only</label></div>
<div class="row kind-google_ads" hidden>
<label>Customer Match list <select id="d-list-choice">
<option value="id">enter a list id…</option><option value="new">create a new list…</option>
</select></label>
<button id="d-load-lists" type="button">Show the account's lists</button>
<span id="d-lists-status" aria-live="polite"></span></div>
<div class="row kind-google_ads list-id" hidden>
<label>User list id <input id="d-list" inputmode="numeric"></label></div>
<div class="row kind-google_ads list-new" hidden>
<label>New list's display name <input id="d-new-name" maxlength="250"></label>
<label>Description <input id="d-new-description" maxlength="2000" placeholder="optional"></label>
<label>Membership duration (days, at most 540)
<input id="d-new-days" type="number" min="1" max="540" step="1" placeholder="540"></label></div>
<div class="row kind-meta" hidden>
<label>Ad account id <input id="d-meta-account" placeholder="act_1234567890"></label>
<label>Audience <select id="d-meta-choice"><option value="id">an existing audience id…</option>
<option value="new">create a new customer-list audience…</option></select></label></div>
<div class="row kind-meta meta-id" hidden>
<label>Custom Audience id <input id="d-meta-audience" inputmode="numeric"></label></div>
<div class="row kind-meta meta-new" hidden>
<label>New audience's name <input id="d-meta-name" maxlength="200"></label>
<label>Where the people came from <select id="d-meta-source">
<option value="" selected>choose…</option>
<option value="USER_PROVIDED_ONLY">collected from your customers directly</option>
<option value="PARTNER_PROVIDED_ONLY">provided by partners</option>
<option value="BOTH_USER_AND_PARTNER_PROVIDED">both</option></select></label></div>
<div class="row kind-meta" hidden>
<label>Access token (write-only)
<textarea id="d-meta-token" rows="2" placeholder="a system user's token with ads_management; it is never shown again"></textarea></label>
<label><input id="d-meta-ldu" type="checkbox"> Limited Data Use</label>
<label><input id="d-meta-extern" type="checkbox"> also send the dataset key as EXTERN_ID</label></div>
<p class="hint kind-meta" hidden>Meta requests carry no consent: members whose records deny
ad_user_data are not sent. The ad account must have accepted Meta's Custom Audience terms; segflow
checks them, and the audience, with Meta before the destination is added.</p>
<div class="row kind-tiktok" hidden>
<label>Advertiser id <input id="d-tt-advertiser" inputmode="numeric"></label>
<label>Audience <select id="d-tt-choice"><option value="id">an existing audience id…</option>
<option value="new">a new audience, made by the first upload…</option></select></label>
<label>Identifier <select id="d-tt-type"><option value="email" selected>emails</option>
<option value="phone">phone numbers</option></select></label></div>
<div class="row kind-tiktok tt-id" hidden>
<label>Audience id <input id="d-tt-audience" inputmode="numeric"></label></div>
<div class="row kind-tiktok tt-new" hidden>
<label>New audience's name <input id="d-tt-name" maxlength="128"></label></div>
<div class="row kind-tiktok" hidden>
<label>Access token (write-only)
<textarea id="d-tt-token" rows="2" placeholder="the advertiser's long-term token; it is never shown again"></textarea></label></div>
<p class="hint kind-tiktok" hidden>A TikTok audience holds one kind of identifier, and TikTok keeps
none under 1,000 people. Its requests carry no consent: members whose records deny ad_user_data
are not sent.</p>
<p class="hint kind-consent" id="d-consent-hint">Consent, as the people in the list agreed: <b>ad_user_data</b>,
whether Google may use their data for advertising; <b>ad_personalization</b>, whether it may be used
for personalised ads. Google requires it for users in the EEA. A google_ads destination needs both
chosen; members whose records carry their own consent keep theirs. A file destination records what
would be sent and takes granted unless chosen.</p>
<div class="row"><label class="kind-consent">ad_user_data <select id="d-aud"><option value="" selected>choose…</option>
<option value="granted">granted</option><option value="denied">denied</option></select></label>
<label class="kind-consent">ad_personalization <select id="d-ap"><option value="" selected>choose…</option>
<option value="granted">granted</option><option value="denied">denied</option></select></label>
<button type="submit">Add destination</button> <span id="d-error" class="error" aria-live="polite"></span></div>
</form></section>
<section><h2>Customer Match lists at Google</h2>
<p id="lists-none" hidden>No google_ads destination yet: add one above to see its account's lists.</p>
<form id="lists-form" class="row"><label>Destination <select id="lists-destination"></select></label>
<button type="submit">Show the account's lists</button>
<span id="lists-error" class="error" aria-live="polite"></span></form>
<p id="lists-empty" hidden></p>
<table id="google-lists" hidden><thead><tr><th>List id</th><th>Name</th><th class="num">Members</th>
<th class="num">Match rate</th><th>Membership</th><th>Status</th></tr></thead><tbody></tbody></table>
</section>"""
    return _layout("Destinations", "destinations", body)


@router.get("/login")
def login_page() -> HTMLResponse:
    body = """
<form id="login-form" class="login">
<label>Name <input id="login-name" autocomplete="username" required maxlength="64"></label>
<label>Password <input id="login-password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
<p id="login-error" class="error" aria-live="polite"></p>
</form>"""
    return _layout("Sign in", "login", body)


@router.get("/docs")
def docs_page() -> HTMLResponse:
    body = """<p>The machine-readable description is at <a href="/openapi.json">/openapi.json</a>.
Errors are JSON: <code>{"error": {"code", "message", "details"}}</code>.</p>
<div id="operations"></div>"""
    return _layout("API reference", "docs", body)
