"""What the web layer shares between requests: database, settings, broadcaster,
and the count of event streams each principal holds open."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from segflow.config import Settings
from segflow.db.engine import Database
from segflow.web.broadcaster import Broadcaster


class StreamSlots:
    """At most ``limit`` open event streams per holder (a user; None is the
    local mode's one user), so that one client cannot hold the server's
    connections and memory with streams it never reads.

    Used from the event loop only (the stream route is async), so it needs no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[int | None] = Counter()

    def take(self, holder: int | None) -> bool:
        """A slot for a new stream, if the holder has one left."""
        if self._open[holder] >= self.limit:
            return False
        self._open[holder] += 1
        return True

    def give_back(self, holder: int | None) -> None:
        self._open[holder] -= 1
        if self._open[holder] <= 0:
            del self._open[holder]

    def open(self, holder: int | None) -> int:
        return self._open[holder]


@dataclass
class AppState:
    db: Database
    settings: Settings
    broadcaster: Broadcaster
    #: Asks the background loop to sync now (a no-op without one).
    wake: Callable[[], None] = field(default=lambda: None)
    streams: StreamSlots = field(init=False)

    def __post_init__(self) -> None:
        self.streams = StreamSlots(self.settings.max_streams)
