"""Links between segments and destinations, and their per-member sync state.

For each link and record, ``sf_link_members`` keeps:

* ``want``: 1 when the record is a member of the segment (the list should
  hold it), 0 when it left;
* ``have``: 1 when the destination acknowledged holding it;
* ``sent``: the identifier codes last sent in an ingest, written *before*
  the request goes out. A non-empty ``sent`` means "the list may hold this",
  so a remove is still due even if the acknowledgement was lost;
* ``stale``: identifier sets sent earlier that the record no longer has (its email or
  phone changed), removed before the new ones are added;
* ``pending``: 1 while there is something to send (``want != have``, a
  re-send before Google's 540-day limit, or an add whose fate is unknown);
* ``rejected``: the platform's reason when it refused this member.

The engine calls :func:`record_changes` in the same transaction that writes
memberships, so the work for destinations commits with them. A record that
enters and leaves before anything was sent leaves no row behind and costs no
request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.activation.destinations import Destination, _load
from segflow.db.engine import Database
from segflow.db.linked import linked_destinations as linked_destinations
from segflow.db.linked import refuse_if_linked as refuse_if_linked
from segflow.db.schema import link_members, links, members, segments, sync_log
from segflow.db.scope import owned
from segflow.errors import Conflict, NotFound

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

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.members_wanted < MIN_SERVING_MEMBERS and self.kind == "google_ads":
            out.append(
                f"{self.members_wanted} members: Google does not serve Customer Match lists "
                f"with fewer than {MIN_SERVING_MEMBERS}"
            )
        if self.validate_only:
            out.append("validate_only: requests are checked by Google but change nothing")
        return out

    def as_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

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
            "last_success_at": iso(self.last_success_at),
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "next_attempt_at": iso(self.next_attempt_at),
            "paused": self.paused_reason is not None,
            "paused_reason": self.paused_reason,
            "warnings": self.warnings,
        }


def _segment_row(conn: Connection, name: str, *, lock: bool = False) -> sa.Row[Any]:
    query = sa.select(segments.c.id, segments.c.name).where(
        segments.c.name == name, owned(conn, segments)
    )
    if lock and conn.dialect.name == "postgresql":
        # Waits for a tick that is writing this segment's members, so the
        # link starts from a committed membership.
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no segment named {name!r}")
    return row


def link(db: Database, segment_name: str, destination_name: str, now: dt.datetime) -> Link:
    """Link a segment to a destination; its current members become pending adds."""
    with db.write() as conn:
        segment = _segment_row(conn, segment_name, lock=True)
        destination = _load(conn, destination_name)
        taken = conn.execute(
            sa.select(links.c.segment_id, segments.c.name)
            .join(segments, segments.c.id == links.c.segment_id)
            .where(links.c.destination_id == destination.id)
        ).first()
        if taken is not None:
            if taken.segment_id == segment.id:
                raise Conflict(
                    f"segment {segment.name!r} is already linked to {destination.name!r}"
                )
            raise Conflict(
                f"destination {destination.name!r} already receives segment {taken.name!r}; "
                "a list mirrors one segment, so add another destination for this one"
            )
        link_id = conn.execute(
            sa.insert(links)
            .values(segment_id=segment.id, destination_id=destination.id, created_at=now)
            .returning(links.c.id)
        ).scalar_one()
        _add_wanted(conn, link_id, members.c.rid, members.c.segment_id == segment.id)
    return Link(link_id, segment.id, segment.name, destination.id, destination.name)


def unlink(db: Database, segment_name: str, destination_name: str) -> tuple[Link, int]:
    """Remove a link and its sync state; return it and how many members the list keeps.

    The list at the destination is left as it is: emptying it is a decision
    for the person who owns it (``segments edit`` to a rule nobody matches,
    then sync, empties it through segflow first).
    """
    with db.write() as conn:
        segment = _segment_row(conn, segment_name)
        destination = _load(conn, destination_name)
        row = conn.execute(
            sa.select(links.c.id).where(
                links.c.segment_id == segment.id, links.c.destination_id == destination.id
            )
        ).first()
        if row is None:
            raise NotFound(f"segment {segment.name!r} is not linked to {destination.name!r}")
        held = conn.execute(
            sa.select(sa.func.count())
            .select_from(link_members)
            .where(link_members.c.link_id == row.id, link_members.c.have == 1)
        ).scalar_one()
        conn.execute(sa.delete(link_members).where(link_members.c.link_id == row.id))
        conn.execute(sa.delete(sync_log).where(sync_log.c.link_id == row.id))
        conn.execute(sa.delete(links).where(links.c.id == row.id))
    return Link(row.id, segment.id, segment.name, destination.id, destination.name), int(held)


def _add_wanted(
    conn: Connection, link_id: int, rid: sa.ColumnElement[Any], where: sa.ColumnElement[bool]
) -> None:
    """New rows for records the list should hold and does not yet: pending adds."""
    conn.execute(
        sa.insert(link_members).from_select(
            ["link_id", "rid", "want", "have", "pending"],
            sa.select(
                sa.literal(link_id, sa.Integer),
                rid,
                sa.literal(1, sa.SmallInteger),
                sa.literal(0, sa.SmallInteger),
                sa.literal(1, sa.SmallInteger),
            ).where(where),
        )
    )


def lock_in_order(conn: Connection, link_id: int, which: sa.ColumnElement[bool]) -> None:
    """PostgreSQL: lock a link's member rows in record order before changing them.

    The engine and sync passes both write these rows; taking their locks in
    one order (the sync pass reads its batches by rid) keeps them from
    deadlocking each other.
    """
    if conn.dialect.name == "postgresql":
        lm = link_members
        conn.execute(
            sa.select(lm.c.rid)
            .where(lm.c.link_id == link_id, which)
            .order_by(lm.c.rid)
            .with_for_update()
        ).all()


def record_changes(conn: Connection, diff: sa.TableClause, segment_ids: list[int]) -> None:
    """Turn a tick's enters and exits into pending work for linked destinations.

    ``diff`` holds (segment_id, rid, kind) rows; runs inside the tick's
    transaction.
    """
    rows = conn.execute(
        sa.select(links.c.id, links.c.segment_id).where(links.c.segment_id.in_(segment_ids))
    ).all()
    lm = link_members
    for link_id, segment_id in rows:

        def changed(kind: str, segment_id: int = segment_id) -> sa.Select[Any]:
            return sa.select(diff.c.rid).where(diff.c.segment_id == segment_id, diff.c.kind == kind)

        touched = sa.select(diff.c.rid).where(diff.c.segment_id == segment_id)
        lock_in_order(conn, link_id, lm.c.rid.in_(touched))

        # Enter: the list should hold it. Pending unless already held.
        conn.execute(
            sa.update(lm)
            .where(lm.c.link_id == link_id, lm.c.rid.in_(changed("enter")))
            .values(want=1, pending=sa.case((lm.c.have == 1, 0), else_=1), rejected=None)
        )
        existing = sa.select(lm.c.rid).where(lm.c.link_id == link_id, lm.c.rid == diff.c.rid)
        _add_wanted(
            conn,
            link_id,
            diff.c.rid,
            sa.and_(diff.c.segment_id == segment_id, diff.c.kind == "enter", ~sa.exists(existing)),
        )
        # Exit: nothing was ever sent -> forget it; otherwise a remove is due.
        exits = changed("exit")
        conn.execute(
            sa.delete(lm).where(
                lm.c.link_id == link_id,
                lm.c.rid.in_(exits),
                lm.c.have == 0,
                lm.c.sent.is_(None),
                lm.c.stale.is_(None),
            )
        )
        conn.execute(
            sa.update(lm)
            .where(lm.c.link_id == link_id, lm.c.rid.in_(exits))
            .values(want=0, pending=1, rejected=None)
        )


def refresh_changed(conn: Connection, rec: sa.TableClause, since: dict[int, int], hi: int) -> None:
    """Members held by a destination whose record changed become due again.

    The sync pass recomputes their identifiers: unchanged ones settle without
    a request, changed ones are replaced (old removed, new added). ``since``
    maps segment id to its watermark before this tick.
    """
    lm = link_members
    rows = conn.execute(
        sa.select(links.c.id, links.c.segment_id).where(links.c.segment_id.in_(list(since)))
    ).all()
    for link_id, segment_id in rows:
        changed = sa.select(rec.c.rid).where(rec.c.seq > since[segment_id], rec.c.seq <= hi)
        conn.execute(
            sa.update(lm)
            .where(
                lm.c.link_id == link_id,
                lm.c.want == 1,
                lm.c.have == 1,
                lm.c.pending == 0,
                lm.c.rid.in_(changed),
            )
            .values(pending=1)
        )


def mapping_changed(conn: Connection, dataset_id: int) -> None:
    """Every wanted member of the dataset's lists becomes due again.

    Which columns hold the identifiers changed, so what the lists hold may
    no longer be what they should: the sync pass recomputes each member's
    identifiers, settles those that come out the same without a request,
    replaces the others (old removed, new added), and tries again the members
    it refused for want of identifiers.
    """
    lm = link_members
    ids = conn.execute(
        sa.select(links.c.id)
        .join(segments, segments.c.id == links.c.segment_id)
        .where(segments.c.dataset_id == dataset_id)
        .order_by(links.c.id)
    ).scalars()
    for link_id in list(ids):
        due = sa.and_(lm.c.want == 1, lm.c.pending == 0)
        lock_in_order(conn, link_id, due)
        conn.execute(
            sa.update(lm).where(lm.c.link_id == link_id, due).values(pending=1, rejected=None)
        )


def _links(conn: Connection, link_id: int | None = None) -> list[tuple[Link, sa.Row[Any]]]:
    from segflow.db.schema import destinations

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
    with db.read() as conn:
        return [lk for lk, _ in _links(conn)]


def status(db: Database) -> list[LinkStatus]:
    """Every link's sync status, counted from its member rows."""
    lm = link_members
    with db.read() as conn:
        out = []
        for lk, row in _links(conn):
            counts = conn.execute(
                sa.select(
                    sa.func.count().filter(lm.c.want == 1),
                    sa.func.count().filter(lm.c.have == 1),
                    sa.func.count().filter(lm.c.pending == 1, lm.c.want == 1),
                    sa.func.count().filter(lm.c.pending == 1, lm.c.want == 0),
                    sa.func.count().filter(lm.c.rejected.is_not(None)),
                ).where(lm.c.link_id == lk.id)
            ).one()
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
                    validate_only=bool(dict(row.config).get("validate_only", False)),
                )
            )
    return out


def failed_members(db: Database, link_id: int, limit: int = 100) -> list[tuple[str, str]]:
    """(record key, reason) of members the destination refused."""
    from segflow.datasets import load_dataset_by_id
    from segflow.db import records

    lm = link_members
    with db.read() as conn:
        found = _links(conn, link_id)
        if not found:
            raise NotFound(f"no link {link_id}")
        dataset_id = conn.execute(
            sa.select(segments.c.dataset_id).where(segments.c.id == found[0][0].segment_id)
        ).scalar_one()
        dataset = load_dataset_by_id(conn, dataset_id)
        assert dataset is not None  # a segment's dataset outlives it
        rec = records.table(dataset.records_table, dataset.columns)
        rows = conn.execute(
            sa.select(rec.c.key, lm.c.rejected)
            .join(rec, rec.c.rid == lm.c.rid)
            .where(lm.c.link_id == link_id, lm.c.rejected.is_not(None))
            .order_by(lm.c.rid)
            .limit(limit)
        ).all()
    return [(str(k), str(r)) for k, r in rows]


def resume(db: Database, segment_name: str, destination_name: str, *, retry_failed: bool) -> Link:
    """Unpause a link and make it due now; optionally retry refused members."""
    with db.write() as conn:
        segment = _segment_row(conn, segment_name)
        destination: Destination = _load(conn, destination_name)
        row = conn.execute(
            sa.select(links.c.id).where(
                links.c.segment_id == segment.id, links.c.destination_id == destination.id
            )
        ).first()
        if row is None:
            raise NotFound(f"segment {segment.name!r} is not linked to {destination.name!r}")
        conn.execute(
            sa.update(links)
            .where(links.c.id == row.id)
            .values(paused_reason=None, attempts=0, next_attempt_at=None)
        )
        if retry_failed:
            conn.execute(
                sa.update(link_members)
                .where(link_members.c.link_id == row.id, link_members.c.rejected.is_not(None))
                .values(rejected=None, pending=1)
            )
    return Link(row.id, segment.id, segment.name, destination.id, destination.name)


def destinations_of(db: Database, segment_ids: list[int]) -> dict[int, list[str]]:
    """Names of the destinations each of these segments feeds, in a read of its own."""
    with db.read() as conn:
        return linked_destinations(conn, segment_ids)


def live_states(db: Database) -> dict[int, tuple[int, dict[str, Any]]]:
    """Every link's sync state by link id, with its workspace: what live pages show.

    Reads across all workspaces (the broadcaster routes each state to its own
    workspace's streams), in one small query.
    """
    from segflow.db.schema import destinations

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
            },
        )
        for r in rows
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
