"""Settings read from the environment, in one place.

Nothing else in segflow reads ``os.environ``: the CLI and the server build a
:class:`Settings` once and pass the values down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from segflow.errors import InvalidInput

DEFAULT_DATABASE_URL = "sqlite:///segflow.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    #: Largest single CSV field accepted, in characters.
    max_field_chars: int = 1_048_576
    #: How many rejected rows an import keeps in detail (all are counted).
    max_reject_details: int = 100_000
    #: Seconds between the worker's safety-net ticks.
    tick_seconds: int = 60

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("SEGFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL,
            max_field_chars=_int(env, "SEGFLOW_MAX_FIELD_CHARS", cls.max_field_chars),
            max_reject_details=_int(env, "SEGFLOW_MAX_REJECT_DETAILS", cls.max_reject_details),
            tick_seconds=_int(env, "SEGFLOW_TICK_SECONDS", cls.tick_seconds),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise InvalidInput(f"{name} must be positive, got {value}")
    return value
