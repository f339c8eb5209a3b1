"""Which destinations segments feed: the query behind every refusal to delete
something a destination's list is built from.

It sits with the storage, below the dataset catalog, the segments and the
link CRUD, because all three refuse a delete with it and the catalog must
not depend on activation.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.schema import destinations, links
from segflow.errors import InvalidInput


def linked_destinations(conn: Connection, segment_ids: list[int]) -> dict[int, list[str]]:
    """Names of the destinations each of these segments feeds."""
    out: dict[int, list[str]] = {}
    if not segment_ids:
        return out
    rows = conn.execute(
        sa.select(links.c.segment_id, destinations.c.name)
        .join(destinations, destinations.c.id == links.c.destination_id)
        .where(links.c.segment_id.in_(segment_ids))
        .order_by(destinations.c.name)
    ).all()
    for segment_id, name in rows:
        out.setdefault(int(segment_id), []).append(name)
    return out


def refuse_if_linked(conn: Connection, segment_ids: list[int], what: str) -> None:
    """InvalidInput when any of these segments feeds a destination; ``what`` names them."""
    linked = linked_destinations(conn, segment_ids)
    if linked:
        names = sorted({n for names in linked.values() for n in names})
        raise InvalidInput(
            f"{what} feeds destination(s) {', '.join(repr(n) for n in names)}; "
            "unlink first (segflow unlink SEGMENT DESTINATION)"
        )
