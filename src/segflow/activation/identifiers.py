"""Customer Match identifiers: normalisation and SHA-256 hashing.

Google's rules for the Data Manager API: email trimmed and lower-cased, and
for gmail.com / googlemail.com the dots and any ``+suffix`` of the local part
removed; phone numbers in E.164 with a country code (parsed with
``phonenumbers`` using the dataset's default region, since Google's own
formatter adds none), and only numbers phonenumbers calls valid (the rule
lives in ``segflow.ingest.phones``, which the import's quality summary
counts with too); given and family names trimmed and lower-cased; region
code (ISO 3166-1 alpha-2, upper case) and postal code trimmed and sent in
clear. Every text value is put in Unicode NFC first, so a name typed with a
combining accent hashes as the same name typed with a precomposed one. Each
hash is the lower-case hex SHA-256 of the UTF-8 normalised value.

A record may carry several emails and phones (the mapping names several
columns of each kind) and one address: every valid distinct one is sent, at
most ten in all (Google's limit per member; emails first, then phones, then
the address). An invalid value is skipped for that identifier alone and
counted; it never fails the record. ``NORMALISATION_VERSION`` is stored beside every hash sent,
so that a change to these rules can re-send what it affects.
"""

from __future__ import annotations

import functools
import gettext
import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pycountry

from segflow.ingest.phones import DEFAULT_REGION, normalise_phone

NORMALISATION_VERSION = 2  # 2: only valid phones, "+" retry, NFC, ISO countries

_GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
#: ISO 3166-1 alpha-2, from pycountry's copy of the standard (iso-codes).
_ISO_ALPHA_2 = frozenset(c.alpha_2 for c in pycountry.countries)
#: Not ISO 3166-1 but what people write for the United Kingdom.
_ALIASES = {"UK": "GB"}
_POSTAL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 -]{0,14}[A-Za-z0-9])?$")


def sha256_hex(value: str) -> str:
    """Lower-case hex SHA-256 of a normalised value; a blank one is a bug, never a hash."""
    if not value or value.isspace():
        # As Google's own formatter refuses: the hash of "" would match no one.
        raise ValueError("refusing to hash a blank value")
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _nfc(raw: str) -> str:
    # "José" typed with a combined "é" (NFC) or "e" and a combining accent
    # (NFD) is one name: hash one form of it.
    return unicodedata.normalize("NFC", raw)


def normalise_email(raw: str | None) -> str | None:
    if raw is None:
        return None
    email = _nfc(raw).strip().lower()
    if not _EMAIL.match(email):
        return None
    local, domain = email.rsplit("@", 1)
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def normalise_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    name = _nfc(raw).strip().lower()
    return name or None


def normalise_region(raw: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country written as a code or a name, or None.

    Accepts alpha-2 (``us``), ``UK`` for GB, alpha-3 and numeric codes and the
    English names pycountry knows (``United States``, ``Germany``), then
    names in the languages pycountry's translations hold (``Deutschland``).
    """
    if raw is None:
        return None
    return _region(_nfc(raw).strip())


@functools.lru_cache(maxsize=4096)  # a dataset holds few distinct country values
def _region(value: str) -> str | None:
    code = value.upper()
    code = _ALIASES.get(code, code)
    if code in _ISO_ALPHA_2:
        return code
    if len(value) < 3:
        return None
    try:
        return str(pycountry.countries.lookup(value).alpha_2)
    except LookupError:
        return _translated_names().get(value.casefold())


@functools.cache
def _translated_names() -> dict[str, str]:
    """Country names in every language pycountry ships, to alpha-2 (built once, ~1 s).

    A name that stands for two countries in different languages (pycountry's
    translations hold a few) is left out rather than guessed.
    """
    found: dict[str, set[str]] = {}
    for language in sorted(os.listdir(pycountry.LOCALES_DIR)):
        try:
            catalog = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, [language])
        except OSError:
            continue
        for country in pycountry.countries:
            for attr in ("name", "official_name", "common_name"):
                english = getattr(country, attr, None)
                if english:
                    local = _nfc(catalog.gettext(english)).strip().casefold()
                    found.setdefault(local, set()).add(country.alpha_2)
    return {name: codes.pop() for name, codes in found.items() if len(codes) == 1}


def normalise_postal_code(raw: str | None) -> str | None:
    if raw is None:
        return None
    code = _nfc(raw).strip()
    return code if _POSTAL.match(code) else None


@dataclass(frozen=True)
class Address:
    given_name_sha256: str
    family_name_sha256: str
    region_code: str
    postal_code: str


@dataclass(frozen=True)
class Identifiers:
    """What may leave the machine for one record: hashes, region and postal code.

    A record may carry several emails and phones (one mapping column each);
    they are kept in mapping order, each distinct hash once.
    """

    email_hashes: tuple[str, ...] = ()
    phone_hashes: tuple[str, ...] = ()
    address: Address | None = None

    def __bool__(self) -> bool:
        return bool(self.email_hashes or self.phone_hashes or self.address)


#: The columns a mapping can name, in the order they are shown.
MAPPED_COLUMNS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "postal_code",
    "consent_ad_user_data",
    "consent_ad_personalization",
)
#: The entries that name several columns (each one identifier of the record).
LISTED_COLUMNS = ("email", "phone")


@dataclass
class Mapping:
    """Which of a dataset's columns hold which identifier, and consent.

    ``email`` and ``phone`` name any number of columns, in the order their
    values are sent; the address is one set of four columns.
    """

    email: tuple[str, ...] = ()
    phone: tuple[str, ...] = ()
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None
    postal_code: str | None = None
    #: Region assumed for phone numbers written without a country code.
    default_region: str = DEFAULT_REGION
    #: Optional per-record consent; empty cells take the destination's default.
    consent_ad_user_data: str | None = None
    consent_ad_personalization: str | None = None

    def columns(self) -> list[str]:
        """Every dataset column the mapping reads (each once)."""
        out: list[str] = []
        for name in MAPPED_COLUMNS:
            value = getattr(self, name)
            for column in value if name in LISTED_COLUMNS else [value]:
                if column is not None and column not in out:
                    out.append(column)
        return out

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: list(getattr(self, name)) if name in LISTED_COLUMNS else getattr(self, name)
            for name in MAPPED_COLUMNS
        }
        out["default_region"] = self.default_region
        return out


@dataclass
class Skipped:
    """Values present but unusable, per identifier kind."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str) -> None:
        self.counts[kind] += 1


def _get(record: dict[str, str | None], column: str | None) -> str | None:
    if column is None:
        return None
    value = record.get(column)
    # Blank as strip() sees it, without building the stripped copy.
    return value if value and not value.isspace() else None


class Capped:
    """Identifiers left out of members past Google's limit per member."""

    def __init__(self) -> None:
        #: Members that had more than ``MAX_IDENTIFIERS`` usable identifiers.
        self.members = 0
        #: Identifiers left out of them.
        self.identifiers = 0


#: Google takes at most this many identifiers per audience member.
MAX_IDENTIFIERS = 10


def identifiers_for(
    record: dict[str, str | None],
    mapping: Mapping,
    skipped: Skipped | None = None,
    capped: Capped | None = None,
) -> Identifiers:
    """Normalise and hash one record's identifiers (raw values in, hashes out).

    Every valid distinct email and phone of the mapped columns is kept, in
    mapping order; past ``MAX_IDENTIFIERS`` in all (emails, then phones, then
    the address) the rest are left out and counted in ``capped``.
    """
    skipped = skipped if skipped is not None else Skipped()
    emails: list[str] = []
    for column in mapping.email:
        raw = _get(record, column)
        if raw is not None:
            email = normalise_email(raw)
            if email is None:
                skipped.add("email")
            else:
                digest = sha256_hex(email)
                if digest not in emails:
                    emails.append(digest)
    phones: list[str] = []
    for column in mapping.phone:
        raw = _get(record, column)
        if raw is not None:
            phone = normalise_phone(raw, mapping.default_region)
            if phone is None:
                skipped.add("phone")
            else:
                digest = sha256_hex(phone)
                if digest not in phones:
                    phones.append(digest)
    address = None
    raw_parts = [
        _get(record, c)
        for c in (mapping.first_name, mapping.last_name, mapping.country, mapping.postal_code)
    ]
    if None not in raw_parts:
        given, family = normalise_name(raw_parts[0]), normalise_name(raw_parts[1])
        region, postal = normalise_region(raw_parts[2]), normalise_postal_code(raw_parts[3])
        if given and family and region and postal:
            address = Address(sha256_hex(given), sha256_hex(family), region, postal)
        else:
            skipped.add("address")
    total = len(emails) + len(phones) + (address is not None)
    if total > MAX_IDENTIFIERS:
        if capped is not None:
            capped.members += 1
            capped.identifiers += total - MAX_IDENTIFIERS
        emails = emails[:MAX_IDENTIFIERS]
        phones = phones[: MAX_IDENTIFIERS - len(emails)]
        if len(emails) + len(phones) >= MAX_IDENTIFIERS:
            address = None
    return Identifiers(tuple(emails), tuple(phones), address)


# Compact codes for what was sent, stored per link member so that a remove
# can name exactly what an earlier ingest added. Region codes are letters
# and postal codes letters, digits, spaces and dashes, so ":" never appears
# inside a part.
def encode(identifiers: Identifiers) -> list[str]:
    codes = ["e:" + h for h in identifiers.email_hashes]
    if identifiers.phone_hashes:
        codes += ["p:" + h for h in identifiers.phone_hashes]
    a = identifiers.address
    if a is not None:
        codes.append(
            f"a:{a.given_name_sha256}:{a.family_name_sha256}:{a.region_code}:{a.postal_code}"
        )
    return codes


def codes_json(codes: Sequence[str]) -> str:
    """``json.dumps(codes)`` of :func:`encode`'s codes, without the encoder's cost a member.

    Codes are hex digits, kind letters, ":", region letters and postal code
    letters, digits, spaces and dashes: nothing JSON escapes.
    """
    return '["' + '", "'.join(codes) + '"]' if codes else "[]"


def code_key(code: str) -> int:
    """A code as a signed 64-bit integer, the key ``sf_link_hashes`` stores it under.

    An email or phone code is already a SHA-256 in hex: its first 16 digits.
    An address code (two hashes, region and postal code) is hashed whole, the
    first 8 bytes of its SHA-256. Two codes of one list share a key with
    probability about n²/2^65 (n codes); the sync pass checks every member a
    key finds against that member's ``sent`` set, and even without that check
    a shared key could only leave an identifier out of a remove, never remove
    a wanted member's match.
    """
    return code_keys((code,))[0]


def code_keys(codes: Iterable[str]) -> list[int]:
    """:func:`code_key` of each code, in order (one call for a batch: this runs per code sent)."""
    out = []
    sha256 = hashlib.sha256
    for code in codes:
        if code[0] == "a":
            key = int.from_bytes(sha256(code.encode("utf-8")).digest()[:8], "big")
        else:
            key = int(code[2:18], 16)
        out.append(key - _2_64 if key >= _2_63 else key)
    return out


_2_63 = 1 << 63
_2_64 = 1 << 64


def decode(codes: list[str]) -> Identifiers:
    emails: list[str] = []
    phones: list[str] = []
    address = None
    for code in codes:
        kind, _, rest = code.partition(":")
        if kind == "e":
            emails.append(rest)
        elif kind == "p":
            phones.append(rest)
        elif kind == "a":
            given, family, region, postal = rest.split(":", 3)
            address = Address(given, family, region, postal)
        else:
            raise ValueError(f"unknown identifier code {kind!r}")
    return Identifiers(tuple(emails), tuple(phones), address)
