"""One broadcaster per server process: learns of changes once, fans them out.

A thread reads the segments' counts (``segments.live_counts``) and the links'
sync state (``links.live_states``) in two small queries whenever a change may
have happened: something in this process says so (an import, a tick, a sync),
or, on PostgreSQL, any process's committed write sends ``NOTIFY
segflow_changes``, which a listening connection turns into a wake-up. A timer
(once a second) is the safety net, and how SQLite learns of work done by other
processes (a CLI import, a separate worker). It diffs what it read against
what it last saw and puts one event per change on every subscriber's queue.
The database work per change is those two queries whatever the number of open
streams; :attr:`reads` counts them.

Import progress never touches the database: the import route publishes it
directly.

Every event belongs to one workspace and reaches only the subscribers of
that workspace: a stream never carries another workspace's names or counts.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from segflow import segments
from segflow.activation import links
from segflow.db.engine import CHANGES_CHANNEL, Database

#: Ends a subscriber's stream.
CLOSED = None


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    workspace_id: int


@dataclass(eq=False)
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event | None]
    workspace_id: int


@dataclass
class Broadcaster:
    db: Database
    interval: float = 1.0
    reads: int = 0
    _subscribers: set[_Subscriber] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # id -> (workspace, what a stream shows)
        self._segments: dict[int, tuple[int, dict[str, Any]]] = {}
        self._links: dict[int, tuple[int, dict[str, Any]]] = {}
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        try:
            self._read()
        except Exception:
            pass  # the database is away for now: the thread reads again each second
        self._thread = threading.Thread(target=self._run, name="segflow-broadcaster", daemon=True)
        self._thread.start()
        if self.db.is_postgres:
            threading.Thread(target=self._listen, name="segflow-listen", daemon=True).start()

    def close(self) -> None:
        """End every stream and stop reading."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for sub in subscribers:
            _put(sub, CLOSED)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # -- subscribers

    def subscribe(self, workspace_id: int) -> tuple[_Subscriber, list[Event]]:
        """A new subscriber to one workspace's events, and its current state to send first."""
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(), workspace_id)
        with self._lock:
            if self._stop.is_set():
                sub.queue.put_nowait(CLOSED)
            self._subscribers.add(sub)
            snapshot = [
                Event(kind, dict(data), ws)
                for kind, current in (("segment", self._segments), ("sync", self._links))
                for ws, data in current.values()
                if ws == workspace_id
            ]
        return sub, snapshot

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.workspace_id == event.workspace_id:
                _put(sub, event)

    def changed(self) -> None:
        """Something may have changed: read now rather than at the next interval."""
        self._wake.set()

    # -- reading

    def _listen(self) -> None:
        """PostgreSQL: wake on every committed write of any segflow process."""
        while not self._stop.is_set():
            try:
                raw = self.db.engine.raw_connection()
                pg: Any = raw.driver_connection
                raw.detach()  # ours alone: it never goes back to the pool
                try:
                    pg.rollback()  # the pool's liveness check may have opened one
                    pg.autocommit = True
                    pg.execute(f"LISTEN {CHANGES_CHANNEL}")
                    while not self._stop.is_set():
                        for _ in pg.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
                finally:
                    # Closed here, not by the pool: its reset (a rollback) would
                    # fail on a lost connection and log a traceback.
                    pg.close()
                    raw.invalidate()
            except Exception:  # reconnect after a lost connection
                self._wake.set()  # and re-read: a notification may have been missed
                self._stop.wait(1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._read()
            except Exception:
                continue

    def _read(self) -> None:
        new_segments = segments.live_counts(self.db)
        new_links = links.live_states(self.db)
        self.reads += 2
        events: list[Event] = []
        with self._lock:
            for kind, id_key, old, new in (
                ("segment", "id", self._segments, new_segments),
                ("sync", "link_id", self._links, new_links),
            ):
                for key, (ws, value) in new.items():
                    if old.get(key) != (ws, value):
                        events.append(Event(kind, value, ws))
                for key in old.keys() - new.keys():
                    events.append(Event(kind, {id_key: key, "deleted": True}, old[key][0]))
            self._segments, self._links = new_segments, new_links
        for event in events:
            self.publish(event)


def _put(sub: _Subscriber, event: Event | None) -> None:
    try:
        sub.loop.call_soon_threadsafe(sub.queue.put_nowait, event)
    except RuntimeError:
        pass  # the subscriber's loop has closed
