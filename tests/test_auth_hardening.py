"""Sign-in under concurrent guessing, and what a password change ends, on both engines.

Password checks are counted by wrapping argon2's own ``PasswordHasher.verify``
(the real hasher still runs): the number of calls is the number of passwords
checked, and the wrapper records how many ran at once.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from segflow import auth, passwords
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import login_failures
from segflow.errors import NotAuthenticated, Throttled
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.sync_helpers import NOW

PASSWORD = "correct horse battery"
NEW = "a brand new passphrase"
BASE = "https://testserver"  # the session cookie is Secure


@dataclass
class Checks:
    """Calls of argon2's verify: how many, and the most at once."""

    calls: int = 0
    running: int = 0
    most: int = 0
    #: While set, a call waits for it to clear (to hold the slots busy).
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Checks:
    seen = Checks()
    real: Callable[..., Any] = PasswordHasher.verify

    def verify(self: PasswordHasher, hashed: str, password: str) -> Any:
        with seen.lock:
            seen.calls += 1
            seen.running += 1
            seen.most = max(seen.most, seen.running)
        try:
            if seen.hold.is_set():
                seen.entered.release()
                assert seen.release.wait(60)
            return real(self, hashed, password)
        finally:
            with seen.lock:
                seen.running -= 1

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    # Waiting for a slot must not refuse anyone here: the counts below would
    # then depend on how fast this machine hashes.
    monkeypatch.setattr(passwords, "CHECK_WAIT", 600.0)
    monkeypatch.setattr(passwords, "MAX_WAITING", 1_000)
    return seen


@pytest.fixture
def team(db: Database) -> Database:
    auth.add_workspace(db, "beta", NOW)
    auth.add_user(db, "bob", PASSWORD, NOW, member_of=["beta"])
    return db


def _at_once(n: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Run n attempts in n threads released together; each one's result or exception."""
    start = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = attempt(i)
        except Exception as exc:  # the outcome is what is tested
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _outcomes(results: list[Any]) -> dict[str, int]:
    return dict(collections.Counter(type(r).__name__ for r in results))


def test_concurrent_wrong_passwords_for_one_name_are_checked_at_most_the_limit(
    team: Database, checks: Checks
) -> None:
    results = _at_once(
        20, lambda i: auth.login(team, "bob", f"guess {i}", NOW, hours=1, client=f"10.0.0.{i}")
    )
    assert checks.calls == passwords.MAX_FAILURES
    assert _outcomes(results) == {"NotAuthenticated": 5, "Throttled": 15}
    assert checks.most <= passwords.MAX_CONCURRENT_CHECKS
    with pytest.raises(Throttled, match="for 'bob'"):
        auth.login(team, "bob", PASSWORD, NOW, hours=1)


def test_concurrent_guesses_from_one_address_are_checked_at_most_its_limit(
    team: Database, checks: Checks
) -> None:
    n = passwords.MAX_CLIENT_FAILURES + 10
    results = _at_once(
        n, lambda i: auth.login(team, f"guess{i}", "Winter2026!", NOW, hours=1, client="10.9.9.9")
    )
    assert checks.calls == passwords.MAX_CLIENT_FAILURES
    assert _outcomes(results) == {"NotAuthenticated": 30, "Throttled": 10}
    assert checks.most <= passwords.MAX_CONCURRENT_CHECKS
    with pytest.raises(Throttled, match="from this address"):
        auth.login(team, "bob", PASSWORD, NOW, hours=1, client="10.9.9.9")
    # The right password from elsewhere still works, and takes back its count.
    auth.login(team, "bob", PASSWORD, NOW, hours=1, client="10.1.1.1")
    counted = _failures(team)
    assert counted.pop("client:10.9.9.9") == 30
    # A refused attempt counts under no key: its name's count was rolled back.
    assert sorted(counted.values()) == [1] * 30 and "bob" not in counted


def _failures(db: Database) -> dict[str, int]:
    with db.read() as conn:
        rows = conn.execute(sa.select(login_failures.c.name, login_failures.c.failures)).all()
    return {name: count for name, count in rows if count}


def test_right_passwords_are_not_counted_against_the_address(team: Database) -> None:
    for _ in range(passwords.MAX_CLIENT_FAILURES + 5):
        auth.login(team, "bob", PASSWORD, NOW, hours=1, client="10.2.2.2")
    assert _failures(team) == {}
    for _ in range(passwords.MAX_FAILURES - 1):
        with pytest.raises(NotAuthenticated):
            auth.login(team, "bob", "wrong", NOW, hours=1, client="10.2.2.2")
    # The fifth attempt is counted before it is checked, and locks the name
    # until the check finds the password right.
    auth.login(team, "bob", PASSWORD, NOW, hours=1, client="10.2.2.2")
    assert _failures(team) == {"client:10.2.2.2": 4}


def test_a_sign_in_with_no_free_slot_gets_429_and_is_not_counted(
    team: Database, checks: Checks, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks.hold.set()
    busy = [
        threading.Thread(target=_try, args=(team, f"busy{i}"))
        for i in range(passwords.MAX_CONCURRENT_CHECKS)
    ]
    for t in busy:
        t.start()
    for _ in busy:  # every slot is taken, and held
        assert checks.entered.acquire(timeout=60)
    monkeypatch.setattr(passwords, "CHECK_WAIT", 0.0)
    with pytest.raises(Throttled, match="busy checking other passwords") as refused:
        auth.login(team, "bob", PASSWORD, NOW, hours=1, client="10.3.3.3")
    assert refused.value.retry_after == 1
    checks.release.set()
    for t in busy:
        t.join()
    assert checks.most == passwords.MAX_CONCURRENT_CHECKS
    assert "bob" not in _failures(team) and "client:10.3.3.3" not in _failures(team)
    assert auth.login(team, "bob", PASSWORD, NOW, hours=1)[0].user == "bob"


def test_past_max_waiting_a_sign_in_is_refused_at_once_and_not_counted(
    team: Database, checks: Checks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passwords, "MAX_WAITING", 3)
    checks.hold.set()
    threads = [
        threading.Thread(target=_try, args=(team, f"queued{i}"))
        for i in range(passwords.MAX_CONCURRENT_CHECKS + passwords.MAX_WAITING)
    ]
    for t in threads:
        t.start()
    for _ in range(passwords.MAX_CONCURRENT_CHECKS):  # every slot is taken, and held
        assert checks.entered.acquire(timeout=60)
    while passwords.waiting() < passwords.MAX_WAITING:  # the rest queue for a slot
        threading.Event().wait(0.01)
    # CHECK_WAIT is 600 s here: only the cap on waiters can refuse this one.
    # Were it to queue instead, the held slots free after 60 s and it signs in.
    unblock = threading.Timer(60, checks.release.set)
    unblock.start()
    try:
        with pytest.raises(Throttled, match="busy checking other passwords"):
            auth.login(team, "bob", PASSWORD, NOW, hours=1, client="10.4.4.4")
    finally:
        unblock.cancel()
    checks.release.set()
    checks.hold.clear()
    for t in threads:
        t.join()
    assert passwords.waiting() == 0
    assert "bob" not in _failures(team) and "client:10.4.4.4" not in _failures(team)


def _try(db: Database, name: str) -> None:
    with pytest.raises(NotAuthenticated):
        auth.login(db, name, "wrong", NOW, hours=1)


@pytest.fixture
def server(team: Database) -> Iterator[str]:
    with live_server(team, Settings(auth=True), poll_interval=60) as running:
        yield running.url


def test_the_server_checks_concurrent_wrong_passwords_at_most_the_limit(
    server: str, checks: Checks
) -> None:
    with httpx.Client(base_url=server) as client:
        # Each request from its own thread: the server sees them all at once.
        responses = _at_once(
            20,
            lambda i: (
                client.post(
                    "/api/auth/login", json={"name": "bob", "password": f"guess {i}"}
                ).status_code
            ),
        )
    assert checks.calls == passwords.MAX_FAILURES
    assert collections.Counter(responses) == {401: 5, 429: 15}
    assert checks.most <= passwords.MAX_CONCURRENT_CHECKS


# ------------------------------------------------- a password change ends tokens


def _token_works(db: Database, secret: str) -> bool:
    return auth.token_principal(db, secret, NOW) is not None


def test_an_operators_password_reset_ends_sessions_and_api_tokens(team: Database) -> None:
    _, token = auth.create_token(team, "bob", "beta", "ci", NOW)
    _, session = auth.login(team, "bob", PASSWORD, NOW, hours=1)
    assert _token_works(team, token)
    auth.set_password(team, "bob", NEW, NOW)
    assert not _token_works(team, token)
    assert auth.session_principal(team, session, NOW) is None
    (listed,) = auth.list_tokens(team, "bob")
    assert listed["revoked_at"] == NOW.isoformat()


def test_changing_ones_password_ends_api_tokens_and_other_sessions(team: Database) -> None:
    _, token = auth.create_token(team, "bob", "beta", "ci", NOW)
    _, mine = auth.login(team, "bob", PASSWORD, NOW, hours=1)
    _, other = auth.login(team, "bob", PASSWORD, NOW, hours=1)
    auth.change_password(team, "bob", PASSWORD, NEW, mine, NOW)
    assert not _token_works(team, token)
    assert auth.session_principal(team, other, NOW) is None
    assert auth.session_principal(team, mine, NOW) is not None
    # A token made afterwards works.
    _, fresh = auth.create_token(team, "bob", "beta", "after", NOW)
    assert _token_works(team, fresh)


def test_a_token_gets_401_after_its_user_changes_the_password_through_the_api(
    team: Database,
) -> None:
    _, token = auth.create_token(team, "bob", "beta", "ci", NOW)
    bearer = {"Authorization": f"Bearer {token}"}
    app = create_app(team, Settings(auth=True), background=False)
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/api/segments", headers=bearer).status_code == 200
        signed_in = client.post("/api/auth/login", json={"name": "bob", "password": PASSWORD})
        changed = client.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW},
            headers={"X-CSRF-Token": signed_in.json()["csrf_token"]},
        )
        assert changed.status_code == 204
        assert client.get("/api/segments", headers=bearer).status_code == 401
        assert client.get("/api/segments").status_code == 200  # this session stays
