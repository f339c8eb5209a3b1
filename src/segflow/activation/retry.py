"""When to try a link again after a transient failure: a small pure object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter", never below a server's own delay.

    The n-th consecutive failure waits between half and all of
    ``min(cap, base * factor ** (n - 1))`` seconds; ``rand`` in [0, 1) picks
    where, so two workers that failed together do not return together. A
    delay the server asked for (gRPC ``RetryInfo``) is a floor.
    """

    base: float = 2.0
    factor: float = 2.0
    cap: float = 600.0

    def delay(self, attempt: int, rand: float, server_delay: float | None = None) -> float:
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        if not 0.0 <= rand < 1.0:
            raise ValueError("rand must be in [0, 1)")
        ceiling = min(self.cap, self.base * self.factor ** min(attempt - 1, 64))
        wait = ceiling / 2 + rand * ceiling / 2
        if server_delay is not None:
            wait = max(wait, server_delay)
        return wait
