"""The server's background work: a thread running :class:`segflow.worker.Worker`.

A tick runs on the timer (``SEGFLOW_TICK_SECONDS``) as a safety net; imports
through the API tick their own dataset at once and then :meth:`Runtime.wake`
this loop, which syncs the resulting adds and removes. Scheduled sync retries
wake it when they fall due. Every pass tells the broadcaster to look, before
and after it syncs.
"""

from __future__ import annotations

import sys
import threading

from segflow.config import Settings
from segflow.db.engine import Database, utcnow
from segflow.errors import describe_failure
from segflow.web.broadcaster import Broadcaster
from segflow.worker import Worker

#: After a failed pass the server tries again this soon.
RETRY_AFTER_FAILURE_S = 1.0


class Runtime:
    def __init__(self, db: Database, settings: Settings, broadcaster: Broadcaster) -> None:
        self.broadcaster = broadcaster
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.worker = Worker(
            db,
            settings,
            interval=settings.tick_seconds,
            clock=utcnow,
            stop=self._stop.is_set,
            tick_every_pass=False,
            after_tick=lambda _report: broadcaster.changed(),
            after_sync=lambda _report: broadcaster.changed(),
        )

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
        self.worker.run(sleep=self._sleep, failed=self._failed)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _failed(self, exc: Exception) -> float:
        print(f"segflow serve: background pass failed ({describe_failure(exc)})", file=sys.stderr)
        return RETRY_AFTER_FAILURE_S
