"""Sync against a misbehaving Data Manager: the final list is still exact.

The fake answers a seeded random share of requests with UNAVAILABLE,
RESOURCE_EXHAUSTED with a retry delay, or a response slower than the
client's timeout (which still takes effect, as a slow server's would), and
refuses some members outright. Memberships move between passes. In the end
the list holds exactly the segment's members minus the refused ones, and
each refused member is reported with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest
import sqlalchemy as sa

from segflow.activation import links
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import sync_log
from tests.sync_helpers import (
    LIST_ID,
    NOW,
    Clock,
    customers,
    expected_members,
    import_rows,
    run_sync,
    setup_link,
    with_spend,
)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 29])
def test_chaos_converges_to_the_exact_list(db: Database, fake: FakeDataManager, seed: int) -> None:
    rng = random.Random(seed)
    rows = customers(600, seed=seed)
    setup_link(db, rows)
    settings = Settings(
        datamanager_endpoint=fake.address, sync_timeout=1, sync_lease=30, sync_batch=100
    )
    refused = set(rng.sample(sorted(expected_members(db)), 3))
    fake.refuse = {member[0] for member in refused}
    fake.chaos(seed, rate=0.5, sleep=1.2)
    clock = Clock()

    for round_ in range(12):
        if round_ < 4:
            moved = rng.sample(rows, 40)
            spend = rng.choice([0.0, 500.0])
            when = NOW + dt.timedelta(minutes=round_ + 1)
            import_rows(db, [with_spend(r, spend) for r in moved], when)
        run_sync(db, settings, clock)
        (status,) = links.status(db)
        if status.next_attempt_at is not None:
            clock.now = max(clock.now, status.next_attempt_at)
        if round_ >= 4 and not (status.pending_adds or status.pending_removes):
            break
    fake.chaos(0, rate=0)
    run_sync(db, dataclasses.replace(settings), clock)

    wanted = expected_members(db)
    still_refused = refused & wanted
    assert fake.members(LIST_ID) == wanted - still_refused
    (status,) = links.status(db)
    assert (status.pending_adds, status.pending_removes) == (0, 0)
    failed = links.failed_members(db, status.link.id)
    assert len(failed) == len(still_refused)
    assert all(reason.startswith("INVALID_AUDIENCE_MEMBER: ") for _, reason in failed)
    # The chaos was real: requests failed in each way along the way.
    with db.read() as conn:
        outcomes = dict(
            conn.execute(
                sa.select(sync_log.c.outcome, sa.func.count()).group_by(sync_log.c.outcome)
            ).all()
        )
    errors = {r.outcome for r in fake.received}
    # Google names refused members: one refused request may carry several.
    assert outcomes.get("retry", 0) >= 2 and outcomes.get("rejected", 0) >= 1, outcomes
    assert {"UNAVAILABLE", "RESOURCE_EXHAUSTED"} <= errors, errors
