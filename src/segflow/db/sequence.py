"""The change sequence: one counter numbering every record insert, change and delete.

Each record row keeps the number of its last change (``seq``), which is how
the engine finds what changed since its last pass. A write transaction takes
its numbers with :func:`take` at its start and says how many it used at its
end; in between it writes ``base + 1``, ``base + 2``, ... into its rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.schema import change_sequence


class Numbers:
    """Change-sequence numbers being taken by one write transaction.

    ``base`` is the last number used before it. On PostgreSQL the sequence
    row stays locked until the transaction ends, so sequence order is commit
    order; SQLite's write lock is the whole database's.
    """

    def __init__(self, conn: Connection, base: int) -> None:
        self.conn = conn
        self.base = base

    def use(self, count: int) -> int:
        """Record that the transaction wrote the next ``count`` (>= 1) numbers; the last one."""
        last = self.base + count
        self.conn.execute(
            sa.update(change_sequence).where(change_sequence.c.id == 1).values(value=last)
        )
        return last


def take(conn: Connection) -> Numbers:
    """Start taking change-sequence numbers in this write transaction."""
    query = sa.select(change_sequence.c.value).where(change_sequence.c.id == 1)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return Numbers(conn, int(conn.execute(query).scalar_one()))
