"""Consent: a destination's is chosen, a record's unclear value is denied and reported.

Google needs ad_user_data and ad_personalization for users in the EEA. These
tests pin what a user relies on: a google_ads destination is refused without
both (library, CLI, API), an upgrade keeps what older destinations sent and
names them, a per-record value segflow does not recognise reaches Google as
CONSENT_DENIED, and the import summary and link status count such values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from segflow import engine, ingest, segments
from segflow.activation import destinations, links, mapping
from segflow.activation import identifiers as ids
from segflow.activation.fake import FakeDataManager
from segflow.activation.outgoing import consent_value
from segflow.cli import main
from segflow.config import Settings
from segflow.db import Database
from segflow.db.migrations import MIGRATIONS, upgrade
from segflow.errors import InvalidInput
from segflow.ingest.consent import MAX_EXAMPLES, classify
from segflow.web.app import create_app
from tests.sync_helpers import ACCOUNT, LIST_ID, NOW, google_destination, run_sync
from tests.test_import_arrow import unseekable

GRANTED = "granted"
CONSENT_GRANTED, CONSENT_DENIED = 1, 2  # ConsentStatus values on the wire

# (cell as written, what is sent, counted as unrecognised)
CELLS = [
    ("granted", "granted", False),
    ("GRANTED", "granted", False),
    (" yes ", "granted", False),
    ("Y", "granted", False),
    ("true", "granted", False),
    ("T", "granted", False),
    ("1", "granted", False),
    ("opt-in", "granted", False),
    ("Opted In", "granted", False),
    ("opted_in", "granted", False),
    ("denied", "denied", False),
    ("no", "denied", False),
    ("n", "denied", False),
    ("FALSE", "denied", False),
    ("f", "denied", False),
    ("0", "denied", False),
    ("opt-out", "denied", False),
    ("OPTED OUT", "denied", False),
    ("withdrawn", "denied", False),
    ("revoked", "denied", False),
    ("unsubscribed", "denied", False),
    # Not a clear answer: denied, never the destination's granted default.
    ("unknown", "denied", True),
    ("N/A", "denied", True),
    ("pending", "denied", True),
    ("maybe", "denied", True),
    ("null", "denied", True),
    ("2", "denied", True),
    ("grantd", "denied", True),
    # No value: the destination's consent.
    ("", None, False),
    ("   ", None, False),
    (None, None, False),
]


@pytest.mark.parametrize(("cell", "sent", "unclear"), CELLS)
def test_a_consent_cell_reads_as_granted_denied_or_the_destination_default(
    cell: str | None, sent: str | None, unclear: bool
) -> None:
    assert consent_value(cell) == sent
    assert (classify(cell) == "unrecognised") is unclear


# ---------------------------------------------------------------- the destination's choice

GOOGLE = {"operating_account_id": ACCOUNT, "product_destination_id": LIST_ID}


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "ad_user_data and ad_personalization are missing"),
        ({"ad_user_data": "granted"}, "ad_personalization is missing"),
        ({"ad_personalization": "denied"}, "ad_user_data is missing"),
        ({"ad_user_data": "", "ad_personalization": "granted"}, "ad_user_data is missing"),
    ],
)
def test_a_google_ads_destination_without_chosen_consent_is_refused(
    db: Database, given: dict[str, str], missing: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        destinations.add_destination(db, "ads", destinations.GOOGLE_ADS, GOOGLE | given, NOW)
    message = str(refused.value)
    assert missing in message
    assert "personalised advertising" in message and "EEA" in message
    assert "--ad-user-data granted|denied" in message
    assert destinations.list_destinations(db) == []


def test_a_chosen_consent_is_kept_and_sent_as_the_default(db: Database) -> None:
    added = destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        GOOGLE | {"ad_user_data": "Denied", "ad_personalization": "granted"},
        NOW,
    )
    assert added.consent == ("denied", "granted")
    changed = destinations.update_destination(db, "ads", {"terms_accepted": True}, NOW)
    assert changed.consent == ("denied", "granted")


def test_a_file_destination_records_granted_unless_chosen(db: Database, tmp_path: Path) -> None:
    plain = destinations.add_destination(
        db, "dry", destinations.FILE, {"path": str(tmp_path / "a.jsonl")}, NOW
    )
    assert plain.consent == ("granted", "granted")
    chosen = destinations.add_destination(
        db,
        "dry2",
        destinations.FILE,
        {"path": str(tmp_path / "b.jsonl"), "ad_user_data": "denied"},
        NOW,
    )
    assert chosen.consent == ("denied", "granted")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_refuses_google_ads_without_consent_and_explains_it(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("destinations", "add", "google_ads", "ads", "--operating-account-id", ACCOUNT,
            "--list-id", LIST_ID, "--db", db_url)  # fmt: skip
    code, out, err = _cli(capsys, *base, "--ad-user-data", "granted")
    assert code == 1
    assert "ad_personalization is missing" in err and "--ad-personalization" in err
    code, out, err = _cli(capsys, *base, "--ad-user-data", "granted", "--ad-personalization",
                          "denied")  # fmt: skip
    assert code == 0, err
    assert "consent ad_user_data=granted, ad_personalization=denied" in out
    with pytest.raises(SystemExit):
        main(["destinations", "add", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "European Economic Area" in help_text and "there is no default" in help_text
    assert "sent as denied" in help_text


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db, Settings(), background=False)) as test_client:
        yield test_client


def test_the_api_refuses_google_ads_without_consent(client: TestClient) -> None:
    body: dict[str, Any] = {"name": "ads", "kind": "google_ads", "config": dict(GOOGLE)}
    refused = client.post("/api/destinations", json=body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_input"
    assert "ad_user_data and ad_personalization are missing" in error["message"]
    body["config"].update(ad_user_data="denied", ad_personalization="denied")
    made = client.post("/api/destinations", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["config"]["ad_personalization"] == "denied"


# ---------------------------------------------------------------- upgrading


def _at_migration_5(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import segflow.db.migrations as migrations

    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:5])
    upgrade(db)
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    ts = "'2026-01-01 00:00:00'"
    rows = [
        # As segflow wrote it: consent written out, granted when nobody chose.
        (
            "ads",
            "google_ads",
            GOOGLE | {"ad_user_data": "granted", "ad_personalization": "granted"},
        ),
        # Chosen: denied was never a default.
        ("eu", "google_ads", GOOGLE | {"ad_user_data": "denied", "ad_personalization": "denied"}),
        # Made by hand or by an older segflow: no consent at all.
        ("bare", "google_ads", dict(GOOGLE)),
        ("dry", "file", {"path": "/tmp/x.jsonl"}),
    ]
    with db.write() as conn:
        for name, kind, config in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO sf_destinations (name, kind, config, created_at, updated_at) "
                    f"VALUES (:name, :kind, :config, {ts}, {ts})"
                ),
                {"name": name, "kind": kind, "config": json.dumps(config)},
            )


def test_the_upgrade_writes_consent_out_and_names_destinations_never_chosen(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(db_url)
    try:
        _at_migration_5(db, monkeypatch)
        notices: list[str] = []
        assert [m.version for m in upgrade(db, notices)][0] == 6
        by_name = {d.name: d for d in destinations.list_destinations(db)}
        # Nothing changes what is sent...
        assert by_name["ads"].consent == ("granted", "granted")
        assert by_name["eu"].consent == ("denied", "denied")
        assert by_name["bare"].consent == ("granted", "granted")
        assert by_name["dry"].consent == ("granted", "granted")
        # ...and every value is now in the stored config.
        assert all("ad_user_data" in d.config for d in by_name.values())
        told = "\n".join(notices)
        assert (
            "destination 'bare': consent was never chosen; kept ad_user_data=granted, "
            "ad_personalization=granted as before; change with segflow destinations update "
            "'bare' --ad-user-data granted|denied" in told
        )
        assert (
            "destination 'ads': consent ad_user_data=granted, ad_personalization=granted "
            "may be the old default" in told
        )
        assert "'dry': consent was never chosen" in told
        assert "'eu'" not in told
        later: list[str] = []
        assert upgrade(db, later) == [] and later == []
    finally:
        db.dispose()


def test_segflow_prints_the_upgrade_notices(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database(db_url)
    try:
        _at_migration_5(db, monkeypatch)
    finally:
        db.dispose()
    code, out, err = _cli(capsys, "destinations", "list", "--db", db_url)
    assert code == 0
    assert "segflow: destination 'bare': consent was never chosen; kept" in err
    assert "segflow: destination 'ads': consent" in err
    code, out, err = _cli(capsys, "destinations", "list", "--db", db_url)
    assert "consent" not in err  # told once, when the upgrade ran


# ---------------------------------------------------------------- per-record consent

HEADER = ("id", "email", "lifetime_spend", "ad_user_data", "ad_personalization")
SPENDERS = {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 100}]}
# id -> (ad_user_data cell, ad_personalization cell)
PEOPLE = {
    1: ("yes", "yes"),
    2: ("withdrawn", "no"),
    3: ("unknown", "granted"),
    4: ("", ""),
    5: ("N/A", "opt-out"),
    6: ("granted", "maybe"),
}


def _csv(rows: list[tuple[object, ...]], header: tuple[str, ...] = HEADER) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _people() -> list[tuple[object, ...]]:
    return [(i, f"p{i}@example.com", 500, *cells) for i, cells in PEOPLE.items()]


def _import(db: Database, data: bytes, settings: Settings | None = None) -> dict[str, Any]:
    summary = ingest.import_csv(
        db,
        io.BytesIO(data),
        ingest.ImportOptions(dataset="people", key="id"),
        source="people.csv",
        now=NOW,
        settings=settings,
    )
    engine.tick(db, NOW)
    return summary


def _email_hash(i: int) -> str:
    found = ids.identifiers_for({"email": f"p{i}@example.com"}, ids.Mapping(email=("email",)))
    (email,) = found.email_hashes
    return email


def _people_synced(db: Database, fake: FakeDataManager) -> Settings:
    """The people linked to a google_ads destination (granted, granted) and synced once."""
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=30)
    _import(db, _csv(_people()))
    segments.create_segment(db, name="s", dataset="people", rules_json=SPENDERS, now=NOW)
    google_destination(db, "ads")
    links.link(db, "s", "ads", NOW)
    assert run_sync(db, settings).ok
    return settings


def _member_consent(request: Any) -> dict[str, tuple[int | None, int | None]]:
    """Each member's own consent in a received request, by its email hash."""
    return {
        m.user_data.user_identifiers[0].email_address: (
            m.consent.ad_user_data if m.HasField("consent") else None,
            m.consent.ad_personalization if m.HasField("consent") else None,
        )
        for m in request.audience_members
    }


def test_an_unrecognised_record_value_reaches_google_as_denied(
    db: Database, fake: FakeDataManager
) -> None:
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=30)
    _import(db, _csv(_people()))
    segments.create_segment(db, name="s", dataset="people", rules_json=SPENDERS, now=NOW)
    google_destination(db, "ads")  # granted, granted
    links.link(db, "s", "ads", NOW)
    assert run_sync(db, settings).ok

    (request,) = fake.requests("IngestAudienceMembers")
    assert (request.consent.ad_user_data, request.consent.ad_personalization) == (
        CONSENT_GRANTED,
        CONSENT_GRANTED,
    )
    by_hash = _member_consent(request)
    g, d = CONSENT_GRANTED, CONSENT_DENIED
    assert by_hash[_email_hash(1)] == (g, g)
    assert by_hash[_email_hash(2)] == (d, d)  # withdrawn, no
    assert by_hash[_email_hash(3)] == (d, g)  # unknown: denied, not the granted default
    assert by_hash[_email_hash(4)] == (None, None)  # empty: the request's (destination's)
    assert by_hash[_email_hash(5)] == (d, d)  # N/A, opt-out
    assert by_hash[_email_hash(6)] == (g, d)  # maybe

    (status,) = links.status(db)
    # 3 (unknown), 5 (N/A) and 6 (maybe) hold an unrecognised value; 2's are clear.
    assert status.consent_unrecognised == 3
    assert status.as_dict()["consent_unrecognised"] == 3
    assert any("3 members have a consent value segflow does not recognise" in w
               for w in status.warnings)  # fmt: skip


def test_a_withdrawn_consent_cell_is_sent_again_though_the_identifiers_are_the_same(
    db: Database, fake: FakeDataManager
) -> None:
    settings = _people_synced(db, fake)
    # Person 1 withdraws; person 4 changes nothing Google is told.
    rows = _people()
    rows[0] = (1, "p1@example.com", 500, "withdrawn", "withdrawn")
    rows[3] = (4, "p4@example.com", 600, "", "")
    _import(db, _csv(rows))
    assert run_sync(db, settings).ok

    first, again = fake.requests("IngestAudienceMembers")
    d = CONSENT_DENIED
    assert _member_consent(again) == {_email_hash(1): (d, d)}


def test_changing_a_destinations_consent_sends_every_member_again(
    db: Database, fake: FakeDataManager
) -> None:
    settings = _people_synced(db, fake)
    destinations.update_destination(db, "ads", {"ad_personalization": "denied"}, NOW)
    assert run_sync(db, settings).ok

    first, again = fake.requests("IngestAudienceMembers")
    assert len(again.audience_members) == len(first.audience_members) == len(PEOPLE)
    assert (again.consent.ad_user_data, again.consent.ad_personalization) == (
        CONSENT_GRANTED,
        CONSENT_DENIED,
    )


def test_a_dataset_without_consent_columns_reports_none(
    db: Database, fake: FakeDataManager
) -> None:
    _import(db, _csv([(1, "p1@example.com", 500)], ("id", "email", "lifetime_spend")))
    segments.create_segment(db, name="s", dataset="people", rules_json=SPENDERS, now=NOW)
    google_destination(db, "ads")
    links.link(db, "s", "ads", NOW)
    (status,) = links.status(db)
    assert status.consent_unrecognised == 0
    assert not any("consent" in w for w in status.warnings)


@pytest.mark.parametrize("how", ["arrow", "segflow's reader"])
def test_the_import_summary_counts_consent_values(
    db: Database, tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    words = ["unknown", "N/A", "pending", "maybe", "null", "2", "later"]
    rows: list[tuple[object, ...]] = []
    for i in range(1, 2001):
        ad_user_data = ("yes", "no", "", "withdrawn", words[i % len(words)])[i % 5]
        rows.append((i, f"p{i}@example.com", 500, ad_user_data, "granted"))
    path = tmp_path / "people.csv"
    path.write_bytes(_csv(rows))
    with path.open("rb") as file:
        stream = file if how == "arrow" else unseekable(file.read())
        summary = ingest.import_csv(
            db,
            stream,
            ingest.ImportOptions(dataset="people", key="id"),
            source=str(path),
            now=NOW,
            total_bytes=path.stat().st_size,
        )
    user_data, personalization = summary["consent"]
    assert (user_data["column"], user_data["kind"]) == ("ad_user_data", "consent_ad_user_data")
    assert user_data["granted"] == 400 and user_data["empty"] == 400
    assert user_data["denied"] == 800  # "no" and "withdrawn": clear answers
    assert user_data["unrecognised"] == 400
    examples = user_data["unrecognised_examples"]
    assert len(examples) == MAX_EXAMPLES and set(examples) <= set(words)
    assert personalization["granted"] == 2000 and personalization["unrecognised"] == 0

    from segflow.cli import output

    output.import_summary(summary)
    shown = capsys.readouterr().out
    assert (
        "consent ad_user_data (consent_ad_user_data): 400 granted, 800 denied, 400 empty" in shown
    )
    assert "400 unrecognised, sent as denied ('" in shown


def test_a_mapped_consent_column_is_counted_and_an_unmapped_one_is_not(db: Database) -> None:
    header = ("id", "email", "lifetime_spend", "gdpr_ads", "ad_personalization")
    first = _import(db, _csv([(1, "p1@example.com", 5, "unknown", "yes")], header))
    # Only the header-named column is recognised before anything is mapped.
    assert [c["column"] for c in first["consent"]] == ["ad_personalization"]
    mapping.set_mapping(
        db, "people", {"consent_ad_user_data": "gdpr_ads", "consent_ad_personalization": ""}, NOW
    )
    again = _import(db, _csv([(1, "p1@example.com", 5, "perhaps", "yes")], header))
    (counted,) = again["consent"]
    assert counted["column"] == "gdpr_ads" and counted["unrecognised"] == 1
    assert counted["unrecognised_examples"] == ["perhaps"]
