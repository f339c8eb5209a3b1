"""Forgetting a person: gone from records, segments, history, imports, and the list."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from segflow import cli, datasets, segments
from segflow.activation import links
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import NotFound
from segflow.forget import forget
from tests.helpers import all_rows, do_import
from tests.sync_helpers import (
    LIST_ID,
    NOW,
    converged,
    csv_bytes,
    customers,
    run_sync,
    setup_link,
    with_spend,
)


def _dump(db: Database) -> str:
    """Every table's rows as text, to search for what must be gone."""
    with db.read() as conn:
        names = sa.inspect(conn).get_table_names()
        return "\n".join(
            repr(row) for name in names for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))
        )


def test_a_forgotten_member_is_erased_everywhere_and_removed_from_the_list(
    db: Database, fake: FakeDataManager, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLAlchemy's statements included (its loggers default to WARNING): never their values.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    rows = customers(200)
    setup_link(db, rows)
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=2)
    run_sync(db, settings)
    member = next(r for r in rows if float(r[8]) > 100)
    key, email, phone = member[0], member[1], member[2]
    # A later file repeats the person's key, so an import detail quotes it.
    do_import(db, csv_bytes([member, member]), "customers")
    before = len(fake.members(LIST_ID))

    report = forget(db, "customers", key, NOW + dt.timedelta(minutes=5))

    assert report.segments_left == ["big spenders"]
    assert report.removes_queued == ["ads"]
    assert report.events_scrubbed >= 2 and report.import_details_scrubbed == 1
    run_sync(db, settings)
    assert len(fake.members(LIST_ID)) == before - 1
    assert converged(db, fake)
    dump = _dump(db)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sf_link_members" in logged  # the log was captured
    for value in (email, phone, f"'{key}'", member[3] + "', '" + member[4]):
        assert value not in dump, value
        assert value not in logged, value
    assert key not in segments.member_keys(db, segments.get_segment(db, "big spenders").id)
    assert datasets.get_dataset(db, "customers").record_count == 199
    (status,) = links.status(db)
    assert (status.pending_removes, status.synced) == (0, before - 1)


def test_the_key_can_be_imported_again_as_a_new_record(db: Database) -> None:
    rows = customers(20)
    do_import(db, csv_bytes(rows), "customers", key="id")
    forget(db, "customers", rows[0][0], NOW)
    summary = do_import(db, csv_bytes([with_spend(rows[0], 5)]), "customers")
    assert summary["inserted"] == 1
    assert len(all_rows(db, "customers")) == 21  # the tombstone stays, without the key


def test_forgetting_an_unknown_record_or_dataset_says_so(db: Database) -> None:
    do_import(db, csv_bytes(customers(3)), "customers", key="id")
    with pytest.raises(NotFound, match="no record with key 'nobody'"):
        forget(db, "customers", "nobody", NOW)
    with pytest.raises(NotFound, match="no dataset named 'ghosts'"):
        forget(db, "ghosts", "1", NOW)


def test_the_forget_command_reports_what_was_removed_where(
    db_url: str, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = customers(30)
    do_import(db, csv_bytes(rows), "customers", key="id")
    segments.create_segment(
        db,
        name="all",
        dataset="customers",
        rules_json={"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]},
        now=NOW,
    )
    assert cli.main(["records", "forget", "customers", rows[4][0], "--json", "--db", db_url]) == 0
    report = json.loads(capsys.readouterr()[0])
    assert report["segments_left"] == ["all"] and report["removes_queued"] == []
    assert cli.main(["records", "forget", "customers", "nobody", "--db", db_url]) == 1
