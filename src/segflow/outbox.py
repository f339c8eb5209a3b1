"""The outbox: pending work for destinations, written in the caller's transaction.

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
request. The sync pass (``segflow.activation.sync``) drains this work; links
themselves are made and removed in ``segflow.activation.links``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.schema import link_members, links, members, segments


def start_link(conn: Connection, link_id: int, segment_id: int) -> None:
    """A new link's work: every current member of its segment becomes a pending add."""
    _add_wanted(conn, link_id, members.c.rid, members.c.segment_id == segment_id)


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
    """Members held by a destination, or refused by it, whose record changed become due again.

    The sync pass recomputes their identifiers: unchanged ones settle without
    a request, changed ones are replaced (old removed, new added); a refused
    member is tried again, since its record may now be sendable (an email
    added, consent given again). ``since`` maps segment id to its watermark
    before this tick.
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
                sa.or_(lm.c.have == 1, lm.c.rejected.is_not(None)),
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
