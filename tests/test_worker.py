"""The one background pass (segflow worker and serve) and import-then-tick, with a fake clock."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

from segflow import ingest, segments, worker
from segflow.config import Settings
from segflow.db import Database
from tests.helpers import NOW

CSV = b"id,spend\n1,10\n2,200\n3,300\n"
RULES = {"conditions": [{"field": "spend", "operator": "greater_than", "value": 100}]}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _import(db: Database, clock: Clock, data: bytes = CSV) -> dict[str, Any]:
    return worker.import_and_tick(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(dataset="people", key="id"),
        source="people.csv",
        clock=clock,
    )


def test_import_and_tick_reports_the_segments_it_brought_up_to_date(db: Database) -> None:
    clock = Clock()
    first = _import(db, clock)
    assert first["segments"] == [] and first["segments_deferred"] is None
    segments.create_segment(db, name="big", dataset="people", rules_json=RULES, now=clock())
    clock.advance(1)
    again = _import(db, clock, CSV + b"4,400\n")
    assert [(o["name"], o["entered"]) for o in again["segments"]] == [("big", 1)]
    assert segments.member_keys(db, "big") == {"2", "3", "4"}


def test_the_worker_ticks_every_pass_and_waits_a_full_interval(db: Database) -> None:
    clock = Clock()
    ticks: list[object] = []
    synced: list[object] = []
    loop = worker.Worker(
        db,
        Settings(),
        interval=30,
        clock=clock,
        after_tick=ticks.append,
        after_sync=synced.append,
    )
    loop.run_pass()
    clock.advance(5)
    loop.run_pass()
    assert len(ticks) == 2 and all(t is not None for t in ticks) and len(synced) == 2
    assert loop.next_wait() == 30.0


def test_serve_paces_ticks_by_the_interval_since_the_last(db: Database) -> None:
    clock = Clock()
    ticks: list[object] = []
    loop = worker.Worker(
        db, Settings(), interval=30, clock=clock, tick_every_pass=False, after_tick=ticks.append
    )
    assert loop.next_wait() == worker.FIRST_TICK_RETRY_S  # no tick yet
    loop.run_pass()
    clock.advance(10)
    loop.run_pass()  # woken early (an import): syncs without ticking
    assert ticks[0] is not None and ticks[1] is None
    assert loop.next_wait() == 20.0
    clock.advance(19.96)  # within 50 ms of the interval counts as due
    loop.run_pass()
    assert ticks[2] is not None
    clock.advance(40)
    assert loop.next_wait() == worker.MIN_WAIT_S


def test_the_loop_outlives_a_failed_pass_and_stops_when_told(db: Database) -> None:
    clock = Clock()
    passes = 0
    waits: list[float] = []

    def after_tick(_report: object) -> None:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise RuntimeError("lost the connection")

    loop = worker.Worker(
        db,
        Settings(),
        interval=30,
        clock=clock,
        stop=lambda: passes >= 2,
        after_tick=after_tick,
    )
    failures: list[str] = []

    def failed(exc: Exception) -> float:
        failures.append(str(exc))
        return 1.5

    loop.run(sleep=waits.append, failed=failed)
    assert failures == ["lost the connection"] and waits == [1.5, 30.0]
