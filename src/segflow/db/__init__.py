"""Storage: engine setup for SQLite and PostgreSQL, schema, migrations.

All writes go through :meth:`Database.write`, which on SQLite opens the
transaction with ``BEGIN IMMEDIATE`` so that two writers queue on the busy
timeout instead of failing half-way with ``database is locked``.
"""

from segflow.db.engine import Database

__all__ = ["Database"]
