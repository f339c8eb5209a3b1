"""Helpers for activation tests: a customer dataset, a linked segment, a fake clock."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from segflow import datasets, demo, engine, ingest, segments
from segflow.activation import destinations, links, mapping, platforms, transport
from segflow.activation import identifiers as ids
from segflow.activation.fake import FakeDataManager
from segflow.activation.sync import SyncReport, sync
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import link_members

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
LIST_ID = "7001"
ACCOUNT = "1234567890"

HIGH_SPEND = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 100}]}


@dataclass
class Clock:
    now: dt.datetime = NOW
    step: dt.timedelta = field(default_factory=lambda: dt.timedelta(milliseconds=1))

    def __call__(self) -> dt.datetime:
        # Every reading moves a little, as real time does.
        self.now += self.step
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def csv_bytes(rows: list[tuple[str, ...]], header: tuple[str, ...] = demo.HEADER) -> bytes:
    """Customer rows as a CSV file with the demo's header."""
    import csv

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def import_rows(db: Database, rows: list[tuple[str, ...]], when: dt.datetime = NOW) -> None:
    ingest.import_csv(
        db,
        io.BytesIO(csv_bytes(rows)),
        ingest.ImportOptions(dataset="customers", key="id"),
        source="customers.csv",
        now=when,
    )
    engine.tick(db, when)


def customers(count: int, seed: int = 7, start_id: int = 1) -> list[tuple[str, ...]]:
    return list(demo.rows(count, seed=seed, start_id=start_id))


def with_spend(row: tuple[str, ...], spend: float) -> tuple[str, ...]:
    out = list(row)
    out[demo.HEADER.index("lifetime_spend")] = f"{spend:.2f}"
    return tuple(out)


def google_destination(
    db: Database, name: str = "ads", list_id: str = LIST_ID, **config: Any
) -> destinations.Destination:
    settings = {
        "operating_account_id": ACCOUNT,
        "product_destination_id": list_id,
        "terms_accepted": True,
        # Consent is a required choice; the suite's lists are granted.
        "ad_user_data": destinations.GRANTED,
        "ad_personalization": destinations.GRANTED,
    }
    settings.update(config)
    return destinations.add_destination(db, name, destinations.GOOGLE_ADS, settings, NOW)


def setup_link(
    db: Database,
    rows: list[tuple[str, ...]],
    rules: Any = None,
    destination: str = "ads",
    **config: Any,
) -> links.Link:
    import_rows(db, rows)
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=rules or HIGH_SPEND, now=NOW
    )
    google_destination(db, destination, **config)
    return links.link(db, "big spenders", destination, NOW)


def run_sync(
    db: Database, settings: Settings, clock: Clock | None = None, **kwargs: Any
) -> SyncReport:
    # rand=0: the shortest backoff, so tests can step the clock predictably.
    return sync(db, settings, clock=clock or Clock(), rand=lambda: 0.0, **kwargs)


def expected_members(db: Database, segment: str = "big spenders") -> set[tuple[str, ...]]:
    """What the list should hold: each member's identifiers, as the fake keys them."""
    dataset = datasets.find_dataset(db, "customers")
    assert dataset is not None
    with db.read() as conn:
        current, _ = mapping.mapping_for(conn, dataset)
    out = set()
    cursor = None
    while True:
        page, cursor = segments.list_members(db, segment, limit=5000, after=cursor)
        for item in page:
            codes = ids.encode(ids.identifiers_for(item["record"], current))
            if codes:
                out.add(tuple(sorted(codes)))
        if cursor is None:
            return out


def sync_rows(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    link_members.c.rid,
                    link_members.c.want,
                    link_members.c.have,
                    link_members.c.pending,
                    link_members.c.rejected,
                ).order_by(link_members.c.rid)
            )
        ]


def converged(db: Database, fake: FakeDataManager, list_id: str = LIST_ID) -> bool:
    return fake.members(list_id) == expected_members(db)


def spawn_segflow(
    argv: list[str], fake: FakeDataManager, log: Path, *, batch: int = 60
) -> subprocess.Popen[bytes]:
    """A ``segflow`` process (worker, serve) syncing to the fake in small batches
    with short leases, its stderr appended to ``log``."""
    env = {
        **os.environ,
        "SEGFLOW_DATAMANAGER_ENDPOINT": fake.address,
        "SEGFLOW_SYNC_BATCH": str(batch),
        "SEGFLOW_SYNC_TIMEOUT": "5",
        "SEGFLOW_SYNC_LEASE": "2",
        "SEGFLOW_TICK_SECONDS": "1",
    }
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "segflow.cli", *argv],
            env=env,
            cwd=log.parent,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, nothing catches it."""


class DyingSender:
    """A real sender that dies before or after sending the operation named
    (``"any"``: whichever comes first)."""

    def __init__(
        self, inner: transport.Sender, *, before: str | None = None, after: str | None = None
    ) -> None:
        self.inner, self.before, self.after = inner, before, after

    def send(self, operation: str, members: list[transport.OutMember]) -> str:
        if self.before in (operation, "any"):
            raise Crash
        answer = self.inner.send(operation, members)
        if self.after in (operation, "any"):
            raise Crash
        return answer

    def close(self) -> None:
        self.inner.close()


def dying(*, before: str | None = None, after: str | None = None) -> Any:
    """``senders=`` for a sync pass whose process dies around one operation."""
    return lambda d, s, st: DyingSender(
        platforms.build_sender(d, s, st), before=before, after=after
    )
