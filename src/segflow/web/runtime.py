"""The server's background work: engine ticks and the sync worker, in one thread.

A tick runs on the timer (``SEGFLOW_TICK_SECONDS``) as a safety net; imports
through the API tick their own dataset at once and then :meth:`wake` this
loop, which syncs the resulting adds and removes. Scheduled sync retries
wake it when they fall due. Every pass tells the broadcaster to look.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading

from segflow import engine
from segflow.activation import sync
from segflow.config import Settings
from segflow.db.engine import Database, utcnow
from segflow.errors import describe_failure
from segflow.web.broadcaster import Broadcaster


class Runtime:
    def __init__(self, db: Database, settings: Settings, broadcaster: Broadcaster) -> None:
        self.db = db
        self.settings = settings
        self.broadcaster = broadcaster
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._owner = sync.default_owner()
        self._thread: threading.Thread | None = None
        self._last_tick: dt.datetime | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="segflow-runtime", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Sync now (an import or an edit changed memberships)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
                wait = self._sleep_for()
            except Exception as exc:  # the loop must outlive one failure
                print(
                    f"segflow serve: background pass failed ({describe_failure(exc)})",
                    file=sys.stderr,
                )
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    def step(self) -> None:
        now = utcnow()
        interval = dt.timedelta(seconds=self.settings.tick_seconds - 0.05)
        if self._last_tick is None or now - self._last_tick >= interval:
            engine.tick(self.db, now)
            self._last_tick = now
        self.broadcaster.changed()
        sync.sync(self.db, self.settings, clock=utcnow, owner=self._owner, stop=self._stop.is_set)
        self.broadcaster.changed()

    def _sleep_for(self) -> float:
        if self._last_tick is None:
            return 1.0  # the first tick failed; try again soon
        elapsed = (utcnow() - self._last_tick).total_seconds()
        wait = max(self.settings.tick_seconds - elapsed, 0.05)
        due = sync.next_due(self.db)
        if due is not None:
            wait = min(wait, max(0.05, (due - utcnow()).total_seconds()))
        return wait
