"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL.

PostgreSQL tests run whenever ``SEGFLOW_TEST_POSTGRES_URL`` is set (CI sets
it); each test gets its own schema, dropped afterwards. Without the variable
they are skipped, and the skip reason says so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from segflow.activation.fake import FakeDataManager
from segflow.db import Database
from segflow.db.migrations import upgrade
from tests.helpers import CHROMIUM
from tests.sync_helpers import ACCOUNT, LIST_ID

POSTGRES_URL = os.environ.get("SEGFLOW_TEST_POSTGRES_URL")
ENGINES = ("sqlite", "postgresql")


def _pg_schema_url(base: str, schema: str) -> str:
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def fake() -> Iterator[FakeDataManager]:
    """The local Data Manager API double, on a free port, holding the tests' account and list."""
    with FakeDataManager() as server:
        server.add_account(ACCOUNT)
        server.add_list(ACCOUNT, LIST_ID)
        yield server


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files segflow creates by default (segflow.db, segflow.key) land in the test's tmp dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEGFLOW_SECRET_KEY", raising=False)
    monkeypatch.setenv("SEGFLOW_SECRET_KEY_FILE", str(tmp_path / "segflow.key"))


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'segflow.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("SEGFLOW_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    # No pool: a test may drop every connection of the database (test_server_faults).
    admin = sa.create_engine(Database(POSTGRES_URL).url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_schema_url(POSTGRES_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright, one per test module (tests.helpers.needs_chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()
