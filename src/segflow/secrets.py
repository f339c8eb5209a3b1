"""Encryption at rest for destination credentials.

Credentials are stored as ``fernet:<token>`` (Fernet: AES-128-CBC with an
HMAC-SHA256, from the ``cryptography`` package). The key comes from
``SEGFLOW_SECRET_KEY`` (several keys separated by commas: the first
encrypts, all decrypt), or else from a key file (``SEGFLOW_SECRET_KEY_FILE``,
default ``segflow.key`` in the working directory) that segflow creates with
mode 0600 the first time it has something to encrypt.

``segflow secrets rotate`` re-encrypts everything under a new key. With a key
file it writes the new key to ``<file>.new`` first, re-encrypts in one
transaction, then moves the old key to ``<file>.previous`` and the new one in
place; every one of those files is tried when decrypting, so a crash at any
step leaves every secret readable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from segflow.errors import InvalidInput, SegflowError

PREFIX = "fernet:"


class SecretUnavailable(SegflowError):
    """A stored secret cannot be read with the keys at hand."""

    code = "secret_unavailable"


def _fernet(raw: str, source: str) -> Fernet:
    try:
        return Fernet(raw.strip().encode())
    except (ValueError, TypeError):
        raise InvalidInput(
            f"the secret key from {source} is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None


def _write_key(path: Path, key: str) -> None:
    """Write a key file readable by its owner only, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class Cipher:
    env_keys: tuple[str, ...]
    key_file: Path

    @classmethod
    def from_values(cls, env_key: str | None, key_file: str) -> Cipher:
        keys = tuple(k.strip() for k in (env_key or "").split(",") if k.strip())
        return cls(keys, Path(key_file))

    @property
    def source(self) -> str:
        return "SEGFLOW_SECRET_KEY" if self.env_keys else str(self.key_file)

    def _sibling(self, suffix: str) -> Path:
        return self.key_file.with_name(self.key_file.name + suffix)

    def _keys(self, *, create: bool) -> list[Fernet]:
        """Every key that may decrypt, the one that encrypts first."""
        if self.env_keys:
            return [_fernet(k, "SEGFLOW_SECRET_KEY") for k in self.env_keys]
        if not self.key_file.exists() and create:
            _write_key(self.key_file, Fernet.generate_key().decode())
        keys = [
            _fernet(path.read_text(encoding="ascii"), str(path))
            for path in (self.key_file, self._sibling(".new"), self._sibling(".previous"))
            if path.exists()
        ]
        if not keys:
            raise SecretUnavailable(
                f"the secret key file {self.key_file} is missing, so stored credentials cannot "
                "be read: restore it or set SEGFLOW_SECRET_KEY"
            )
        return keys

    def encrypt(self, plaintext: str) -> str:
        return PREFIX + self._keys(create=True)[0].encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            # Written before encryption existed: readable, and rotate encrypts it.
            return stored
        try:
            token = stored[len(PREFIX) :].encode()
            return MultiFernet(self._keys(create=False)).decrypt(token).decode()
        except InvalidToken:
            raise SecretUnavailable(
                f"stored credentials do not decrypt with the key from {self.source}"
            ) from None

    # -- rotation, in three steps around the caller's transaction

    def prepare_rotation(self) -> str:
        """A new key; with a key file, saved beside it as ``.new`` before anything changes."""
        new_key = Fernet.generate_key().decode()
        if not self.env_keys:
            _write_key(self._sibling(".new"), new_key)
        return new_key

    def reencrypt(self, stored: str, new_key: str) -> str:
        plaintext = self.decrypt(stored)
        return PREFIX + Fernet(new_key.encode()).encrypt(plaintext.encode()).decode()

    def finish_rotation(self, new_key: str) -> Path | None:
        """Put the new key in place (key file mode); None when keys come from the environment."""
        if self.env_keys:
            return None
        if self.key_file.exists():
            _write_key(self._sibling(".previous"), self.key_file.read_text("ascii").strip())
        _write_key(self.key_file, new_key)
        self._sibling(".new").unlink(missing_ok=True)
        return self.key_file
