"""Links between segments and destinations: make, remove, resume, and report on them.

A link says "this destination's list mirrors this segment". Its per-member
work (what to add and remove) lives in the outbox, ``sf_link_members``,
described in :mod:`segflow.outbox`; this module makes and removes links,
resumes paused ones and counts their state for people and pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import outbox
from segflow.activation import uploads
from segflow.activation.destinations import FILE, GOOGLE_ADS, load_destination
from segflow.activation.mapping import mapping_for
from segflow.datasets import load_dataset_by_id
from segflow.db import records
from segflow.db.engine import Database, utcnow
from segflow.db.linked import linked_destinations
from segflow.db.schema import datasets, destinations, link_members, links, segments, sync_log
from segflow.db.scope import owned
from segflow.errors import Conflict, NotFound
from segflow.ingest.consent import UNRECOGNISED, classify

#: Customer Match lists with fewer active members are not served.
MIN_SERVING_MEMBERS = 100


@dataclass(frozen=True)
class Link:
    id: int
    segment_id: int
    segment: str
    destination_id: int
    destination: str


@dataclass(frozen=True)
class LinkStatus:
    link: Link
    kind: str
    members_wanted: int
    synced: int
    pending_adds: int
    pending_removes: int
    failed: int
    last_success_at: dt.datetime | None
    last_error: str | None
    last_error_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    paused_reason: str | None
    validate_only: bool
    #: Members whose consent cell is not a recognised spelling: sent as denied.
    consent_unrecognised: int = 0
    #: Members in accepted ingests Google has not reported processed yet
    #: (they count in ``synced``, which is what the list should hold).
    awaiting_google: int = 0
    #: The last accepted requests, newest first, with Google's answers.
    uploads: list[uploads.Upload] = field(default_factory=list)
    #: The list as Google last described it (see uploads.LIST_REFRESH), and when.
    list_info: dict[str, Any] | None = None
    list_read_at: dt.datetime | None = None

    @property
    def list_size(self) -> int | None:
        """Google's count of the list's members, when it gave one."""
        if self.list_info is None or self.list_info.get("size") is None:
            return None
        return int(self.list_info["size"])

    @property
    def match_rate(self) -> str | None:
        """The match rate Google reported last: the newest upload's range, else the list's."""
        for upload in self.uploads:
            if upload.match_rate is not None:
                return upload.match_rate
        if self.list_info and self.list_info.get("match_rate_percentage") is not None:
            return f"{self.list_info['match_rate_percentage']}%"
        return None

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.kind == "google_ads":
            size = self.list_size
            if size is not None and size < MIN_SERVING_MEMBERS:
                out.append(
                    f"Google counts {size:,} members in the list: it does not serve Customer "
                    f"Match lists with fewer than {MIN_SERVING_MEMBERS}"
                )
            elif size is None and self.members_wanted < MIN_SERVING_MEMBERS:
                out.append(
                    f"{self.members_wanted} members: Google does not serve Customer Match lists "
                    f"with fewer than {MIN_SERVING_MEMBERS}"
                )
        for upload in self.uploads:
            if upload.warning is not None:
                out.append(upload.warning)
        if self.kind != GOOGLE_ADS and self.uploads and self.uploads[0].field_warnings:
            # The platform's own answer to the newest accepted request.
            newest = self.uploads[0]
            when = newest.at.strftime("%Y-%m-%d %H:%M UTC")
            out.extend(f"{w} ({newest.operation} at {when})" for w in newest.field_warnings)
        if self.validate_only:
            out.append("validate_only: requests are checked by Google but change nothing")
        if self.consent_unrecognised:
            out.append(
                f"{self.consent_unrecognised} members have a consent value segflow does not "
                "recognise: sent with consent denied (see the import's consent summary)"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.link.id,
            "segment": self.link.segment,
            "destination": self.link.destination,
            "kind": self.kind,
            "members": self.members_wanted,
            "synced": self.synced,
            "pending_adds": self.pending_adds,
            "pending_removes": self.pending_removes,
            "failed": self.failed,
            "last_success_at": _iso(self.last_success_at),
            "last_error": self.last_error,
            "last_error_at": _iso(self.last_error_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "paused": self.paused_reason is not None,
            "paused_reason": self.paused_reason,
            "consent_unrecognised": self.consent_unrecognised,
            "awaiting_google": self.awaiting_google,
            "last_upload": self.uploads[0].as_dict() if self.uploads else None,
            "uploads": [u.as_dict() for u in self.uploads],
            "match_rate": self.match_rate,
            "list_size": self.list_size,
            "list": self.list_info,
            "list_read_at": _iso(self.list_read_at),
            "warnings": self.warnings,
        }


def _segment_row(conn: Connection, ref: int | str, *, lock: bool = False) -> sa.Row[Any]:
    """The segment's id and name, by id (int) or name (str), in the caller's workspace."""
    where = segments.c.id == ref if isinstance(ref, int) else segments.c.name == ref
    query = sa.select(segments.c.id, segments.c.name).where(where, owned(conn, segments))
    if lock and conn.dialect.name == "postgresql":
        # Waits for a tick that is writing this segment's members, so the
        # link starts from a committed membership.
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        if isinstance(ref, int):
            raise NotFound(f"no segment with id {ref}")
        raise NotFound(f"no segment named {ref!r}")
    return row


def _link_id(conn: Connection, segment: sa.Row[Any], destination_id: int, name: str) -> int:
    """The id of the link from this segment to this destination, or NotFound."""
    found = conn.execute(
        sa.select(links.c.id).where(
            links.c.segment_id == segment.id, links.c.destination_id == destination_id
        )
    ).scalar()
    if found is None:
        raise NotFound(f"segment {segment.name!r} is not linked to {name!r}")
    return int(found)


def link(db: Database, segment: int | str, destination: int | str, now: dt.datetime) -> Link:
    """Link a segment to a destination (each by id or name); its members become pending adds."""
    with db.write() as conn:
        seg = _segment_row(conn, segment, lock=True)
        dest = load_destination(conn, destination)
        taken = conn.execute(
            sa.select(links.c.segment_id, segments.c.name)
            .join(segments, segments.c.id == links.c.segment_id)
            .where(links.c.destination_id == dest.id)
        ).first()
        if taken is not None:
            if taken.segment_id == seg.id:
                raise Conflict(f"segment {seg.name!r} is already linked to {dest.name!r}")
            raise Conflict(
                f"destination {dest.name!r} already receives segment {taken.name!r}; "
                "a list mirrors one segment, so add another destination for this one"
            )
        link_id = conn.execute(
            sa.insert(links)
            .values(segment_id=seg.id, destination_id=dest.id, created_at=now)
            .returning(links.c.id)
        ).scalar_one()
        outbox.start_link(conn, link_id, seg.id)
    return Link(link_id, seg.id, seg.name, dest.id, dest.name)


def unlink(db: Database, segment: int | str, destination: int | str) -> tuple[Link, int]:
    """Remove a link and its sync state; return it and how many members the list keeps.

    Segment and destination are each an id or a name. The list at the
    destination is left as it is: emptying it is a decision for the person
    who owns it (``segments edit`` to a rule nobody matches, then sync,
    empties it through segflow first).
    """
    with db.write() as conn:
        seg = _segment_row(conn, segment)
        dest = load_destination(conn, destination)
        link_id = _link_id(conn, seg, dest.id, dest.name)
        held = conn.execute(
            sa.select(sa.func.count())
            .select_from(link_members)
            .where(link_members.c.link_id == link_id, link_members.c.have == 1)
        ).scalar_one()
        conn.execute(sa.delete(link_members).where(link_members.c.link_id == link_id))
        conn.execute(sa.delete(sync_log).where(sync_log.c.link_id == link_id))
        conn.execute(sa.delete(links).where(links.c.id == link_id))
    return Link(link_id, seg.id, seg.name, dest.id, dest.name), int(held)


def resume(db: Database, segment: int | str, destination: int | str, *, retry_failed: bool) -> Link:
    """Unpause a link and make it due now; optionally retry refused members."""
    with db.write() as conn:
        seg = _segment_row(conn, segment)
        dest = load_destination(conn, destination)
        link_id = _link_id(conn, seg, dest.id, dest.name)
        conn.execute(
            sa.update(links)
            .where(links.c.id == link_id)
            .values(paused_reason=None, attempts=0, next_attempt_at=None)
        )
        if retry_failed:
            conn.execute(
                sa.update(link_members)
                .where(link_members.c.link_id == link_id, link_members.c.rejected.is_not(None))
                .values(rejected=None, pending=1)
            )
    return Link(link_id, seg.id, seg.name, dest.id, dest.name)


def _links(
    conn: Connection, link_id: int | None = None, segment_id: int | None = None
) -> list[tuple[Link, sa.Row[Any]]]:
    query = (
        sa.select(
            links,
            segments.c.name.label("segment_name"),
            destinations.c.name.label("destination_name"),
            destinations.c.kind,
            destinations.c.config,
        )
        .join(segments, segments.c.id == links.c.segment_id)
        .join(destinations, destinations.c.id == links.c.destination_id)
        .where(owned(conn, segments))
        .order_by(segments.c.name, destinations.c.name)
    )
    if link_id is not None:
        query = query.where(links.c.id == link_id)
    if segment_id is not None:
        query = query.where(links.c.segment_id == segment_id)
    out = []
    for row in conn.execute(query).all():
        out.append(
            (
                Link(
                    row.id,
                    row.segment_id,
                    row.segment_name,
                    row.destination_id,
                    row.destination_name,
                ),
                row,
            )
        )
    return out


def list_links(db: Database) -> list[Link]:
    """The workspace's links, by segment name then destination name."""
    with db.read() as conn:
        return [lk for lk, _ in _links(conn)]


def status(
    db: Database,
    segment: int | str | None = None,
    *,
    now: dt.datetime | None = None,
    recent: int = uploads.RECENT_UPLOADS,
) -> list[LinkStatus]:
    """Every link's sync status (or only one segment's, by id or name).

    Counts come from its member rows; Google's answers about the last
    ``recent`` uploads and its description of the list come from what the
    poll pass (:mod:`.uploads`) stored. ``now`` (default: the current time)
    decides which requests Google no longer reports on.
    """
    now = now or utcnow()
    lm = link_members
    with db.read() as conn:
        segment_id = None if segment is None else int(_segment_row(conn, segment).id)
        out = []
        for lk, row in _links(conn, segment_id=segment_id):
            counts = conn.execute(
                sa.select(
                    sa.func.count().filter(lm.c.want == 1),
                    sa.func.count().filter(lm.c.have == 1),
                    sa.func.count().filter(lm.c.pending == 1, lm.c.want == 1),
                    sa.func.count().filter(lm.c.pending == 1, lm.c.want == 0),
                    sa.func.count().filter(lm.c.rejected.is_not(None)),
                ).where(lm.c.link_id == lk.id)
            ).one()
            google = row.kind == GOOGLE_ADS
            validate_only = bool(dict(row.config).get("validate_only", False))
            out.append(
                LinkStatus(
                    link=lk,
                    kind=row.kind,
                    members_wanted=int(counts[0]),
                    synced=int(counts[1]),
                    pending_adds=int(counts[2]),
                    pending_removes=int(counts[3]),
                    failed=int(counts[4]),
                    last_success_at=row.last_success_at,
                    last_error=row.last_error,
                    last_error_at=row.last_error_at,
                    next_attempt_at=row.next_attempt_at,
                    paused_reason=row.paused_reason,
                    validate_only=validate_only,
                    # Only Google reports on requests; nothing awaits a validate-only one.
                    awaiting_google=(
                        uploads.awaiting(conn, lk.id, now) if google and not validate_only else 0
                    ),
                    uploads=_uploads(conn, lk.id, row.kind, now, recent),
                    list_info=dict(row.list_info) if row.list_info is not None else None,
                    list_read_at=row.list_read_at,
                    consent_unrecognised=_consent_unrecognised(conn, lk),
                )
            )
    return out


def _uploads(
    conn: Connection, link_id: int, kind: str, now: dt.datetime, recent: int
) -> list[uploads.Upload]:
    """The link's last accepted requests; only Google is asked about them later."""
    if kind == FILE:
        return []
    found = uploads.recent_uploads(conn, link_id, now, recent)
    if kind == GOOGLE_ADS:
        return found
    return [dataclasses.replace(u, status=None) for u in found]


def link_status(
    db: Database,
    segment: int | str,
    destination: int | str,
    *,
    now: dt.datetime | None = None,
    recent: int = 20,
) -> LinkStatus:
    """One link's status, by segment and destination (each an id or a name), with
    its last ``recent`` uploads."""
    with db.read() as conn:
        seg = _segment_row(conn, segment)
        dest = load_destination(conn, destination)
        link_id = _link_id(conn, seg, dest.id, dest.name)
    return next(s for s in status(db, int(seg.id), now=now, recent=recent) if s.link.id == link_id)


def _consent_unrecognised(conn: Connection, lk: Link) -> int:
    """Wanted members whose consent cells, read now, are sent as denied for being unclear.

    Counted when asked, from the records: a changed record is due again and
    sent with what it holds now, so this is what the list gets. A consent
    column holds a few distinct values, so they are grouped in SQL and read
    in Python, by the same rule the sync pass sends with.
    """
    dataset_id = conn.execute(
        sa.select(segments.c.dataset_id).where(segments.c.id == lk.segment_id)
    ).scalar_one()
    dataset = load_dataset_by_id(conn, dataset_id)
    if dataset is None:
        return 0
    mapping, _ = mapping_for(conn, dataset)
    mapped = [
        dataset.column(name)
        for name in (mapping.consent_ad_user_data, mapping.consent_ad_personalization)
        if name is not None
    ]
    columns = [c for c in mapped if c is not None]
    if not columns:
        return 0
    rec = records.table(dataset.records_table, columns)
    cells = [rec.c[records.raw_col(c.position)] for c in columns]
    rows = conn.execute(
        sa.select(*cells, sa.func.count())
        .select_from(link_members.join(rec, rec.c.rid == link_members.c.rid))
        .where(link_members.c.link_id == lk.id, link_members.c.want == 1)
        .group_by(*cells)
    ).all()
    return sum(int(row[-1]) for row in rows if UNRECOGNISED in map(classify, row[:-1]))


def failed_members(db: Database, link_id: int, limit: int = 100) -> list[tuple[str, str]]:
    """(record key, reason) of members the destination refused."""
    lm = link_members
    with db.read() as conn:
        found = _links(conn, link_id)
        if not found:
            raise NotFound(f"no link {link_id}")
        # Only the key is read, so the records table needs none of its value columns.
        records_table = conn.execute(
            sa.select(datasets.c.records_table)
            .join(segments, segments.c.dataset_id == datasets.c.id)
            .where(segments.c.id == found[0][0].segment_id)
        ).scalar_one()
        rec = records.table(records_table, ())
        rows = conn.execute(
            sa.select(rec.c.key, lm.c.rejected)
            .join(rec, rec.c.rid == lm.c.rid)
            .where(lm.c.link_id == link_id, lm.c.rejected.is_not(None))
            .order_by(lm.c.rid)
            .limit(limit)
        ).all()
    return [(str(k), str(r)) for k, r in rows]


def destinations_of(db: Database, segment_ids: list[int]) -> dict[int, list[str]]:
    """Names of the destinations each of these segments feeds, in a read of its own."""
    with db.read() as conn:
        return linked_destinations(conn, segment_ids)


def live_states(db: Database) -> dict[int, tuple[int, dict[str, Any]]]:
    """Every link's sync state by link id, with its workspace: what live pages show.

    Reads across all workspaces (the broadcaster routes each state to its own
    workspace's streams), in one small query.
    """
    with db.read() as conn:
        rows = conn.execute(
            sa.select(
                links.c.id,
                links.c.segment_id,
                destinations.c.workspace_id,
                destinations.c.name,
                links.c.paused_reason,
                links.c.last_success_at,
                links.c.last_error,
                links.c.next_attempt_at,
                links.c.uploads_checked_at,
                links.c.list_read_at,
            ).join(destinations, destinations.c.id == links.c.destination_id)
        ).all()
    return {
        r.id: (
            r.workspace_id,
            {
                "link_id": r.id,
                "segment_id": r.segment_id,
                "destination": r.name,
                "paused": r.paused_reason is not None,
                "paused_reason": r.paused_reason,
                "last_success_at": _iso(r.last_success_at),
                "last_error": r.last_error,
                "next_attempt_at": _iso(r.next_attempt_at),
                # A new answer from Google about an upload or the list.
                "google_checked_at": _iso(r.uploads_checked_at),
                "list_read_at": _iso(r.list_read_at),
            },
        )
        for r in rows
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
