"""Workspace isolation: the one filter every lookup of an owned object applies.

Datasets, segments and destinations carry a ``workspace_id``; everything
else (records, members, events, links, sync state) hangs off them. Every
transaction a ``Database`` opens carries the workspace it is seen from, so a
function holding only a connection still knows whose objects it may see.

Code that serves a person (CLI commands, API routes) looks objects up with
``owned``. Background work (ticks, sync passes) works on ids across every
workspace and never takes names from a person.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.db.engine import DEFAULT_WORKSPACE, WORKSPACE_OPTION


def workspace_of(conn: Connection) -> int:
    """The workspace the connection's transaction was opened for."""
    value = conn.get_execution_options().get(WORKSPACE_OPTION, DEFAULT_WORKSPACE)
    return int(value)


def owned(conn: Connection, table: sa.Table) -> sa.ColumnElement[bool]:
    """``table``'s rows that belong to the connection's workspace."""
    column: Any = table.c.workspace_id
    result: sa.ColumnElement[bool] = column == workspace_of(conn)
    return result
