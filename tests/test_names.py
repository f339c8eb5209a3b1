"""Names and ids end where they seem to: a trailing newline is not part of a valid name.

A pattern ending in ``$`` also matches before a final "\\n", so every name and
id pattern is matched whole (``fullmatch``); these tests hold every place a
name is given to that, on both engines, and check that nothing is created.
"""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient

from segflow import auth, datasets, ingest, segments
from segflow.activation import destinations
from segflow.config import Settings
from segflow.db import Database
from segflow.db.records import ident
from segflow.errors import InvalidInput
from segflow.web.app import create_app
from tests.sync_helpers import HIGH_SPEND, NOW, csv_bytes, customers

PASSWORD = "correct horse battery"


def _import(db: Database, name: str) -> None:
    ingest.import_csv(
        db, io.BytesIO(csv_bytes(customers(3))), ingest.ImportOptions(dataset=name, key="id"),
        source="t.csv", now=NOW,
    )  # fmt: skip


def test_a_dataset_name_with_a_trailing_newline_is_refused(db: Database) -> None:
    with pytest.raises(InvalidInput, match="dataset name 'a\\\\n' is not valid"):
        _import(db, "a\n")
    with TestClient(create_app(db, Settings(), background=False)) as client:
        response = client.post(
            "/api/datasets/a%0A/imports", files={"file": ("c.csv", csv_bytes(customers(2)))}
        )
    assert response.status_code == 400, response.text
    assert "dataset name" in response.json()["error"]["message"]
    assert datasets.list_datasets(db) == []


def test_destination_names_and_account_ids_with_a_trailing_newline_are_refused(
    db: Database,
) -> None:
    with pytest.raises(InvalidInput, match="destination name"):
        destinations.add_destination(db, "audience\n", "file", {"path": "out.jsonl"}, NOW)
    # Account ids are trimmed, so a trailing newline never reached the pattern;
    # but "\\d" also took other scripts' digits, which Google's API does not.
    config = {"operating_account_id": "123", "product_destination_id": "\u0664\u0665"}
    with pytest.raises(InvalidInput, match="product_destination_id must be a numeric id"):
        destinations.add_destination(db, "ads", "google_ads", config, NOW)
    assert destinations.list_destinations(db) == []


def test_user_and_workspace_names_with_a_trailing_newline_are_refused(db: Database) -> None:
    before_ws, before_users = auth.list_workspaces(db), auth.list_users(db)
    with pytest.raises(InvalidInput, match="workspace name"):
        auth.add_workspace(db, "team\n", NOW)
    with pytest.raises(InvalidInput, match="user name"):
        auth.add_user(db, "ana\n", PASSWORD, NOW)
    assert (auth.list_workspaces(db), auth.list_users(db)) == (before_ws, before_users)


def test_a_segment_name_never_keeps_a_newline(db: Database) -> None:
    # Segment names are free text, trimmed at both ends; a newline inside is
    # refused as not printable.
    _import(db, "customers")
    made = segments.create_segment(
        db, name="big spenders\n", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    assert made.name == "big spenders"
    with pytest.raises(InvalidInput, match="printable"):
        segments.create_segment(
            db, name="big\nspenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
        )
    assert [s.name for s in segments.list_segments(db)] == ["big spenders"]


def test_a_generated_identifier_with_a_trailing_newline_is_not_quoted() -> None:
    assert ident("sf_rec_1") == '"sf_rec_1"'
    with pytest.raises(ValueError, match="unsafe SQL identifier"):
        ident("sf_rec_1\n")
