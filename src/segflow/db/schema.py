"""The current shape of segflow's own tables, as SQLAlchemy Core objects.

Migrations (``migrations.py``) create and change these tables; this module
only describes them for queries. Per-dataset record tables are dynamic and
live in ``records.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both engines (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("segflow stores only timezone-aware datetimes")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


metadata = sa.MetaData()

schema_migrations = sa.Table(
    "sf_schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

# One row (id = 1): the global change sequence. Taking numbers from it while
# holding its row lock makes sequence order equal commit order.
change_sequence = sa.Table(
    "sf_change_sequence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger, nullable=False),
)

datasets = sa.Table(
    "sf_datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("key_column", sa.Text, nullable=False),
    sa.Column("records_table", sa.Text, nullable=False),
    sa.Column("record_count", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

dataset_columns = sa.Table(
    "sf_dataset_columns",
    metadata,
    sa.Column(
        "dataset_id",
        sa.Integer,
        sa.ForeignKey("sf_datasets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
)

imports = sa.Table(
    "sf_imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "dataset_id",
        sa.Integer,
        sa.ForeignKey("sf_datasets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
)

segments = sa.Table(
    "sf_segments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column(
        "dataset_id",
        sa.Integer,
        sa.ForeignKey("sf_datasets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("rules", sa.JSON, nullable=False),
    # Bumped by every edit; the engine re-evaluates fully while it is ahead
    # of evaluated_version.
    sa.Column("rules_version", sa.Integer, nullable=False),
    sa.Column("evaluated_version", sa.Integer, nullable=False),
    # Highest change sequence number whose effect is in the memberships.
    sa.Column("watermark", sa.BigInteger, nullable=False),
    sa.Column("member_count", sa.BigInteger, nullable=False),
    # The "now" of the last evaluation, from which time windows have moved.
    sa.Column("clock_at", UTCDateTime),
    sa.Column("last_processed_at", UTCDateTime),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

members = sa.Table(
    "sf_members",
    metadata,
    sa.Column(
        "segment_id",
        sa.Integer,
        sa.ForeignKey("sf_segments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("rid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("since", UTCDateTime, nullable=False),
)

segment_events = sa.Table(
    "sf_segment_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "segment_id",
        sa.Integer,
        sa.ForeignKey("sf_segments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("rid", sa.BigInteger, nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)
