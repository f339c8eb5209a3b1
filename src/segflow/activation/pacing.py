"""segflow's own pace of requests to Google, per Cloud project, and Google's quota windows.

Google counts Data Manager API requests per Cloud project: 300 a minute and
100,000 a day for IngestionService, shared by every application using the
project. So that segflow alone never runs into the minute's limit, every
request to Google first takes a place in ``sf_request_pace``: one row per
project and clock minute, counted up in a short write transaction that every
link and every worker (on any machine sharing the database) goes through.
When the minute is full, :func:`take` says when the next one starts; the
link waits until then, which is not a failure.

Time always comes from the caller's clock. Google's minutes are clock
minutes; its days end at midnight Pacific time, when daily quotas reset
(:func:`next_quota_day`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from segflow.db.engine import Database
from segflow.db.schema import request_pace

PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")


def minute_of(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(second=0, microsecond=0)


def next_minute(now: dt.datetime) -> dt.datetime:
    return minute_of(now) + dt.timedelta(minutes=1)


def next_quota_day(now: dt.datetime) -> dt.datetime:
    """The next midnight in Pacific time (where Google's daily quotas reset), in UTC."""
    local = now.astimezone(PACIFIC)
    tomorrow = (local + dt.timedelta(days=1)).date()
    midnight = dt.datetime.combine(tomorrow, dt.time(0), tzinfo=PACIFIC)
    return midnight.astimezone(dt.UTC)


def take(db: Database, project: str, now: dt.datetime, per_minute: int) -> dt.datetime | None:
    """Count one request for ``project`` in ``now``'s minute.

    Returns None when it may go, or the start of the next minute when this
    one already holds ``per_minute`` requests (then nothing is counted).
    """
    minute = minute_of(now)
    insert = (postgresql.insert if db.is_postgres else sqlite.insert)(request_pace)
    counted = (
        insert.values(project=project, minute=minute, count=1)
        .on_conflict_do_update(
            index_elements=[request_pace.c.project, request_pace.c.minute],
            set_={"count": request_pace.c.count + 1},
            where=request_pace.c.count < per_minute,
        )
        .returning(request_pace.c.count)
    )
    with db.write() as conn:
        taken = conn.execute(counted).first()
        # Past minutes are never read again.
        conn.execute(
            sa.delete(request_pace).where(
                request_pace.c.project == project, request_pace.c.minute < minute
            )
        )
    return None if taken is not None else minute + dt.timedelta(minutes=1)


def used(db: Database, project: str, now: dt.datetime) -> int:
    """Requests counted for ``project`` in ``now``'s minute."""
    with db.read() as conn:
        value = conn.execute(
            sa.select(request_pace.c.count).where(
                request_pace.c.project == project, request_pace.c.minute == minute_of(now)
            )
        ).scalar()
    return int(value or 0)
