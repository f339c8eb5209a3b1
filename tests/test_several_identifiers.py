"""Several email and phone columns per member (issue 17 item 7).

CRM exports carry ``email``, ``email_2``, ``work_email``, ``mobile``,
``phone``: every column of a kind is detected, every valid distinct value is
sent (at most 10 identifiers a member, emails first), and the import's
identifier summary counts each column and the members with several.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from segflow import datasets, engine, ingest, segments
from segflow.activation import identifiers as ids
from segflow.activation import links, mapping
from segflow.activation.fake import FakeDataManager
from segflow.cli import main
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import identifier_maps
from segflow.errors import InvalidInput
from segflow.web.app import create_app
from tests.sync_helpers import LIST_ID, NOW, csv_bytes, google_destination, run_sync

HEADER = ("id", "email", "email_2", "work_email", "mobile", "phone", "phone_2", "spend")
ROWS = [
    # Three emails (one repeating another) and two distinct phones.
    (
        "1",
        "Ann@Example.com",
        "ann@example.com ",
        "ann.w@corp.example",
        "(415) 555-0101",
        "+1 415 555 0102",
        "",
        "500",
    ),
    # One of each, and an invalid second email.
    ("2", "bo@example.com", "not-an-email", "", "", "(415) 555-0103", "", "500"),
]
EVERYONE = {"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]}


def _import(db: Database, rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> dict:
    summary = ingest.import_csv(
        db,
        io.BytesIO(csv_bytes(rows, header)),
        ingest.ImportOptions(dataset="customers", key="id"),
        source="crm.csv",
        now=NOW,
    )
    engine.tick(db, NOW)
    return summary


def test_every_email_and_phone_column_is_detected_in_header_order(db: Database) -> None:
    _import(db, ROWS)
    detected, chosen = mapping.show_mapping(db, "customers")
    assert not chosen
    assert detected.email == ("email", "email_2", "work_email")
    assert detected.phone == ("mobile", "phone", "phone_2")


def test_the_import_counts_each_column_and_members_with_several(db: Database) -> None:
    summary = _import(db, ROWS)
    by_column = {q["column"]: (q["kind"], q["valid"], q["invalid"]) for q in summary["identifiers"]}
    assert by_column["email_2"] == ("email", 1, 1)
    assert by_column["work_email"] == ("email", 1, 0)
    assert by_column["mobile"] == ("phone", 1, 0)
    assert by_column["phone"] == ("phone", 2, 0)
    # Member 1: two distinct emails (two cells are one address), two phones.
    assert summary["identifier_members"] == {"several": {"email": 1, "phone": 1}}


def test_every_valid_distinct_identifier_is_sent(db: Database, fake: FakeDataManager) -> None:
    _import(db, ROWS)
    segments.create_segment(db, name="all", dataset="customers", rules_json=EVERYONE, now=NOW)
    google_destination(db)
    links.link(db, "all", "ads", NOW)
    run_sync(db, Settings(datamanager_endpoint=fake.address, sync_timeout=5))
    e = [f"e:{ids.sha256_hex(v)}" for v in ("ann@example.com", "ann.w@corp.example")]
    p = [f"p:{ids.sha256_hex(v)}" for v in ("+14155550101", "+14155550102")]
    ann = tuple(sorted(e + p))
    bo = tuple(
        sorted([f"e:{ids.sha256_hex('bo@example.com')}", f"p:{ids.sha256_hex('+14155550103')}"])
    )
    assert fake.members(LIST_ID) == {ann, bo}


def test_at_most_ten_identifiers_emails_first_and_the_rest_counted() -> None:
    columns = tuple(f"e{i}" for i in range(8))
    m = ids.Mapping(
        email=columns,
        phone=("m", "p"),
        first_name="f",
        last_name="l",
        country="c",
        postal_code="z",
    )
    record: dict[str, str | None] = {c: f"user{i}@example.com" for i, c in enumerate(columns)}
    record |= {"m": "(415) 555-0101", "p": "(415) 555-0102"}
    record |= {"f": "Ann", "l": "Lee", "c": "US", "z": "94043"}
    capped = ids.Capped()
    found = ids.identifiers_for(record, m, capped=capped)
    assert len(found.email_hashes) == 8 and len(found.phone_hashes) == 2
    assert found.address is None  # the eleventh, past the limit
    assert (capped.members, capped.identifiers) == (1, 1)
    codes = ids.encode(found)
    assert len(codes) == 10 and ids.decode(codes) == found
    record |= {"e7": ""}  # ten: nothing left out
    assert ids.identifiers_for(record, m, capped=capped).address is not None
    assert capped.identifiers == 1


def test_an_old_single_column_mapping_is_read_as_a_list(db: Database) -> None:
    _import(db, ROWS)
    dataset = datasets.find_dataset(db, "customers")
    assert dataset is not None
    with db.write() as conn:
        conn.execute(
            sa.insert(identifier_maps).values(
                dataset_id=dataset.id,
                mapping={"email": "work_email", "phone": "mobile", "default_region": "US"},
                updated_at=NOW,
            )
        )
    stored, chosen = mapping.show_mapping(db, "customers")
    assert chosen and (stored.email, stored.phone) == (("work_email",), ("mobile",))


def test_several_columns_are_set_as_a_list_or_comma_separated(db: Database) -> None:
    _import(db, ROWS)
    changed = mapping.set_mapping(db, "customers", {"email": "work_email, email"}, NOW)
    assert changed.email == ("work_email", "email")
    changed = mapping.set_mapping(db, "customers", {"phone": ["phone_2", "mobile"]}, NOW)
    assert changed.phone == ("phone_2", "mobile") and changed.email == ("work_email", "email")
    with pytest.raises(InvalidInput, match="no column 'fax'"):
        mapping.set_mapping(db, "customers", {"phone": "mobile,fax"}, NOW)
    assert mapping.show_mapping(db, "customers")[0].phone == ("phone_2", "mobile")
    assert mapping.set_mapping(db, "customers", {"email": ""}, NOW).email == ()


def test_the_cli_sets_several_columns(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes(csv_bytes(ROWS, HEADER))
    assert main(["import", str(path), "--dataset", "crm", "--key", "id", "--db", db_url]) == 0
    argv = ["identifiers", "crm", "--email", "email,work_email"]
    assert main([*argv, "--phone", "mobile,phone", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "email                       email, work_email" in out
    assert "phone                       mobile, phone" in out
    assert main(["identifiers", "crm", "--db", db_url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mapping"]["email"] == ["email", "work_email"]


def test_the_api_sets_several_columns(db: Database) -> None:
    _import(db, ROWS)
    app = create_app(db, Settings(), background=False)
    with TestClient(app) as client:
        answer = client.patch(
            "/api/datasets/customers/identifiers",
            json={"email": ["work_email", "email"], "phone": "phone, mobile"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["email"] == ["work_email", "email"]
        assert answer.json()["phone"] == ["phone", "mobile"]
        info = client.get("/api/datasets/customers").json()
        assert info["identifier_mapping"]["phone"] == ["phone", "mobile"]
        refused = client.patch("/api/datasets/customers/identifiers", json={"email": ["nope"]})
        assert refused.status_code == 400 and "no column 'nope'" in refused.text
