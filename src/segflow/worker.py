"""The background pass of ``segflow worker`` and ``segflow serve``, and import-then-tick.

A pass ticks the engine when a tick is due, then syncs every due link; after
it the loop sleeps until the next tick or, sooner, the next scheduled sync
retry. The CLI's worker and the server's background thread run the same
:class:`Worker`: they differ only in what they report (the ``after_tick`` and
``after_sync`` callbacks, and ``failed``) and in how they pace ticks
(``tick_every_pass``).

An import ticks the imported dataset's segments at once, so its summary says
who entered and left: :func:`import_and_tick` is that step for the CLI, the
API and the demo alike.

A worker keeps its connections to Google (channels, OAuth tokens) from pass
to pass, one per destination and credentials, and closes them when its loop
ends (``segflow worker`` stopping, ``segflow serve`` shutting down).

The current time comes from the ``clock`` the caller gives; nothing here reads
the system clock on its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, BinaryIO

from segflow import datasets, engine, ingest
from segflow.activation import sync, uploads
from segflow.activation.google.client import Connections
from segflow.config import Settings
from segflow.db.engine import Database
from segflow.progress import ProgressFn

Clock = Callable[[], dt.datetime]

#: The shortest sleep between two passes, even when a sync retry is already due.
MIN_WAIT_S = 0.05
#: The server's sleep when no tick has succeeded yet: try again soon.
FIRST_TICK_RETRY_S = 1.0


def _never() -> bool:
    return False


def _ignore(_report: object) -> None:
    return None


class Worker:
    """One background loop's state: the sync owner name and when it last ticked.

    With ``tick_every_pass`` (``segflow worker``) every pass ticks, including
    one woken early by a sync retry, and the next tick is a full ``interval``
    after the pass. Without it (``segflow serve``, whose loop imports and edits
    also wake) a pass ticks only once ``interval`` has passed since the last
    tick (less 50 ms, so a timer waking on time is not a hair early), and the
    next tick is counted from the last one.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        interval: float,
        clock: Clock,
        stop: Callable[[], bool] = _never,
        tick_every_pass: bool = True,
        after_tick: Callable[[engine.TickReport | None], None] = _ignore,
        after_sync: Callable[[sync.SyncReport], None] = _ignore,
    ) -> None:
        self.db = db
        self.settings = settings
        self.interval = float(interval)
        self.clock = clock
        self.stop = stop
        self.tick_every_pass = tick_every_pass
        self.after_tick = after_tick
        self.after_sync = after_sync
        self.owner = sync.default_owner()
        self.last_tick: dt.datetime | None = None
        self.connections = Connections()

    def run_pass(self) -> None:
        """Tick if a tick is due, then sync; ``after_tick`` gets None when none was due.

        A tick that raises does not keep the sync from running: members the
        last good ticks queued are still sent, in every workspace. The tick's
        failure is raised after the sync, so ``run`` reports it as the pass's.
        """
        now = self.clock()
        report: engine.TickReport | None = None
        failure: Exception | None = None
        if self.tick_every_pass or self._tick_due(now):
            try:
                report = engine.tick(self.db, now)
                self.last_tick = now
            except Exception as exc:
                failure = exc
        if failure is None:
            self.after_tick(report)
        synced = sync.sync(
            self.db,
            self.settings,
            clock=self.clock,
            owner=self.owner,
            stop=self.stop,
            connections=self.connections,
        )
        self.after_sync(synced)
        uploads.poll(
            self.db, self.settings, clock=self.clock, stop=self.stop, connections=self.connections
        )
        if failure is not None:
            raise failure

    def _tick_due(self, now: dt.datetime) -> bool:
        gap = dt.timedelta(seconds=self.interval - 0.05)
        return self.last_tick is None or now - self.last_tick >= gap

    def next_wait(self) -> float:
        """Seconds until the next tick, or until the next sync retry falls due if sooner."""
        if self.tick_every_pass:
            until_tick = self.interval
        elif self.last_tick is None:
            return FIRST_TICK_RETRY_S
        else:
            until_tick = self.interval - (self.clock() - self.last_tick).total_seconds()
        wait = max(until_tick, MIN_WAIT_S)
        due = sync.next_due(self.db)
        if due is not None:
            wait = min(wait, max(MIN_WAIT_S, (due - self.clock()).total_seconds()))
        return wait

    def run(
        self, *, sleep: Callable[[float], object], failed: Callable[[Exception], float]
    ) -> None:
        """Pass after pass until ``stop`` says so.

        ``sleep`` waits between passes (and may return early to wake the loop);
        ``failed`` reports a pass that raised and says how long to wait before
        the next: the loop outlives a lost connection or a restarting server,
        and what was not committed is redone. When it ends, the connections
        to Google are closed.
        """
        try:
            while not self.stop():
                try:
                    self.run_pass()
                    wait = self.next_wait()
                except Exception as exc:
                    wait = failed(exc)
                sleep(wait)
        finally:
            self.close()

    def close(self) -> None:
        """Close the connections to Google this worker kept open."""
        self.connections.close()


def import_and_tick(
    db: Database,
    stream: BinaryIO,
    options: ingest.ImportOptions,
    *,
    source: str,
    clock: Clock,
    total_bytes: int | None = None,
    progress: ProgressFn | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Import one CSV stream, then bring the dataset's segments up to date.

    The summary is the import's, plus ``segments`` (each segment's outcome)
    and ``segments_deferred`` (why they wait for the next tick, or None).
    The import stands even when the tick after it fails.
    """
    summary = ingest.import_csv(
        db,
        stream,
        options,
        source=source,
        now=clock(),
        total_bytes=total_bytes,
        progress=progress,
        settings=settings,
    )
    if options.dry_run:
        # Its segments were ticked inside the import it rolled back.
        summary["segments_deferred"] = None
        return summary
    dataset = datasets.find_dataset(db, options.dataset)
    processed = (
        engine.tick_imported(db, dataset.id, clock())
        if dataset is not None
        else {"segments": [], "deferred": None}
    )
    summary["segments"] = processed["segments"]
    summary["segments_deferred"] = processed["deferred"]
    return summary
