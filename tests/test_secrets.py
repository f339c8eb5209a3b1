"""Destination credentials are encrypted at rest, usable by sync, and rotatable."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from segflow import cli, segments
from segflow.activation import destinations, links
from segflow.activation.fake import FakeDataManager
from segflow.config import Settings
from segflow.db import Database
from segflow.db.schema import destinations as destinations_table
from segflow.secrets import Cipher, SecretUnavailable
from tests.sync_helpers import (
    ACCOUNT,
    HIGH_SPEND,
    LIST_ID,
    NOW,
    converged,
    customers,
    import_rows,
    run_sync,
)

OAUTH = {
    "type": "oauth",
    "client_id": "client-id.apps.googleusercontent.com",
    "client_secret": "GOCSPX-super-secret-value",
    "refresh_token": "1//0refresh-token-value",
}


def _stored(db: Database) -> str:
    with db.read() as conn:
        return str(conn.execute(sa.select(destinations_table.c.secret)).scalar_one())


def _add(db: Database, cipher: Cipher) -> destinations.Destination:
    return destinations.add_destination(
        db,
        "ads",
        destinations.GOOGLE_ADS,
        {
            "operating_account_id": ACCOUNT,
            "product_destination_id": LIST_ID,
            "terms_accepted": True,
            "ad_user_data": destinations.GRANTED,
            "ad_personalization": destinations.GRANTED,
        },
        NOW,
        OAUTH,
        cipher,
    )


def test_credentials_are_stored_encrypted_under_an_owner_only_key_file(
    db: Database, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys" / "segflow.key"
    key_file.parent.mkdir()
    cipher = Cipher.from_values(None, str(key_file))
    added = _add(db, cipher)
    stored = _stored(db)
    assert stored.startswith("fernet:")
    for value in OAUTH.values():
        assert value not in stored
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(cipher.decrypt(stored)) == OAUTH
    assert "secret" not in json.dumps(added.public()).lower().replace("has_credentials", "")


def test_sync_uses_the_encrypted_credentials_and_pauses_when_the_key_is_gone(
    db: Database, fake: FakeDataManager, tmp_path: Path
) -> None:
    key_file = tmp_path / "segflow.key"
    settings = Settings(
        datamanager_endpoint=fake.address, sync_timeout=2, secret_key_file=str(key_file)
    )
    import_rows(db, customers(100))
    segments.create_segment(
        db, name="big spenders", dataset="customers", rules_json=HIGH_SPEND, now=NOW
    )
    _add(db, settings.cipher)
    links.link(db, "big spenders", "ads", NOW)
    assert run_sync(db, settings).ok
    assert converged(db, fake)

    key_file.rename(tmp_path / "elsewhere.key")
    import_rows(db, customers(20, seed=3, start_id=900))
    report = run_sync(db, settings)
    assert report.outcomes[0].paused is not None
    assert "segflow.key is missing" in report.outcomes[0].paused


def test_a_wrong_key_is_refused_without_revealing_anything(db: Database, tmp_path: Path) -> None:
    _add(db, Cipher.from_values(None, str(tmp_path / "a.key")))
    other = Cipher.from_values(None, str(tmp_path / "b.key"))
    other.encrypt("make b.key exist")
    with pytest.raises(SecretUnavailable, match="do not decrypt"):
        other.decrypt(_stored(db))


def test_rotation_re_encrypts_everything_and_keeps_the_old_key_aside(
    db: Database, tmp_path: Path
) -> None:
    key_file = tmp_path / "segflow.key"
    cipher = Cipher.from_values(None, str(key_file))
    _add(db, cipher)
    before, old_key = _stored(db), key_file.read_text()

    count, written, new_key = destinations.rotate_key(db, cipher)

    assert (count, written) == (1, key_file)
    after = _stored(db)
    assert after != before and key_file.read_text().strip() == new_key
    assert (tmp_path / "segflow.key.previous").read_text() == old_key
    assert json.loads(cipher.decrypt(after)) == OAUTH
    only_new = Cipher.from_values(new_key, "unused")
    assert json.loads(only_new.decrypt(after)) == OAUTH
    with pytest.raises(SecretUnavailable):
        Cipher.from_values(old_key, "unused").decrypt(after)


def test_a_crash_in_the_middle_of_a_rotation_leaves_every_secret_readable(
    db: Database, tmp_path: Path
) -> None:
    key_file = tmp_path / "segflow.key"
    cipher = Cipher.from_values(None, str(key_file))
    _add(db, cipher)
    new_key = cipher.prepare_rotation()
    with db.write() as conn:  # the re-encryption committed, the key files not yet moved
        conn.execute(
            sa.update(destinations_table).values(secret=cipher.reencrypt(_stored(db), new_key))
        )
    assert json.loads(cipher.decrypt(_stored(db))) == OAUTH
    cipher.finish_rotation(new_key)
    assert json.loads(cipher.decrypt(_stored(db))) == OAUTH


def test_keys_from_the_environment_decrypt_with_any_listed_key(db: Database) -> None:
    from cryptography.fernet import Fernet

    old_key, new_key = (Fernet.generate_key().decode() for _ in range(2))
    old = Cipher.from_values(old_key, "ignored")
    _add(db, old)
    both = Cipher.from_values(f"{new_key}, {old_key}", "ignored")
    assert json.loads(both.decrypt(_stored(db))) == OAUTH
    assert both.encrypt("x") != old.encrypt("x")
    with pytest.raises(Exception, match="not a Fernet key"):
        Cipher.from_values("not-a-key", "ignored").encrypt("x")


def test_the_rotate_command(
    db_url: str, db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(db, Settings.from_env().cipher)
    assert cli.main(["secrets", "rotate", "--db", db_url]) == 0
    out, _ = capsys.readouterr()
    assert "re-encrypted 1 stored credential under a new key" in out
    assert "segflow.key.previous" in out
    assert json.loads(Settings.from_env().cipher.decrypt(_stored(db))) == OAUTH
