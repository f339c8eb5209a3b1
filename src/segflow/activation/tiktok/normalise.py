"""TikTok customer-file identifiers: normalisation, SHA-256, identifier codes.

TikTok's rules (Ads Manager help, "How to create a Custom Audience with a
customer file", ID formats table, last updated September 2025):

- **Email**: spaces removed, all lower case, then SHA-256. Its example hashes
  ``janedoe@gmail.com`` as ``d6117306...``; nothing else is done to the
  address. An older TikTok page ("List of supported IDs and formats for a
  customer file") also asked to drop a ``+tag`` and the dots before ``@``;
  the current page does not, and dropping dots from a non-Gmail address
  names another mailbox, so segflow follows the current page. Leading and
  trailing white space goes too, as does any inside (TikTok says "remove
  spaces"); the value must then still have the shape of an address.
- **Phone**: E.164 (country code and number). TikTok's table asks for
  ``+``, country code and number, "also supported: without +", and its
  published hash ``65b7e6dc...`` of the example ``+37493828222`` is the
  SHA-256 of ``37493828222``, without the ``+``: so the hash is of the
  digits alone. Numbers are read with ``segflow.ingest.phones`` (only valid
  numbers, the dataset's default region for numbers written without a
  country code), as for Google and Meta.

Every text value is put in Unicode NFC first, as for Google and Meta. Each
hash is the lower-case hex SHA-256 of the UTF-8 bytes of the normalised value.

:func:`codes_for` gives a record's identifier codes in the shape of
``segflow.activation.identifiers.encode``: ``e:<sha256>`` for each distinct
valid email, then ``p:<sha256>`` for each distinct valid phone, in mapping
order. An unusable value is counted in ``skipped`` and never fails the record.
"""

from __future__ import annotations

import re
import unicodedata

from segflow.activation.identifiers import Mapping, Skipped, sha256_hex
from segflow.ingest import phones

#: Stored beside what was sent, so that a change to these rules can re-send it.
NORMALISATION_VERSION = 1

EMAIL_CODE = "e:"
PHONE_CODE = "p:"

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
_WHITE = re.compile(r"\s+")


def normalise_email(raw: str | None) -> str | None:
    """Lower case without any white space; None unless it has the shape of an address."""
    if raw is None:
        return None
    # NFC before and after lower(): lower-casing can decompose ("İ").
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw).lower())
    email = _WHITE.sub("", text)
    return email if _EMAIL_SHAPE.match(email) else None


def normalise_phone(raw: str | None, default_region: str) -> str | None:
    """Country code and number as digits (``16577770000``) of a valid number, or None."""
    if raw is None or not raw.strip():
        return None
    e164 = phones.normalise_phone(raw, default_region)
    return e164[1:] if e164 is not None else None


def email_hash(raw: str | None) -> str | None:
    email = normalise_email(raw)
    return sha256_hex(email) if email is not None else None


def phone_hash(raw: str | None, default_region: str) -> str | None:
    phone = normalise_phone(raw, default_region)
    return sha256_hex(phone) if phone is not None else None


def _get(record: dict[str, str | None], column: str) -> str | None:
    value = record.get(column)
    return value if value and not value.isspace() else None


def codes_for(record: dict[str, str | None], mapping: Mapping, skipped: Skipped) -> list[str]:
    """A record's codes: ``e:<sha256>`` per distinct valid email, then ``p:<sha256>`` per phone."""
    codes: list[str] = []
    for column in mapping.email:
        raw = _get(record, column)
        if raw is None:
            continue
        digest = email_hash(raw)
        if digest is None:
            skipped.add("email")
        elif EMAIL_CODE + digest not in codes:
            codes.append(EMAIL_CODE + digest)
    for column in mapping.phone:
        raw = _get(record, column)
        if raw is None:
            continue
        digest = phone_hash(raw, mapping.default_region)
        if digest is None:
            skipped.add("phone")
        elif PHONE_CODE + digest not in codes:
            codes.append(PHONE_CODE + digest)
    return codes
