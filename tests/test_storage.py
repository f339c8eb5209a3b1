"""Engine setup and schema migrations on both engines."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from segflow.db import Database
from segflow.db.engine import normalise_url
from segflow.db.migrations import MIGRATIONS, current_version, upgrade
from segflow.errors import InvalidInput
from tests.helpers import do_import


def test_upgrade_applies_each_migration_once(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert current_version(db) == 0
        applied = upgrade(db)
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
        assert upgrade(db) == []
        assert current_version(db) == MIGRATIONS[-1].version
    finally:
        db.dispose()


def test_concurrent_upgrades_do_not_collide(db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        db = Database(db_url)
        try:
            upgrade(db)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 60_000
    finally:
        db.dispose()


def test_sqlite_writers_queue_instead_of_failing(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    first = Database(url)
    upgrade(first)
    errors: list[BaseException] = []

    def importer(n: int) -> None:
        db = Database(url)
        try:
            do_import(db, b"id,v\n%d,x\n" % n, dataset=f"d{n}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=importer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with first.read() as conn:
        assert conn.exec_driver_sql("SELECT value FROM sf_change_sequence").scalar() == 6
    first.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "segflow needs an SQLite file, not an in-memory database"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+asyncpg://h/db", "unsupported PostgreSQL driver 'postgresql+asyncpg'"),
        ("not a url", "database URL 'not a url' is not valid"),
    ],
)
def test_unsupported_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace("+", r"\+")):
        normalise_url(url)


def test_postgres_urls_use_psycopg_3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"


def test_passwords_are_not_displayed() -> None:
    db = Database("postgresql://user:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in db.display_url
    assert sa.engine.make_url(db.display_url).password == "***"
    db.dispose()


def test_sqlite_files_segflow_creates_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = Database(f"sqlite:///{path}")
    try:
        upgrade(db)
        do_import(db, b"id,email\n1,a@example.com\n")
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode) == 0o600, suffix
    finally:
        db.dispose()


def test_an_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    # The user chose this mode (a group that shares the database, say).
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    db = Database(f"sqlite:///{path}")
    try:
        upgrade(db)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        db.dispose()


def test_an_sqlite_file_that_cannot_be_created_is_a_database_error(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/missing/x.db")
    try:
        with pytest.raises(sa.exc.OperationalError, match="unable to open"):
            upgrade(db)
    finally:
        db.dispose()
