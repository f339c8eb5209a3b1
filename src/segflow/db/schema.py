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

# Every dataset, segment and destination belongs to one workspace; records,
# events, links and the sync log belong to it through them. Workspace 1 is
# the local single-user mode's.
workspaces = sa.Table(
    "sf_workspaces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

users = sa.Table(
    "sf_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

workspace_members = sa.Table(
    "sf_workspace_members",
    metadata,
    sa.Column(
        "workspace_id",
        sa.Integer,
        sa.ForeignKey("sf_workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("sf_users.id", ondelete="CASCADE"), primary_key=True
    ),
)

# API tokens and sessions are stored as SHA-256 hashes of their secrets only.
tokens = sa.Table(
    "sf_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("sf_users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "workspace_id",
        sa.Integer,
        sa.ForeignKey("sf_workspaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_used_at", UTCDateTime),
    sa.Column("revoked_at", UTCDateTime),
)

sessions = sa.Table(
    "sf_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("sf_users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "workspace_id",
        sa.Integer,
        sa.ForeignKey("sf_workspaces.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("csrf_token", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

login_failures = sa.Table(
    "sf_login_failures",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("first_at", UTCDateTime, nullable=False),
    sa.Column("locked_until", UTCDateTime),
)

datasets = sa.Table(
    "sf_datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_column", sa.Text, nullable=False),
    sa.Column("records_table", sa.Text, nullable=False, unique=True),
    sa.Column("record_count", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # DEFAULT 1: rows made before workspaces existed belong to the first one.
    sa.Column(
        "workspace_id",
        sa.Integer,
        sa.ForeignKey("sf_workspaces.id"),
        nullable=False,
        server_default="1",
    ),
    sa.UniqueConstraint("workspace_id", "name"),
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
    # How its values are written when not plainly (segflow.colformats): "1.234,56".
    sa.Column("format", sa.Text),
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
    sa.Index("sf_imports_dataset", "dataset_id", "id"),
)

segments = sa.Table(
    "sf_segments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
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
    # Always the dataset's workspace; kept here so names are unique per
    # workspace. DEFAULT 1: rows made before workspaces existed belong to the first one.
    sa.Column(
        "workspace_id",
        sa.Integer,
        sa.ForeignKey("sf_workspaces.id"),
        nullable=False,
        server_default="1",
    ),
    sa.UniqueConstraint("workspace_id", "name"),
    sa.Index("sf_segments_dataset", "dataset_id"),
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
    sa.Index("sf_segment_events_segment", "segment_id", "id"),
)

destinations = sa.Table(
    "sf_destinations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    # Credentials, kept apart from config so that nothing that shows a
    # destination can print them by accident.
    sa.Column("secret", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # DEFAULT 1: rows made before workspaces existed belong to the first one.
    sa.Column(
        "workspace_id",
        sa.Integer,
        sa.ForeignKey("sf_workspaces.id"),
        nullable=False,
        server_default="1",
    ),
    sa.UniqueConstraint("workspace_id", "name"),
)

identifier_maps = sa.Table(
    "sf_identifier_maps",
    metadata,
    sa.Column(
        "dataset_id",
        sa.Integer,
        sa.ForeignKey("sf_datasets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("mapping", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# A segment feeding one destination list. A destination takes one segment:
# two segments writing one Customer Match list would undo each other's exits.
links = sa.Table(
    "sf_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("segment_id", sa.Integer, sa.ForeignKey("sf_segments.id"), nullable=False),
    sa.Column(
        "destination_id",
        sa.Integer,
        sa.ForeignKey("sf_destinations.id"),
        nullable=False,
        unique=True,
    ),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("paused_reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("last_error_at", UTCDateTime),
    # Whoever holds an unexpired lease is the only sender to this list.
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_until", UTCDateTime),
    # The list as Google last described it (UserListService.GetUserList):
    # sizes per network, match rate, name; read at most every hour.
    sa.Column("list_info", sa.JSON),
    sa.Column("list_read_at", UTCDateTime),
    # When Google last answered about one of its uploads (for live pages).
    sa.Column("uploads_checked_at", UTCDateTime),
    sa.Index("sf_links_segment", "segment_id"),
)

# Per link and record: what the list should hold (want), what it has
# acknowledged (have), and the identifiers it may hold (sent, JSON), which
# a remove needs even after the record itself is gone.
link_members = sa.Table(
    "sf_link_members",
    metadata,
    sa.Column(
        "link_id",
        sa.Integer,
        sa.ForeignKey("sf_links.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("rid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("want", sa.SmallInteger, nullable=False),
    sa.Column("have", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("pending", sa.SmallInteger, nullable=False),
    sa.Column("sent", sa.Text),
    sa.Column("norm_version", sa.SmallInteger),
    sa.Column("acked_at", UTCDateTime),
    sa.Column("rejected", sa.Text),
    # Earlier identifier sets (a JSON list of code lists) the destination may
    # still hold after the record's email or phone changed: each is removed
    # before the new set is added.
    sa.Column("stale", sa.Text),
    # The per-record consent last sent ("granted|-": ad_user_data, then
    # ad_personalization, "-" for the destination's): a change is sent again.
    sa.Column("sent_consent", sa.Text),
    sa.Index("sf_link_members_pending", "link_id", "pending", "want", "rid"),
    sa.Index("sf_link_members_acked", "link_id", "have", "acked_at"),
)

# Per link: the identifier codes each member's current ``sent`` set holds,
# one row a code, written with ``sent`` before the request leaves. Members of
# one list may share an email or a phone, and Google removes every user a
# removed identifier matches: a remove leaves out the codes a wanted member
# still uses, looked up by code. A code is stored as a 64-bit key
# (``identifiers.code_key``: the hash's first 16 hex digits, or the first 8
# bytes of the SHA-256 of an address code), so the table is one B-tree of
# three integers, ordered for that lookup. Two codes may share a key (about
# n²/2^65 for n codes): a key's members are checked against their ``sent``,
# and a false match could only leave an identifier out of a remove.
# No foreign key (migration 12): a trigger on sf_links deletes a link's rows.
link_hashes = sa.Table(
    "sf_link_hashes",
    metadata,
    sa.Column("link_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("h", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("rid", sa.BigInteger, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

sync_log = sa.Table(
    "sf_sync_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "link_id",
        sa.Integer,
        sa.ForeignKey("sf_links.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("member_count", sa.Integer, nullable=False),
    sa.Column("request_id", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    #: JSON list of the field warnings an accepted request's answer carried.
    sa.Column("warnings", sa.Text),
    # Google's answer to RetrieveRequestStatus for an accepted request
    # (activation/uploads.py): NULL until asked; PROCESSING, SUCCESS,
    # PARTIAL_SUCCESS, FAILED or UNKNOWN after.
    sa.Column("google_status", sa.Text),
    sa.Column("google_checks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("google_checked_at", UTCDateTime),
    # When to ask next; while a worker asks, its lease.
    sa.Column("google_next_check_at", UTCDateTime),
    # {reason: record count}, Google's ProcessingErrorReason / WarningReason names.
    sa.Column("google_errors", sa.JSON),
    sa.Column("google_warnings", sa.JSON),
    sa.Column("google_match_rate", sa.Text),
    sa.Column("google_records", sa.BigInteger),
    # Why the last ask failed, if it did.
    sa.Column("google_error", sa.Text),
    sa.Index("sf_sync_log_link", "link_id", "id"),
    sa.Index("sf_sync_log_google", "google_status", "at"),
)

#: Requests sent to Google per Cloud project and clock minute (activation/pacing.py).
request_pace = sa.Table(
    "sf_request_pace",
    metadata,
    sa.Column("project", sa.Text, primary_key=True),
    sa.Column("minute", UTCDateTime, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)
