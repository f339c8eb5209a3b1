"""Sync across process boundaries: killed workers, the CLI, and what leaves the machine."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from segflow import cli, demo
from segflow.activation import links
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database
from tests.sync_helpers import (
    ACCOUNT,
    NOW,
    Clock,
    Crash,
    converged,
    customers,
    dying,
    import_rows,
    run_sync,
    setup_link,
    spawn_segflow,
    with_spend,
)


def test_a_crash_between_sending_and_recording_resends_harmlessly(
    db: Database, fake: FakeDataManager
) -> None:
    settings = Settings(datamanager_endpoint=fake.address, sync_timeout=2, sync_lease=10)
    setup_link(db, customers(200))

    clock = Clock()
    with pytest.raises(Crash):
        run_sync(db, settings, clock, owner="dead worker", senders=dying(after="any"))
    assert converged(db, fake)  # the list has them, but segflow does not know it
    (status,) = links.status(db)
    assert status.synced == 0 and status.pending_adds > 0
    # The dead worker's lease keeps others off the list until it runs out.
    assert run_sync(db, settings, clock).outcomes == []
    clock.advance(seconds=11)
    report = run_sync(db, settings, clock)
    assert report.ok and report.outcomes[0].added == status.pending_adds
    assert converged(db, fake)
    assert len(fake.received) == 2


def _worker(db_url: str, fake: FakeDataManager, log: Path) -> subprocess.Popen[bytes]:
    return spawn_segflow(["worker", "--interval", "1", "--db", db_url], fake, log, batch=40)


def _wait(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_killing_the_worker_mid_sync_converges_after_restart(
    db_url: str, db: Database, fake: FakeDataManager, tmp_path: Path
) -> None:
    rows = customers(2_000)
    setup_link(db, rows)
    fake.latency = 0.05
    rng = random.Random(1234)
    log = tmp_path / "worker.log"
    kills_mid_sync = 0
    for round_ in range(4):
        worker = _worker(db_url, fake, log)
        target = len(fake.received) + rng.randint(1, 3)
        _wait(lambda target=target: len(fake.received) >= target or _settled(db))
        time.sleep(rng.random() * 0.05)
        kills_mid_sync += not _settled(db)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # Memberships move between kills: removes and adds are both due.
        changed = rng.sample(rows, 150)
        spend = rng.choice([0.0, 900.0])
        import_rows(db, [with_spend(r, spend) for r in changed], NOW + dt.timedelta(minutes=round_))
    worker = _worker(db_url, fake, log)
    try:
        _wait(lambda: _settled(db), timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, log.read_text()
    assert kills_mid_sync >= 2
    assert converged(db, fake)
    if db_url.startswith("sqlite"):
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"


def _settled(db: Database) -> bool:
    (status,) = links.status(db)
    return status.pending_adds == status.pending_removes == 0 and status.synced > 0


def _run(*argv: str) -> int:
    return cli.main(list(argv))


def test_the_cli_syncs_and_no_raw_identifier_leaves_or_is_logged(
    tmp_path: Path,
    fake: FakeDataManager,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SEGFLOW_DATAMANAGER_ENDPOINT", fake.address)
    fake.add_list(ACCOUNT, "77")  # Google holds only lists that were created
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    data = tmp_path / "customers.csv"
    data.write_bytes(demo.csv_bytes(400, seed=3))
    rules = json.dumps(
        {"conditions": [{"field": "lifetime_spend", "operator": "greater_than", "value": 50}]}
    )
    assert _run("import", str(data), "--dataset", "customers", "--db", url) == 0
    assert (
        _run(
            "segments",
            "create",
            "--dataset",
            "customers",
            "--name",
            "s",
            "--rules",
            rules,
            "--db",
            url,
        )
        == 0
    )
    assert (
        _run(
            "destinations",
            "add",
            "google_ads",
            "ads",
            "--operating-account-id",
            "123-456-7890",
            "--list-id",
            "77",
            "--terms-accepted",
            "--ad-user-data",
            "granted",
            "--ad-personalization",
            "granted",
            "--db",
            url,
        )
        == 0
    )
    assert _run("identifiers", "customers", "--phone-region", "us", "--db", url) == 0
    assert _run("link", "s", "ads", "--db", url) == 0
    assert _run("sync", "--db", url) == 0
    assert _run("links", "--db", url) == 0
    out, err = capsys.readouterr()
    assert _run("sync", "--status", "--json", "--db", url) == 0
    status_out, _ = capsys.readouterr()
    status = json.loads(status_out)
    assert status[0]["synced"] == len(fake.members("77")) > 0
    assert status[0]["pending_adds"] == 0

    seen = out + err + status_out + caplog.text
    sent = b"".join(type(r.request).SerializeToString(r.request) for r in fake.received)
    raw_rows = list(demo.rows(400, seed=3))
    from segflow.activation.identifiers import normalise_email, normalise_phone

    checked = 0
    for row in raw_rows:
        email, phone, first, last = row[1], row[2], row[3], row[4]
        for value in (email, normalise_email(email), phone, normalise_phone(phone, "US")):
            if value:
                assert value not in seen
                assert value.encode() not in sent
                checked += 1
        assert f"{first} {last}".lower().encode() not in sent
        for name in (first, last):
            assert name.lower().encode() not in sent
            assert not re.search(rf"\b{re.escape(name)}\b", seen)
    assert checked > 1000


def _add_with_key(tmp_path: Path, private_key: str) -> tuple[int, str]:
    """Add a google_ads destination with a service-account key file; (exit, db url)."""
    key = tmp_path / "key.json"
    key.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "sync@example.iam.gserviceaccount.com",
                "private_key": private_key,
                "private_key_id": "abc123",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    url = f"sqlite:///{tmp_path / 'k.db'}"
    code = _run(
        "destinations", "add", "google_ads", "ads", "--operating-account-id", "1",
        "--list-id", "2", "--service-account-key", str(key), "--db", url,
        "--ad-user-data", "denied", "--ad-personalization", "denied",
    )  # fmt: skip
    return code, url


def test_a_bad_service_account_key_is_refused_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_text = "-----BEGIN PRIVATE KEY-----\nTOTALLYSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    code, _ = _add_with_key(tmp_path, secret_text)
    out, err = capsys.readouterr()
    assert code == 1
    assert "service-account key cannot be loaded" in err
    assert "TOTALLYSECRETMATERIAL" not in out + err


def test_a_valid_service_account_key_is_accepted_and_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The key is made up: asking Google's token server about it would only
    # reach the internet (checking credentials is tested against the fake's).
    monkeypatch.setenv("SEGFLOW_CHECK_CREDENTIALS", "off")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    code, url = _add_with_key(tmp_path, pem)
    assert code == 0
    assert _run("destinations", "list", "--json", "--db", url) == 0
    out, _ = capsys.readouterr()
    assert "service account sync@example.iam.gserviceaccount.com" in out
    body = pem.splitlines()[1]
    assert body not in out
    listed = json.loads(out[out.index("[") :])
    assert listed[0]["has_credentials"] is True
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT config FROM sf_destinations").scalar()
    engine.dispose()
    assert body not in str(stored)


def test_the_endpoint_override_accepts_only_loopback_addresses() -> None:
    from segflow.errors import InvalidInput

    assert Settings.from_env({"SEGFLOW_DATAMANAGER_ENDPOINT": "127.0.0.1:50051"})
    assert Settings.from_env({"SEGFLOW_DATAMANAGER_ENDPOINT": "localhost:50051"})
    for bad in ("10.0.0.5:50051", "datamanager.googleapis.com:443", "127.0.0.1", "[::2]:1"):
        with pytest.raises(InvalidInput, match="SEGFLOW_DATAMANAGER_ENDPOINT"):
            Settings.from_env({"SEGFLOW_DATAMANAGER_ENDPOINT": bad})


def test_unlinking_says_what_the_list_keeps(
    tmp_path: Path,
    fake: FakeDataManager,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    monkeypatch.chdir(tmp_path)
    assert _run("demo", "--rows", "2000", "--db", url) == 0
    capsys.readouterr()
    assert _run("unlink", "CA high spenders", "demo audience file", "--db", url) == 0
    out, _ = capsys.readouterr()
    assert "keeps the" in out and "members it was sent" in out
    assert _run("links", "--db", url) == 0
    assert "no links yet" in capsys.readouterr()[0]
    assert (tmp_path / "segflow-demo-audience.jsonl").exists()
