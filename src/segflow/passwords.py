"""Passwords: argon2id hashing, a bound on how many run at once, and the
throttle that makes guessing them slow.

Each argon2 run takes 64 MiB and a core, so at most ``MAX_CONCURRENT_CHECKS``
run at once in a process; one that finds no free slot within ``CHECK_WAIT``
seconds is refused (Throttled, 429).

Sign-ins are throttled per name: after ``MAX_FAILURES`` wrong passwords within
``FAILURE_WINDOW`` the name is locked for ``LOCKOUT``, whoever tries it; and per
client address, after ``MAX_CLIENT_FAILURES``. An attempt is counted as failed
before its password is checked, in one statement per key, and a right password
takes its count back: of N concurrent guesses only the first ``limit`` find the
key unlocked, so no more than that are checked.

Every function takes the current time; nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from segflow.db.engine import Database
from segflow.db.schema import login_failures
from segflow.errors import Throttled

MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)
#: Failed sign-ins from one address, whatever the names, before it is locked
#: out for ``LOCKOUT`` (higher than per name: an office may share an address).
MAX_CLIENT_FAILURES = 30
#: Passwords hashed or checked at once in one process: a burst of sign-ins
#: then takes at most 128 MiB and two cores, and other requests still run.
MAX_CONCURRENT_CHECKS = 2
#: Seconds a sign-in waits for a free slot before it is refused with 429 (and
#: not counted as a failure). About ten checks' time on one core.
CHECK_WAIT = 2.0
#: Sign-ins that may wait for a slot at once. Each waiter holds one of the
#: server's request threads, so past this a burst is refused at once instead
#: of queueing and slowing every other user's requests.
MAX_WAITING = 8

_hasher = PasswordHasher()
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_CHECKS)
_waiting_lock = threading.Lock()
_waiting = 0


def waiting() -> int:
    """How many password checks wait for a free slot right now."""
    return _waiting


@dataclass(frozen=True)
class Key:
    """One throttle: a user name or a client address, its limit, and whose it
    is in the refusal's message."""

    key: str
    limit: int
    whose: str


@contextmanager
def _slot() -> Iterator[None]:
    global _waiting
    busy = Throttled("the server is busy checking other passwords; try again in 1 s", 1)
    if not _SLOTS.acquire(blocking=False):
        with _waiting_lock:
            if _waiting >= MAX_WAITING:
                raise busy
            _waiting += 1
        try:
            # Module state read at call time, so a test can lengthen the wait.
            got = _SLOTS.acquire(timeout=CHECK_WAIT)
        finally:
            with _waiting_lock:
                _waiting -= 1
        if not got:
            raise busy
    try:
        yield
    finally:
        _SLOTS.release()


def hash_password(password: str) -> str:
    with _slot():
        return _hasher.hash(password)


def check_password(db: Database, keys: Sequence[Key], hashed: str, password: str) -> bool:
    """Whether the password matches the hash. An attempt refused for want of a
    free slot was never checked, so the failure counted for it is taken back."""
    try:
        with _slot():
            return bool(_hasher.verify(hashed, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    except Throttled:
        with db.write() as conn:
            refund(conn, keys)
        raise


def count_attempt(db: Database, keys: Sequence[Key], now: dt.datetime) -> None:
    """Count an attempt as failed under every key before its password is
    checked; or, if a key is locked, raise Throttled and count nothing.

    Each key's count is one upsert, which holds the row's lock on PostgreSQL
    and runs under the write lock on SQLite, so concurrent attempts count one
    after another. Keys are taken in the caller's order (always the address,
    then the name), so two attempts never wait on each other's rows.
    """
    with db.write() as conn:  # a Throttled rolls back every key's count
        for key in keys:
            if _counted(conn, key, now):
                continue
            until = conn.execute(
                sa.select(login_failures.c.locked_until).where(login_failures.c.name == key.key)
            ).scalar_one()
            wait = int((until - now).total_seconds()) + 1
            raise Throttled(f"too many failed sign-ins {key.whose}; try again in {wait} s", wait)


def _counted(conn: Connection, key: Key, now: dt.datetime) -> bool:
    """One more failure under this key, locking it at its limit; False (and no
    change) if it is locked already."""
    row = login_failures.c
    restart = row.first_at < now - FAILURE_WINDOW  # the old window is over
    failures = sa.case((restart, 1), else_=row.failures + 1)
    lock = sa.literal(now + LOCKOUT, row.locked_until.type)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    upsert = (
        dialect.insert(login_failures)
        .values(
            name=key.key,
            failures=1,
            first_at=now,
            locked_until=now + LOCKOUT if key.limit <= 1 else None,
        )
        .on_conflict_do_update(
            index_elements=[row.name],
            # Every right-hand side reads the row as it was before this update.
            set_={
                "failures": failures,
                "first_at": sa.case((restart, now), else_=row.first_at),
                "locked_until": sa.case((failures >= key.limit, lock), else_=sa.null()),
            },
            where=sa.or_(row.locked_until.is_(None), row.locked_until <= now),
        )
        .returning(row.failures)
    )
    return conn.execute(upsert).first() is not None


def refund(conn: Connection, keys: Sequence[Key]) -> None:
    """Take back the failure ``count_attempt`` counted (the password was right,
    or never checked), unlocking a key only if that count was what locked it."""
    row = login_failures.c
    for key in keys:
        conn.execute(
            sa.update(login_failures)
            .where(row.name == key.key, row.failures > 0)
            .values(
                failures=row.failures - 1,
                locked_until=sa.case(
                    (row.failures - 1 >= key.limit, row.locked_until), else_=sa.null()
                ),
            )
        )
