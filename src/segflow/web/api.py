"""The JSON API: thin routes over the library.

Errors leave as ``{"error": {"code", "message", "details"}}`` (see
``errors.py``). Routes are plain functions, so FastAPI runs them on its thread
pool: the library's database work never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from segflow import datasets, forget, ingest, retype, rules, segments, worker
from segflow.activation import destinations, links, mapping, platforms
from segflow.activation.google import userlists
from segflow.activation.platform import Prepare
from segflow.config import Settings
from segflow.db.engine import utcnow
from segflow.errors import InvalidInput, NotFound, Throttled
from segflow.ingest import preview as import_preview
from segflow.progress import Progress
from segflow.web.auth import principal_of, still_signed_in, workspace_db
from segflow.web.broadcaster import Event
from segflow.web.errors import ERRORS
from segflow.web.state import AppState

router = APIRouter(responses=ERRORS)

#: Segment and destination ids are 32-bit, record and event cursors 64-bit, on
#: both engines; larger numbers are refused as input rather than failing in SQL.
MAX_ID = 2**31 - 1
MAX_CURSOR = 2**63 - 1
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[
    int | None, Query(ge=0, le=MAX_CURSOR, description="from the previous page's next_cursor")
]
SegmentId = Annotated[int, Path(ge=1, le=MAX_ID)]
DestinationId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.segflow
    return state


def _page(items: list[dict[str, Any]], cursor: int | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": cursor}


# ---------------------------------------------------------------- health


@router.get("/healthz", tags=["health"])
def healthz(request: Request) -> dict[str, Any]:
    state = _state(request)
    state.db.ping()
    return {"status": "ok", "database": state.db.dialect}


# ---------------------------------------------------------------- datasets


#: The routes that take a file upload (``SEGFLOW_MAX_UPLOAD_BYTES``); every
#: other request body is JSON, limited to ``SEGFLOW_MAX_JSON_BYTES``.
UPLOAD_PATHS = re.compile(r"/api/datasets/[^/]+/imports(?:/preview)?")


class ImportForm(BaseModel):
    """How to read an uploaded file, as the CLI's ``segflow import`` options."""

    key: str | None = Field(default=None, description="key column (first import only)")
    mode: Literal["upsert", "replace"] = "upsert"
    encoding: str = Field(
        default="utf-8", max_length=40, description="text encoding: utf-8 (default), cp1252, ..."
    )
    delimiter: str | None = Field(
        default=None,
        max_length=9,
        description="field delimiter: the character, or tab, comma, semicolon, pipe "
        "(default: detected)",
    )
    confirm_delete: bool = Field(
        default=False,
        description="replace mode: go ahead although the deletes exceed the delete limit "
        "(the answer without it is a 400 with code confirmation_needed and the numbers)",
    )
    delete_limit: int | None = Field(
        default=None, ge=0, le=100, description="percent; default SEGFLOW_REPLACE_DELETE_LIMIT"
    )
    sample_mb: float | None = Field(
        default=None,
        gt=0,
        le=256,
        allow_inf_nan=False,
        description="preview only: read just the file's first this many MB (cut after the "
        "last whole row in them); default: the whole file",
    )


@router.post("/api/datasets/{name}/imports", status_code=201, tags=["datasets"])
def import_file(
    request: Request,
    name: str,
    file: Annotated[UploadFile, File(description="the CSV file")],
    form: Annotated[ImportForm, Form()],
) -> dict[str, Any]:
    """Import a CSV into a dataset (created on first import); same summary as the CLI's."""
    return _import(request, name, file, form, dry_run=False)


@router.post("/api/datasets/{name}/imports/preview", tags=["datasets"])
def preview_import(
    request: Request,
    name: str,
    file: Annotated[UploadFile, File(description="the CSV file")],
    form: Annotated[ImportForm, Form()],
) -> dict[str, Any]:
    """What importing this file would do, storing nothing: the same summary as an import
    (``dry_run`` true), with the counts it would insert, update and delete and each
    segment's enters and exits. A replace over the delete limit is shown, not refused.

    Also how the file was read (``encoding``, ``bom``, ``delimiter``, ``header_line``,
    ``sample``: bytes and rows read, whether the whole file), ``key_candidates``
    (each with ``unique``, ``empty``, ``duplicates``), and per column its ``examples``,
    ``empty`` cells and ``empty_like`` tokens found with their counts."""
    return _import(request, name, file, form, dry_run=True)


def _import(
    request: Request, name: str, file: UploadFile, form: ImportForm, *, dry_run: bool
) -> dict[str, Any]:
    state = _state(request)
    db = workspace_db(request)
    source = file.filename or "upload.csv"
    if form.sample_mb is not None and not dry_run:
        raise InvalidInput("sample_mb reads part of the file, which only a preview does")
    file.file.seek(0, io.SEEK_END)
    total = file.file.tell()
    file.file.seek(0)
    last = [0.0]

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if p.phase == "reading" and now - last[0] < 0.25:
            return
        last[0] = now
        state.broadcaster.publish(
            Event(
                "import",
                {
                    "dataset": name,
                    "source": source,
                    "phase": p.phase,
                    "bytes_read": p.bytes_read,
                    "total_bytes": p.total_bytes,
                    "rows": p.rows,
                },
                db.workspace_id,
            )
        )

    summary = worker.import_and_tick(
        db,
        file.file,
        ingest.ImportOptions(
            dataset=name,
            key=form.key or None,
            mode=form.mode,
            delimiter=ingest.delimiter_named(form.delimiter) if form.delimiter else None,
            encoding=form.encoding or "utf-8",
            confirm_delete=form.confirm_delete,
            delete_limit=form.delete_limit,
            dry_run=dry_run,
            sample_bytes=(
                None if form.sample_mb is None else import_preview.sample_bytes_of(form.sample_mb)
            ),
        ),
        source=source,
        clock=utcnow,
        total_bytes=total,
        progress=progress,
        settings=state.settings,
    )
    if not dry_run:
        state.broadcaster.changed()
        state.wake()
    return summary


@router.get("/api/datasets", tags=["datasets"])
def list_datasets(request: Request) -> list[dict[str, Any]]:
    return [datasets.dataset_summary(d) for d in datasets.list_datasets(workspace_db(request))]


@router.get("/api/datasets/{name}", tags=["datasets"])
def get_dataset(request: Request, name: str) -> dict[str, Any]:
    """Schema with counts and the operators each column takes, identifier mapping and quality."""
    db = workspace_db(request)
    info = datasets.describe_dataset(db, name)
    for column in info["columns"]:
        column["operators"] = list(rules.OPERATORS[_rule_type(column["type"])])
    current, chosen = mapping.show_mapping(db, name)
    info["identifier_mapping"] = {"set_by_user": chosen, **current.as_dict()}
    last = info.get("last_import") or {}
    info["identifier_quality"] = last.get("identifiers", [])
    info["consent_quality"] = last.get("consent", [])
    return info


class IdentifierMappingPatch(BaseModel):
    """Entries of a dataset's identifier mapping to change; an empty value clears one."""

    model_config = ConfigDict(extra="forbid")

    email: list[str] | str | None = Field(
        default=None, description="columns, as a list or comma-separated, in the order sent"
    )
    phone: list[str] | str | None = Field(
        default=None, description="columns, as a list or comma-separated, in the order sent"
    )
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None
    postal_code: str | None = None
    consent_ad_user_data: str | None = None
    consent_ad_personalization: str | None = None
    default_region: str | None = Field(
        default=None, description="region for phone numbers without a country code"
    )


@router.patch("/api/datasets/{name}/identifiers", tags=["datasets"])
def set_identifier_mapping(
    request: Request, name: str, body: IdentifierMappingPatch
) -> dict[str, Any]:
    """Change which columns hold which identifier; entries not given keep their value."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInput("nothing to change: give at least one mapping entry")
    state = _state(request)
    changed = mapping.set_mapping(workspace_db(request), name, changes, utcnow())
    state.wake()
    return {"set_by_user": True, **changed.as_dict()}


class ColumnTypeIn(BaseModel):
    """The type a column is to have."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="text, integer, number, boolean, date or datetime")
    format: str | None = Field(
        default=None,
        max_length=20,
        description="how the values are written: 1,234.56 or 1.234,56 (integer, number); "
        "DD.MM.YYYY, DD/MM/YYYY, MM/DD/YYYY or YYYY/MM/DD (date); default: the column's "
        "format where the new type reads it, else plain",
    )


@router.put("/api/datasets/{name}/columns/{column}/type", tags=["datasets"])
def retype_column(request: Request, name: str, column: str, body: ColumnTypeIn) -> dict[str, Any]:
    """Change a column's type when every stored value fits it and its segments allow it.

    Refused (400, nothing changed) with the values that do not fit, or the
    segments whose rules the new type does not allow. Segments reading the
    column are evaluated again in full.
    """
    state = _state(request)
    changed = retype.retype(
        workspace_db(request), name, column, body.type, now=utcnow(), fmt=body.format
    )
    state.broadcaster.changed()
    state.wake()
    return changed.as_dict()


def _rule_type(column_type: str) -> str:
    # A column that never had a value compares as text.
    return column_type if column_type in rules.OPERATORS else "text"


@router.get("/api/datasets/{name}/records", tags=["datasets"])
def dataset_records(
    request: Request, name: str, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    items, next_cursor = datasets.page_records(
        workspace_db(request), name, limit=limit, after=cursor
    )
    return _page(items, next_cursor)


@router.delete("/api/datasets/{name}/records/{key}", tags=["datasets"])
def forget_record(request: Request, name: str, key: str) -> dict[str, Any]:
    """Forget a person: erase the record everywhere and queue removes for destinations."""
    state = _state(request)
    db = workspace_db(request)
    report = forget.forget(db, name, key, utcnow())
    state.broadcaster.changed()
    state.wake()
    return report.as_dict()


@router.delete("/api/datasets/{name}", status_code=204, tags=["datasets"])
def delete_dataset(request: Request, name: str) -> Response:
    state = _state(request)
    db = workspace_db(request)
    datasets.delete_dataset(db, name)
    state.broadcaster.changed()
    return Response(status_code=204)


# ---------------------------------------------------------------- segments


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    dataset: str = Field(min_length=1)
    rules: dict[str, Any]


class SegmentPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    rules: dict[str, Any] | None = None


class PreviewIn(BaseModel):
    dataset: str = Field(min_length=1)
    rules: dict[str, Any]
    segment_id: int | None = Field(default=None, ge=1, le=MAX_ID)


def _segment(request: Request, segment_id: int) -> segments.Segment:
    return segments.get_segment(workspace_db(request), segment_id)


def _segment_json(request: Request, segment: segments.Segment) -> dict[str, Any]:
    linked = links.destinations_of(workspace_db(request), [segment.id])
    return {**segment.as_dict(), "destinations": linked.get(segment.id, [])}


@router.post("/api/segments", status_code=201, tags=["segments"])
def create_segment(request: Request, body: SegmentIn) -> dict[str, Any]:
    state = _state(request)
    db = workspace_db(request)
    created = segments.create_segment(
        db, name=body.name, dataset=body.dataset, rules_json=body.rules, now=utcnow()
    )
    state.broadcaster.changed()
    return _segment_json(request, created)


@router.get("/api/segments", tags=["segments"])
def list_segments(request: Request, dataset: str | None = None) -> list[dict[str, Any]]:
    db = workspace_db(request)
    found = segments.list_segments(db, dataset=dataset)
    linked = links.destinations_of(db, [s.id for s in found])
    return [{**s.as_dict(), "destinations": linked.get(s.id, [])} for s in found]


@router.post("/api/segments/preview", tags=["segments"])
def preview(request: Request, body: PreviewIn) -> dict[str, Any]:
    """Count, sample and (against a saved segment) would-enter / would-exit for rules."""
    return segments.preview(
        workspace_db(request), body.dataset, body.rules, utcnow(), segment_id=body.segment_id
    )


@router.get("/api/segments/{segment_id}", tags=["segments"])
def get_segment(request: Request, segment_id: SegmentId) -> dict[str, Any]:
    return _segment_json(request, _segment(request, segment_id))


@router.patch("/api/segments/{segment_id}", tags=["segments"])
def edit_segment(request: Request, segment_id: SegmentId, body: SegmentPatch) -> dict[str, Any]:
    state = _state(request)
    db = workspace_db(request)
    if body.name is None and body.rules is None:
        _segment(request, segment_id)  # a missing segment is a 404 before an empty patch
        raise InvalidInput("nothing to change: give name and/or rules")
    edited = segments.edit_segment(
        db, segment_id, now=utcnow(), rules_json=body.rules, new_name=body.name
    )
    state.broadcaster.changed()
    state.wake()
    return _segment_json(request, edited)


@router.delete("/api/segments/{segment_id}", status_code=204, tags=["segments"])
def delete_segment(request: Request, segment_id: SegmentId) -> Response:
    state = _state(request)
    segments.delete_segment(workspace_db(request), segment_id)
    state.broadcaster.changed()
    return Response(status_code=204)


@router.get("/api/segments/{segment_id}/members", tags=["segments"])
def segment_members(
    request: Request, segment_id: SegmentId, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    items, next_cursor = segments.list_members(
        workspace_db(request), segment_id, limit=limit, after=cursor
    )
    return _page(items, next_cursor)


#: Cells a spreadsheet would read as a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EXPORT_NOTE = (
    "cells starting with = + - @ tab or carriage return, after any spaces, are prefixed with "
    "a single quote so spreadsheets do not run them as formulas; phone numbers such as "
    "+14155550100 keep every digit behind that quote"
)


def _safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets skip leading spaces before reading a formula: " =1" runs too.
    risky = text.startswith(_FORMULA_START) or text.lstrip().startswith(_FORMULA_START)
    return "'" + text if risky else text


def attachment(name: str, extension: str) -> str:
    """A ``Content-Disposition`` for any file name (RFC 6266): UTF-8 in
    ``filename*`` (RFC 5987), which browsers prefer, and an ASCII approximation
    in ``filename`` (header values are Latin-1; ``München`` would not encode)."""
    plain = "".join(c if c.isascii() and c.isalnum() else "-" for c in name).strip("-")
    encoded = quote(name + extension, safe="")
    return f"attachment; filename=\"{plain or 'segment'}{extension}\"; filename*=UTF-8''{encoded}"


@router.get(
    "/api/segments/{segment_id}/members.csv",
    tags=["segments"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "the members as CSV"}},
)
def export_members(request: Request, segment_id: SegmentId) -> StreamingResponse:
    """Every member as CSV, raw values as imported, formula-like cells neutralised."""
    export = segments.member_pages(workspace_db(request), segment_id, size=1000)
    segment, names = export.segment, export.columns

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([_safe_cell(n) for n in names])
        for page in export.pages:
            for item in page:
                writer.writerow([_safe_cell(item["record"].get(n)) for n in names])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": attachment(segment.name, ".csv"),
            "X-Segflow-Export-Note": EXPORT_NOTE,
        },
    )


@router.get("/api/segments/{segment_id}/events", tags=["segments"])
def segment_events(
    request: Request, segment_id: SegmentId, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    items, next_cursor = segments.list_events(
        workspace_db(request), segment_id, limit=limit, before=cursor
    )
    return _page(items, next_cursor)


@router.get("/api/segments/{segment_id}/history", tags=["segments"])
def segment_history(request: Request, segment_id: SegmentId) -> list[dict[str, Any]]:
    """Member count over time, rebuilt from the enter/exit events."""
    return segments.history(workspace_db(request), segment_id)


@router.get("/api/segments/{segment_id}/explain/{key}", tags=["segments"])
def explain(request: Request, segment_id: SegmentId, key: str) -> dict[str, Any]:
    return segments.explain(workspace_db(request), segment_id, key, utcnow())


# ---------------------------------------------------------------- destinations


class DestinationIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["google_ads", "meta", "tiktok", "file"]
    config: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] | None = Field(
        default=None,
        description="write-only: google_ads, a service-account key as {type: service_account, "
        "info: {...}} or {type: oauth, client_id, client_secret, refresh_token}; meta and "
        "tiktok, {access_token: ...}",
    )
    create_list: NewListIn | None = Field(
        default=None,
        description="google_ads: create a new Customer Match list at Google for this "
        "destination (instead of config.product_destination_id)",
    )


class NewListIn(BaseModel):
    display_name: str = Field(min_length=1, max_length=250)
    description: str = Field(default="", max_length=2000)
    membership_days: int | None = Field(
        default=None, ge=1, le=userlists.MAX_MEMBERSHIP_DAYS, description="default 540"
    )


class LinkIn(BaseModel):
    destination_id: int = Field(ge=1, le=MAX_ID)


@router.post("/api/destinations", status_code=201, tags=["destinations"])
def add_destination(request: Request, body: DestinationIn) -> dict[str, Any]:
    state = _state(request)
    db = workspace_db(request)
    if body.kind == "file" and state.settings.auth:
        raise InvalidInput(
            "file destinations write to the server's disk, so in team mode only an operator "
            "adds them (segflow destinations add on the server)"
        )
    creator = None
    if body.create_list is not None:
        new = body.create_list
        creator = userlists.creator(
            state.settings, new.display_name, new.description, new.membership_days
        )
    added = destinations.add_destination(
        db,
        body.name,
        body.kind,
        body.config,
        utcnow(),
        body.credentials,
        state.settings.cipher,
        check_credentials=state.settings.check_credentials,
        token_uri=state.settings.token_uri,
        create_list=creator,
        prepare=_preparer(body.kind, state.settings),
    )
    return added.public()


def _preparer(kind: str, settings: Settings) -> Prepare | None:
    if kind not in destinations.TOKEN_KINDS:
        return None
    make = platforms.platform_for(kind).preparer
    return make(settings) if make is not None else None


class AccountListsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operating_account_id: str = Field(min_length=1, max_length=30)
    login_account_id: str | None = Field(default=None, max_length=30)
    credentials: dict[str, Any] | None = Field(
        default=None,
        description="write-only, used for this call only and never stored: as for "
        "POST /api/destinations (none: the server's application default credentials)",
    )


@router.post("/api/google-ads/lists", tags=["destinations"])
def account_lists(request: Request, body: AccountListsIn) -> dict[str, Any]:
    """The Customer Match lists of an account, read from Google, to choose a new
    destination's list from (POST: the body may carry credentials)."""
    items = userlists.account_lists(
        _state(request).settings,
        body.operating_account_id,
        body.login_account_id,
        body.credentials,
    )
    return {
        "account": destinations.account_id("operating_account_id", body.operating_account_id),
        "lists": [i.as_dict() for i in items],
    }


@router.get("/api/destinations/{destination_id}/lists", tags=["destinations"])
def destination_lists(request: Request, destination_id: DestinationId) -> dict[str, Any]:
    """The Customer Match lists of a google_ads destination's account, read from Google."""
    found, items = userlists.destination_lists(
        workspace_db(request), _state(request).settings, destination_id
    )
    return {
        "destination": found.name,
        "account": found.config["operating_account_id"],
        "current_list_id": found.config.get("product_destination_id"),
        "lists": [i.as_dict() for i in items],
    }


class CredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credentials: dict[str, Any] = Field(
        description="write-only: a service-account key as {type: service_account, info: {...}}"
        " or {type: oauth, client_id, client_secret, refresh_token};"
        " meta, tiktok: {access_token: ...}"
    )


@router.put("/api/destinations/{destination_id}/credentials", tags=["destinations"])
def replace_credentials(
    request: Request, destination_id: DestinationId, body: CredentialsIn
) -> dict[str, Any]:
    """Replace a destination's credentials, checked as adding does (Google's by refreshing
    them); refused ones leave the old in place. The answer describes them, never shows them."""
    state = _state(request)
    db = workspace_db(request)
    updated = destinations.replace_credentials(
        db,
        destination_id,
        body.credentials,
        utcnow(),
        state.settings.cipher,
        check_credentials=state.settings.check_credentials,
        token_uri=state.settings.token_uri,
    )
    paused = [
        s.link.segment
        for s in links.status(db, now=utcnow(), recent=0)
        if s.link.destination_id == updated.id and s.paused_reason
    ]
    state.wake()
    return {**updated.public(), "paused_links": paused}


@router.get("/api/destinations", tags=["destinations"])
def list_destinations(request: Request) -> list[dict[str, Any]]:
    return [d.public() for d in destinations.list_destinations(workspace_db(request))]


@router.delete("/api/destinations/{destination_id}", status_code=204, tags=["destinations"])
def delete_destination(request: Request, destination_id: DestinationId) -> Response:
    destinations.delete_destination(workspace_db(request), destination_id)
    return Response(status_code=204)


def _link_statuses(request: Request, segment_id: int) -> list[dict[str, Any]]:
    return [s.as_dict() for s in links.status(workspace_db(request), segment_id, now=utcnow())]


@router.post("/api/segments/{segment_id}/links", status_code=201, tags=["destinations"])
def add_link(request: Request, segment_id: SegmentId, body: LinkIn) -> dict[str, Any]:
    state = _state(request)
    made = links.link(workspace_db(request), segment_id, body.destination_id, utcnow())
    state.broadcaster.changed()
    state.wake()
    return _link_status_of(request, segment_id, made.id)


@router.get("/api/segments/{segment_id}/links", tags=["destinations"])
def segment_links(request: Request, segment_id: SegmentId) -> list[dict[str, Any]]:
    return _link_statuses(request, segment_id)


@router.get("/api/segments/{segment_id}/links/{destination_id}/uploads", tags=["destinations"])
def link_uploads(
    request: Request,
    segment_id: SegmentId,
    destination_id: DestinationId,
    limit: Annotated[int, Query(ge=1, le=200, description="uploads, newest first")] = 20,
) -> dict[str, Any]:
    """One link's state with its last ``limit`` uploads, what Google reported about each,
    and the list's size (what ``segflow links show`` prints)."""
    status = links.link_status(
        workspace_db(request), segment_id, destination_id, now=utcnow(), recent=limit
    )
    return status.as_dict()


@router.get("/api/links", tags=["destinations"])
def all_links(request: Request) -> list[dict[str, Any]]:
    """Every link's sync state in the workspace (what ``segflow links`` prints)."""
    return [s.as_dict() for s in links.status(workspace_db(request), now=utcnow())]


@router.get("/api/segments/{segment_id}/links/{destination_id}/failed", tags=["destinations"])
def link_failed(
    request: Request,
    segment_id: SegmentId,
    destination_id: DestinationId,
    limit: Annotated[int, Query(ge=1, le=1000, description="members, by key")] = 100,
) -> list[dict[str, str]]:
    """Members the destination refused, each with its key and the destination's reason."""
    db = workspace_db(request)
    # The link's status finds it, or says in words which of the two is unknown or unlinked.
    link = links.link_status(db, segment_id, destination_id, recent=1).link
    rows = links.failed_members(db, link.id, limit=limit)
    return [{"key": key, "reason": reason} for key, reason in rows]


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retry_failed: bool = Field(
        default=False, description="also send the members the destination refused again"
    )


@router.post("/api/segments/{segment_id}/links/{destination_id}/resume", tags=["destinations"])
def resume_link(
    request: Request, segment_id: SegmentId, destination_id: DestinationId, body: ResumeIn
) -> dict[str, Any]:
    """Unpause a link (after its cause was fixed) and make it due now; the link's state."""
    state = _state(request)
    resumed = links.resume(
        workspace_db(request), segment_id, destination_id, retry_failed=body.retry_failed
    )
    state.broadcaster.changed()
    state.wake()
    return _link_status_of(request, segment_id, resumed.id)


def _link_status_of(request: Request, segment_id: int, link_id: int) -> dict[str, Any]:
    """One link's status; NotFound if it went meanwhile (unlinked by someone else)."""
    for found in _link_statuses(request, segment_id):
        if found["id"] == link_id:
            return found
    raise NotFound(f"segment {segment_id}'s link {link_id} was removed meanwhile")


@router.delete(
    "/api/segments/{segment_id}/links/{destination_id}", status_code=204, tags=["destinations"]
)
def remove_link(request: Request, segment_id: SegmentId, destination_id: DestinationId) -> Response:
    state = _state(request)
    links.unlink(workspace_db(request), segment_id, destination_id)
    state.broadcaster.changed()
    return Response(status_code=204)


# ---------------------------------------------------------------- live stream

HEARTBEAT_SECONDS = 15.0
#: How often an open stream checks that its session or token still admits it.
RECHECK_SECONDS = 15.0


@router.get(
    "/api/stream",
    tags=["live"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}},
)
async def stream(request: Request) -> StreamingResponse:
    """Server-Sent Events: ``segment``, ``import`` and ``sync``; current state first.

    In team mode the stream ends within ``RECHECK_SECONDS`` of its token being
    revoked, its session ending or its user leaving the workspace.
    """
    state = _state(request)
    broadcaster, slots = state.broadcaster, state.streams
    principal = principal_of(request)
    holder = principal.user_id
    if not slots.take(holder):
        raise Throttled(
            f"{slots.open(holder)} event streams are already open for "
            f"{principal.user or 'the local user'}, the most one user may hold "
            f"(SEGFLOW_MAX_STREAMS={slots.limit}); close one first",
            # A client gone without a word is noticed at the next heartbeat.
            retry_after=int(HEARTBEAT_SECONDS),
        )
    try:
        sub, snapshot = broadcaster.subscribe(principal.workspace_id)
    except BaseException:
        slots.give_back(holder)
        raise

    def closed() -> None:
        broadcaster.unsubscribe(sub)
        slots.give_back(holder)

    def frame(event: Event) -> str:
        return f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n"

    async def events() -> Any:
        yield "retry: 2000\n\n"
        for current in snapshot:
            yield frame(current)
        wake = min(HEARTBEAT_SECONDS, RECHECK_SECONDS)
        checked = written = time.monotonic()
        while True:
            try:
                event: Event | None = await asyncio.wait_for(sub.queue.get(), wake)
            except TimeoutError:
                event = None
            else:
                if event is None:  # the broadcaster is shutting down
                    return
            now = time.monotonic()
            # Checked by time, not per event: a stream costs one read per
            # interval however many changes there are.
            if now - checked >= RECHECK_SECONDS:
                if not await still_signed_in(request):
                    return
                checked = now
            if event is not None:
                yield frame(event)
                written = now
            elif now - written >= HEARTBEAT_SECONDS:
                yield ": heartbeat\n\n"
                written = now

    # The subscription and the slot are given back by _Stream, however it ends.
    return _Stream(
        events(),
        closed,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _Stream(StreamingResponse):
    """A streaming answer that runs ``closed`` once it ends, however it ends.

    The generator's own ``finally`` does not run when the client leaves before
    the first chunk is asked for; this wrapper runs whenever the answer was sent.
    """

    def __init__(self, content: Any, closed: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._closed()
