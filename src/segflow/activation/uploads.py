"""Upload diagnostics: ask Google what became of accepted requests, and keep its answers.

Google accepts an ingest or a remove at once and processes it later. Every
accepted request's ``request_id`` is in ``sf_sync_log``; a poll pass
(:func:`poll`, run by the worker after each sync) asks
``RetrieveRequestStatus`` about the ones that are due and stores the status
(PROCESSING, SUCCESS, PARTIAL_SUCCESS, FAILED, UNKNOWN), error and warning
counts by reason, match-rate range and record count beside the log row.

When to ask: Google advises waiting about half an hour and keeps a status
for 24 hours. The first ask is :data:`FIRST_CHECK` after the request was
sent; while Google answers PROCESSING the wait doubles; once a request is
:data:`GIVE_UP` old it is UNKNOWN and never asked about again. A pass takes
at most :data:`CHECKS_PER_PASS` requests, one at a time. Taking one is a
lease: its next check moves a lease ahead (under ``FOR UPDATE SKIP LOCKED``
on PostgreSQL) before the call, so two workers do not ask about the same
request, and a worker that dies mid-call leaves it to the next.

The same pass reads each Google Ads list's size and match rate
(``GetUserList``) at most every :data:`LIST_REFRESH`, for the link status.

Time comes from the ``clock`` passed in.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.activation import credentials, pacing
from segflow.activation.destinations import GOOGLE_ADS, destination_from_row, open_secret
from segflow.activation.google import status as google_status
from segflow.activation.google import userlists
from segflow.activation.google.client import Connections, GoogleConnection
from segflow.activation.transport import (
    INGEST,
    LinkBroken,
    MembersRejected,
    RequestRejected,
    TransientError,
)
from segflow.config import Settings
from segflow.db.engine import Database
from segflow.db.schema import destinations, links, sync_log
from segflow.errors import SegflowError

Clock = Callable[[], dt.datetime]

#: The first ask about a request, after it was sent (Google: "about 30 minutes").
FIRST_CHECK = dt.timedelta(minutes=30)
#: Google keeps a request's status this long; after it the answer is UNKNOWN.
GIVE_UP = dt.timedelta(hours=24)
#: The last ask comes this long before Google forgets, so it still finds the request.
LAST_CHECK_MARGIN = dt.timedelta(minutes=10)
#: Requests asked about per pass, so a pass stays short whatever the backlog.
CHECKS_PER_PASS = 20
#: How often a list's size and match rate are read again.
LIST_REFRESH = dt.timedelta(hours=1)
#: Lists read per pass.
LISTS_PER_PASS = 5
#: Uploads a link's status shows.
RECENT_UPLOADS = 5

_WAITING = (None, google_status.PROCESSING)


def next_check(sent_at: dt.datetime, checks: int, now: dt.datetime) -> dt.datetime | None:
    """When to ask again after ``checks`` asks answered PROCESSING; None: give up.

    The wait doubles from :data:`FIRST_CHECK` (30 min, 1 h, 2 h, ...), and
    the last ask falls just inside Google's 24 hours.
    """
    wait: dt.timedelta = FIRST_CHECK * (2 ** max(checks - 1, 0))
    last: dt.datetime = sent_at + GIVE_UP - LAST_CHECK_MARGIN
    if now >= last:
        return None
    return min(now + wait, last)


def effective_status(stored: str | None, sent_at: dt.datetime, now: dt.datetime) -> str | None:
    """The status to show: a request Google was never (or not finally) asked about
    in its 24 hours is UNKNOWN; None means "not asked yet"."""
    if stored in _WAITING and now - sent_at >= GIVE_UP:
        return google_status.UNKNOWN
    return stored


@dataclass(frozen=True)
class Upload:
    """One accepted request and what Google said about it."""

    id: int
    at: dt.datetime
    operation: str
    members: int
    request_id: str
    status: str | None
    errors: dict[str, int]
    warnings: dict[str, int]
    match_rate: str | None
    records: int | None
    checked_at: dt.datetime | None
    next_check_at: dt.datetime | None
    error: str | None
    #: The field warnings Google's answer to the request carried, as logged.
    field_warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def warning(self) -> str | None:
        """A sentence for people when Google could not process some or all of it."""
        if self.status not in (google_status.FAILED, google_status.PARTIAL_SUCCESS):
            return None
        total = self.records or self.members
        failed = self.failed if self.errors else total
        when = self.at.strftime("%Y-%m-%d %H:%M UTC")
        what = "upload" if self.operation == INGEST else "remove"
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.errors.items()))
        text = f"Google could not process {failed:,} of {total:,} members of the {what} at {when}"
        if self.status == google_status.FAILED and not self.errors:
            text = f"Google could not process the {what} of {total:,} members at {when}"
        return f"{text}: {reasons}" if reasons else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "operation": self.operation,
            "members": self.members,
            "request_id": self.request_id,
            "google_status": self.status,
            "errors": dict(self.errors),
            "warnings": dict(self.warnings),
            "match_rate": self.match_rate,
            "records": self.records,
            "checked_at": _iso(self.checked_at),
            "next_check_at": _iso(self.next_check_at),
            "check_error": self.error,
            "warning": self.warning,
            "field_warnings": list(self.field_warnings),
        }


def recent_uploads(
    conn: Connection, link_id: int, now: dt.datetime, limit: int = RECENT_UPLOADS
) -> list[Upload]:
    """The link's last accepted requests, newest first, with Google's answers."""
    log = sync_log
    rows = conn.execute(
        sa.select(log)
        .where(log.c.link_id == link_id, log.c.outcome == "ok", log.c.request_id.is_not(None))
        .order_by(log.c.id.desc())
        .limit(limit)
    ).all()
    return [_upload(r, now) for r in rows]


def awaiting(conn: Connection, link_id: int, now: dt.datetime) -> int:
    """Members in the link's ingests Google has not yet reported processed."""
    log = sync_log
    value = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(log.c.member_count), 0)).where(
            log.c.link_id == link_id,
            log.c.outcome == "ok",
            log.c.operation == INGEST,
            log.c.request_id.is_not(None),
            sa.or_(log.c.google_status.is_(None), log.c.google_status == google_status.PROCESSING),
            log.c.at > now - GIVE_UP,
        )
    ).scalar_one()
    return int(value)


def _upload(row: sa.Row[Any], now: dt.datetime) -> Upload:
    return Upload(
        id=int(row.id),
        at=row.at,
        operation=row.operation,
        members=int(row.member_count),
        request_id=str(row.request_id),
        status=effective_status(row.google_status, row.at, now),
        errors=dict(row.google_errors or {}),
        warnings=dict(row.google_warnings or {}),
        match_rate=row.google_match_rate,
        records=None if row.google_records is None else int(row.google_records),
        checked_at=row.google_checked_at,
        next_check_at=row.google_next_check_at,
        error=row.google_error,
        field_warnings=tuple(json.loads(row.warnings)) if row.warnings else (),
    )


# ---------------------------------------------------------------- the poll pass


@dataclass
class PollReport:
    #: (request id, status) of each request asked about.
    checked: list[tuple[str, str | None]] = field(default_factory=list)
    lists_read: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Due:
    log_id: int
    request_id: str
    sent_at: dt.datetime
    checks: int
    link_id: int
    destination_id: int
    validate_only: bool


def poll(
    db: Database,
    settings: Settings,
    *,
    clock: Clock,
    connections: Connections | None = None,
    limit: int = CHECKS_PER_PASS,
    stop: Callable[[], bool] = lambda: False,
) -> PollReport:
    """Ask Google about the requests that are due, and refresh stale list sizes.

    ``connections`` is the process's pool (the worker's), whose connections
    stay open; without one, the pass opens its own and closes them after.
    Requests are taken one at a time, so each lease covers one call, and
    ``stop`` is asked before each. A destination whose ask failed (Google
    unreachable, credentials refused) is not asked about again in the pass.
    """
    report = PollReport()
    opened = connections if connections is not None else Connections()
    failing: set[int] = set()
    try:
        for _ in range(limit):
            if stop():
                return report
            due = _claim_request(db, clock(), settings.lease_seconds, failing)
            if due is None:
                break
            if not _check(db, settings, clock, due, opened, report):
                failing.add(due.destination_id)
        for link_id, destination_id in _claim_lists(db, clock(), LISTS_PER_PASS):
            if stop():
                return report
            _read_list(db, settings, link_id, destination_id, opened, report)
    finally:
        if connections is None:
            opened.close()
    return report


def _claim_request(db: Database, now: dt.datetime, lease: int, failing: set[int]) -> _Due | None:
    """The oldest request due to be asked about, leased for one call; None if none is."""
    log = sync_log
    query = (
        sa.select(
            log.c.id,
            log.c.request_id,
            log.c.at,
            log.c.google_checks,
            log.c.link_id,
            links.c.destination_id,
            destinations.c.config,
        )
        .join(links, links.c.id == log.c.link_id)
        .join(destinations, destinations.c.id == links.c.destination_id)
        .where(
            sa.or_(
                log.c.google_status.is_(None),
                log.c.google_status == google_status.PROCESSING,
            ),
            log.c.at > now - GIVE_UP,
            log.c.at <= now - FIRST_CHECK,
            log.c.outcome == "ok",
            log.c.request_id.is_not(None),
            destinations.c.kind == GOOGLE_ADS,
            sa.or_(log.c.google_next_check_at.is_(None), log.c.google_next_check_at <= now),
        )
        .order_by(log.c.id)
        .limit(1)
    )
    if failing:
        query = query.where(links.c.destination_id.not_in(failing))
    with db.read() as conn:
        # Most passes find nothing due: they then take no write lock at all.
        if conn.execute(query).first() is None:
            return None
    with db.write() as conn:
        if db.is_postgres:
            query = query.with_for_update(of=log, skip_locked=True)
        r = conn.execute(query).first()
        if r is None:
            return None
        conn.execute(
            sa.update(log)
            .where(log.c.id == r.id)
            .values(google_next_check_at=now + dt.timedelta(seconds=lease))
        )
    return _Due(
        log_id=int(r.id),
        request_id=str(r.request_id),
        sent_at=r.at,
        checks=int(r.google_checks),
        link_id=int(r.link_id),
        destination_id=int(r.destination_id),
        validate_only=bool(dict(r.config).get("validate_only", False)),
    )


def _connection(
    db: Database,
    settings: Settings,
    destination_id: int,
    opened: Connections,
) -> tuple[GoogleConnection, dict[str, Any]]:
    """The connection for a destination (from the pool), and the destination's config."""
    with db.read() as conn:
        row = conn.execute(sa.select(destinations).where(destinations.c.id == destination_id)).one()
    destination = destination_from_row(row)
    try:
        secret = open_secret(row.secret, settings.cipher)
    except SegflowError as exc:
        raise LinkBroken(str(exc)) from None
    return opened.get(destination_id, secret, settings), destination.config


def _check(
    db: Database,
    settings: Settings,
    clock: Clock,
    due: _Due,
    opened: Connections,
    report: PollReport,
) -> bool:
    """Ask about one request and store the answer; False when the ask itself failed."""
    if due.validate_only:
        # Google checks a validate-only request and keeps nothing to report on.
        _store_final(
            db, due, clock(), google_status.UNKNOWN, "validate_only: Google applied nothing"
        )
        report.checked.append((due.request_id, google_status.UNKNOWN))
        return True
    try:
        connection, _ = _connection(db, settings, due.destination_id, opened)
        # Status reads have a quota of their own at Google (ingestion reads):
        # paced apart from the sends, by the same setting.
        project = f"{credentials.project_of(connection.secret)}/read"
        if pacing.take(db, project, clock(), settings.google_requests_per_minute) is not None:
            return False  # this minute is full: asked again once the lease runs out
        answer = google_status.retrieve(connection, due.request_id, float(settings.sync_timeout))
    except (RequestRejected, MembersRejected) as exc:
        # Google does not know the id (or no longer): nothing more to learn.
        _store_final(db, due, clock(), google_status.UNKNOWN, str(exc))
        report.checked.append((due.request_id, google_status.UNKNOWN))
        return True
    except (TransientError, LinkBroken) as exc:
        _store_failed_ask(db, due, clock(), str(exc))
        report.errors.append(f"request {due.request_id}: {exc}")
        return False
    _store_answer(db, due, clock(), answer)
    report.checked.append((due.request_id, answer.status))
    return True


def _store_answer(
    db: Database, due: _Due, now: dt.datetime, answer: google_status.RequestStatus
) -> None:
    checks = due.checks + 1
    status = answer.status
    error = None
    upcoming = None
    if status == google_status.PROCESSING:
        upcoming = next_check(due.sent_at, checks, now)
        if upcoming is None:
            status = google_status.UNKNOWN
            error = "Google still reported PROCESSING when it stops keeping the status (24 h)"
    with db.write() as conn:
        conn.execute(
            sa.update(sync_log)
            .where(sync_log.c.id == due.log_id)
            .values(
                google_status=status,
                google_checks=checks,
                google_checked_at=now,
                google_next_check_at=upcoming,
                google_errors=answer.errors or None,
                google_warnings=answer.warnings or None,
                google_match_rate=answer.match_rate,
                google_records=answer.records,
                google_error=error,
            )
        )
        _answered(conn, due, now)


def _store_failed_ask(db: Database, due: _Due, now: dt.datetime, reason: str) -> None:
    checks = due.checks + 1
    upcoming = next_check(due.sent_at, checks, now)
    values: dict[str, Any] = {
        "google_checks": checks,
        "google_checked_at": now,
        "google_next_check_at": upcoming,
        "google_error": reason,
    }
    if upcoming is None:
        values["google_status"] = google_status.UNKNOWN
    with db.write() as conn:
        conn.execute(sa.update(sync_log).where(sync_log.c.id == due.log_id).values(**values))
        _answered(conn, due, now)


def _store_final(db: Database, due: _Due, now: dt.datetime, status: str, reason: str) -> None:
    with db.write() as conn:
        conn.execute(
            sa.update(sync_log)
            .where(sync_log.c.id == due.log_id)
            .values(
                google_status=status,
                google_checks=due.checks + 1,
                google_checked_at=now,
                google_next_check_at=None,
                google_error=reason,
            )
        )
        _answered(conn, due, now)


def _answered(conn: Connection, due: _Due, now: dt.datetime) -> None:
    conn.execute(sa.update(links).where(links.c.id == due.link_id).values(uploads_checked_at=now))


# ---------------------------------------------------------------- list sizes


def _claim_lists(db: Database, now: dt.datetime, limit: int) -> list[tuple[int, int]]:
    """Links whose list was not read for :data:`LIST_REFRESH`; marked read now (a lease)."""
    query = (
        sa.select(links.c.id, links.c.destination_id)
        .join(destinations, destinations.c.id == links.c.destination_id)
        .where(
            destinations.c.kind == GOOGLE_ADS,
            sa.or_(links.c.list_read_at.is_(None), links.c.list_read_at <= now - LIST_REFRESH),
        )
        .order_by(links.c.list_read_at.is_not(None), links.c.list_read_at, links.c.id)
        .limit(limit)
    )
    with db.read() as conn:
        if conn.execute(query.limit(1)).first() is None:
            return []
    with db.write() as conn:
        if db.is_postgres:
            query = query.with_for_update(of=links, skip_locked=True)
        rows = conn.execute(query).all()
        if rows:
            conn.execute(
                sa.update(links)
                .where(links.c.id.in_([r.id for r in rows]))
                .values(list_read_at=now)
            )
    return [(int(r.id), int(r.destination_id)) for r in rows]


def _read_list(
    db: Database,
    settings: Settings,
    link_id: int,
    destination_id: int,
    opened: Connections,
    report: PollReport,
) -> None:
    info: dict[str, Any]
    try:
        connection, config = _connection(db, settings, destination_id, opened)
        found = userlists.get(
            connection,
            config["operating_account_id"],
            config["product_destination_id"],
            login_account_id=config.get("login_account_id"),
            timeout=float(settings.sync_timeout),
        )
        info = {**found.as_dict(), "error": None}
        report.lists_read += 1
    except (TransientError, LinkBroken, RequestRejected, MembersRejected) as exc:
        with db.read() as conn:
            before = conn.execute(
                sa.select(links.c.list_info).where(links.c.id == link_id)
            ).scalar()
        info = {**dict(before or {}), "error": str(exc)}
        report.errors.append(f"list of link {link_id}: {exc}")
    with db.write() as conn:
        conn.execute(sa.update(links).where(links.c.id == link_id).values(list_info=info))


def list_infos(conn: Connection, link_ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], Any]]:
    """(list info, when read) of each link whose list Google described."""
    if not link_ids:
        return {}
    rows = conn.execute(
        sa.select(links.c.id, links.c.list_info, links.c.list_read_at).where(
            links.c.id.in_(list(link_ids)), links.c.list_info.is_not(None)
        )
    ).all()
    return {int(r.id): (dict(r.list_info), r.list_read_at) for r in rows}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
