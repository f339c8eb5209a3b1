"""The mass-delete guard of replace imports.

A replace import deletes every record its file does not have, so a truncated
export or a header-only file would empty a dataset and the lists fed from it.
Inside the import's write transaction, once the records to delete are known
and before anything is written, the guard compares them with the dataset's
live records and with the members of each linked destination's segment; over
the limit, it refuses the import unless the deletes were confirmed. The
refusal rolls the transaction back, so nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.schema import destinations, links, members, segments
from segflow.errors import ImportFailed


class DeleteNeedsConfirmation(ImportFailed):
    """A replace import would delete more than the limit; nothing was stored."""

    code = "confirmation_needed"

    def __init__(
        self,
        reason: str,
        *,
        file: str | None,
        deleted: int,
        live: int,
        limit: int,
        losses: list[Loss],
    ) -> None:
        super().__init__(reason, file=file)
        self.deleted = deleted
        self.live = live
        self.limit = limit
        self.losses = losses
        self.removed = sum(loss.leaving for loss in losses)

    def details(self) -> dict[str, Any]:
        """The numbers, for a confirm step: what the message says, as fields."""
        return {
            "would_delete": self.deleted,
            "records": self.live,
            "percent": _share(self.deleted, self.live),
            "limit_percent": self.limit,
            "members_removed": self.removed,
            "destinations": [
                {
                    "destination": loss.destination,
                    "members_removed": loss.leaving,
                    "members": loss.members,
                    "percent": _share(loss.leaving, loss.members),
                }
                for loss in self.losses
            ],
        }


@dataclass(frozen=True)
class Loss:
    """Members a linked destination's list would lose to the deletes."""

    destination: str
    leaving: int
    members: int


def destination_losses(conn: Connection, deletes_table: str, dataset_id: int) -> list[Loss]:
    """Per linked destination of the dataset's segments: members among the deleted records.

    The segment's memberships stand for the list's: sync makes the list
    follow them, so the members that leave the segment leave the list.
    """
    dels = sa.table(deletes_table, sa.column("rid", sa.BigInteger))
    rows = conn.execute(
        sa.select(
            destinations.c.name,
            sa.func.count(members.c.rid),
            sa.func.count(dels.c.rid),
        )
        .select_from(links)
        .join(segments, segments.c.id == links.c.segment_id)
        .join(destinations, destinations.c.id == links.c.destination_id)
        .join(members, members.c.segment_id == links.c.segment_id)
        .outerjoin(dels, dels.c.rid == members.c.rid)
        .where(segments.c.dataset_id == dataset_id)
        .group_by(destinations.c.id, destinations.c.name)
        .order_by(destinations.c.name)
    ).all()
    return [Loss(str(name), int(leaving), int(total)) for name, total, leaving in rows]


def _share(part: int, whole: int) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def _over(part: int, whole: int, limit: int) -> bool:
    return whole > 0 and part * 100 > limit * whole


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage that never reads as the limit it exceeds."""
    value = 100 * part / whole if whole else 0.0
    if 0 < value < 1:
        return "<1%"
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def check(
    conn: Connection,
    *,
    deletes_table: str,
    dataset_id: int,
    live: int,
    deleted: int,
    limit: int,
    source: str | None,
) -> None:
    """Refuse (``DeleteNeedsConfirmation``) deletes over ``limit`` percent of the
    dataset's ``live`` records or of any linked destination's members."""
    if not deleted:
        return
    losses = [loss for loss in destination_losses(conn, deletes_table, dataset_id) if loss.leaving]
    if not _over(deleted, live, limit) and not any(
        _over(loss.leaving, loss.members, limit) for loss in losses
    ):
        return
    removed = sum(loss.leaving for loss in losses)
    what = f"would delete {deleted:,} of {live:,} records ({percent(deleted, live)})"
    if losses:
        places = "destination" if len(losses) == 1 else "destinations"
        each = ", ".join(
            f"{loss.destination!r}: {loss.leaving:,} of {loss.members:,}, "
            f"{percent(loss.leaving, loss.members)}"
            for loss in losses
        )
        what += f" and remove {removed:,} members from {len(losses)} {places} ({each})"
    raise DeleteNeedsConfirmation(
        f"this replace import {what}, more than the {limit}% limit "
        "(SEGFLOW_REPLACE_DELETE_LIMIT); nothing was stored. Check the file is complete, "
        "then import it again confirming the deletes (--confirm-delete; confirm_delete "
        "in the API)",
        file=source,
        deleted=deleted,
        live=live,
        limit=limit,
        losses=losses,
    )
