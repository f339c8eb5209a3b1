"""What the web layer shares between requests: database, settings, broadcaster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from segflow.config import Settings
from segflow.db.engine import Database
from segflow.web.broadcaster import Broadcaster


@dataclass
class AppState:
    db: Database
    settings: Settings
    broadcaster: Broadcaster
    #: Asks the background loop to sync now (a no-op without one).
    wake: Callable[[], None] = field(default=lambda: None)
