"""Meta Custom Audience identifiers: normalisation, SHA-256 and one member's multi-key row.

Meta's rules (Marketing API, "Customer File Custom Audiences", hashing and
normalising table) differ from Google's in ``segflow.activation.identifiers``:

- ``EMAIL``: trimmed and lower-cased, nothing else (no Gmail dot or ``+tag``
  removal, which Google asks for and Meta does not).
- ``PHONE``: digits only, with the country code, no ``+`` and no leading
  zeros: the E.164 form of ``segflow.ingest.phones`` (valid numbers only,
  the dataset's default region for numbers without a country code) without
  its ``+``. A number written with the ``00`` international prefix is read as
  if it began with ``+``, since Meta's rule drops the zeros.
- ``FN``, ``LN``: lower-cased, no punctuation and no white space; letters
  with accents are kept as UTF-8 (see :func:`normalise_name`).
- ``CT``: lower-cased, ``a``-``z`` only, no white space.
- ``ST``: the two-letter ANSI (USPS) code, lower-cased, for US states;
  elsewhere like ``CT``.
- ``ZIP``: lower-cased, no white space, the part before a ``-``; for the
  US the first five digits, for the UK the area, district and sector
  (``SW1A 1AA`` is ``sw1a1``).
- ``COUNTRY``: ISO 3166-1 alpha-2, lower-cased (names are accepted in the
  dataset and turned into codes, as for Google).
- ``EXTERN_ID``: the dataset key, trimmed; Meta does not require it hashed,
  segflow hashes it unless the destination says otherwise, since a dataset
  key can be an email address.

Every value but a clear ``EXTERN_ID`` is sent as the lower-case hex SHA-256
of its UTF-8 bytes, country and postal code included (Google takes those
two in clear). Text is put in Unicode NFC first, as for Google.

A member is one row of an upload: one value per key of the request's
schema, ``""`` where the record has none (as Meta's own file uploader
sends). ``EMAIL`` and ``PHONE`` may each appear up to three times in a
schema, Meta's limit per person; each takes the next valid distinct value
of the mapped columns. City and state are not in the dataset mapping Google
uses: :class:`MetaColumns` names their columns beside it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pycountry

from segflow.activation.identifiers import Mapping, Skipped, normalise_region, sha256_hex
from segflow.errors import InvalidInput
from segflow.ingest import phones

#: Stored beside what was sent, so that a change to these rules can re-send it.
NORMALISATION_VERSION = 1

EMAIL = "EMAIL"
PHONE = "PHONE"
FN = "FN"
LN = "LN"
ZIP = "ZIP"
CT = "CT"
ST = "ST"
COUNTRY = "COUNTRY"
EXTERN_ID = "EXTERN_ID"

#: The multi-key names segflow fills, in the order it lays a schema out.
KEYS = (EMAIL, PHONE, FN, LN, ZIP, CT, ST, COUNTRY, EXTERN_ID)
#: Keys a schema may repeat, and how often: Meta takes up to three emails and
#: three phones per person.
REPEATABLE = {EMAIL: 3, PHONE: 3}

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
# Meta's SDK trims these from both ends of an email (its unit tests hash
# "foo@fb.com\t\r\n\0\x0B." as "foo@fb.com"); str.strip() alone keeps NUL and dots.
_EMAIL_TRIM = " \t\r\n\0\x0b."
_NOT_A_TO_Z = re.compile(r"[^a-z]+")
_US_ZIP = re.compile(r"^([0-9]{5})(?:[0-9]{4})?$")
# Outward code (area and district) and the sector digit, with or without the unit.
_UK_POSTCODE = re.compile(r"^([a-z]{1,2}[0-9][a-z0-9]?)([0-9])(?:[a-z]{2})?$")
_OTHER_POSTAL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,14}[a-z0-9])?$")


# Names and places repeat across members; emails, phones and keys do not.
_hash_repeated = functools.lru_cache(maxsize=1 << 16)(sha256_hex)


def _text(raw: str) -> str:
    # NFC before and after lower(): lower-casing can decompose ("İ" becomes
    # "i" and a combining dot), and one name must hash one way.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", raw).strip().lower())


def normalise_email(raw: str | None) -> str | None:
    """Trimmed and lower-cased; None unless it has the shape of an address."""
    if raw is None:
        return None
    email = _text(raw).strip(_EMAIL_TRIM)
    return email if _EMAIL_SHAPE.match(email) else None


def normalise_phone(raw: str | None, default_region: str) -> str | None:
    """Digits with the country code (``14155550100``) of a valid number, or None."""
    if raw is None or not raw.strip():
        return None
    e164 = phones.normalise_phone(raw, default_region)
    if e164 is None:
        written = raw.strip()
        if written.startswith("00"):
            # "0044 20 7183 8750": Meta drops leading zeros; phonenumbers only
            # reads 00 as the international prefix where the region dials it.
            e164 = phones.normalise_phone("+" + written[2:], default_region)
    return e164[1:] if e164 is not None else None


def _is_kept_in_name(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN"


@functools.lru_cache(maxsize=1 << 16)  # names and places repeat across members
def normalise_name(raw: str | None) -> str | None:
    """A first or last name: lower-cased, without punctuation, spaces or symbols.

    Meta's table says "a-z only ... no punctuation. Special characters in
    UTF-8 format", and its customer-list help page gives "Émilie" as a
    first name it accepts with accents. Its Python SDK's helper
    (``CustomAudienceMixin.normalize_key``) instead deletes every character
    outside ``a-zA-Z``, so "Émilie" would hash as "milie", a name nobody
    has. The docs win: letters (and digits) of every script are kept as
    UTF-8, which is also what Meta's own customer-file uploader does (it
    strips only white space and punctuation from names).
    """
    if raw is None:
        return None
    name = "".join(c for c in _text(raw) if _is_kept_in_name(c))
    return name or None


@functools.lru_cache(maxsize=1 << 16)  # names and places repeat across members
def normalise_city(raw: str | None) -> str | None:
    """Lower-cased ``a``-``z`` only: no punctuation, special characters or white space.

    Unlike names, Meta's table allows no special characters here, and both
    its SDK and its customer-file uploader delete them; so "São Paulo" is
    "sopaulo" on Meta's side too, and a city written in another script
    leaves nothing to send.
    """
    if raw is None:
        return None
    city = _NOT_A_TO_Z.sub("", _text(raw))
    return city or None


@functools.lru_cache(maxsize=1 << 16)  # names and places repeat across members
def normalise_state(raw: str | None, country: str | None) -> str | None:
    """A US state as its two-letter code (``ca``), any other region like a city.

    ``country`` is the member's ISO alpha-2 code (the record's country, or
    the dataset's default region when the record has none): only in the US
    is "California" written ``ca``, as Meta's table asks.
    """
    state = normalise_city(raw)
    if state is None or country != "US":
        return state
    codes = _us_states()
    if state in codes.values():
        return state
    return codes.get(state, state)


@functools.cache
def _us_states() -> dict[str, str]:
    """US state, district and territory names (a-z only) to their lower-case codes."""
    out: dict[str, str] = {}
    for subdivision in pycountry.subdivisions:
        if subdivision.country_code != "US":
            continue
        name = normalise_city(str(subdivision.name))
        if name is not None:
            out[name] = str(subdivision.code).split("-", 1)[1].lower()
    return out


@functools.lru_cache(maxsize=1 << 16)  # names and places repeat across members
def normalise_postal_code(raw: str | None, country: str | None) -> str | None:
    """Lower-cased without white space, the part before a ``-``, in the country's form.

    US: the first five digits (``94025-3215`` and ``940253215`` are
    ``94025``). UK (``GB``): area, district and sector (``SW1A 1AA`` is
    ``sw1a1``). Elsewhere the code as written. Meta's table states the first
    two; its SDK and its customer-file uploader both keep the part before a
    ``-`` for every country, which is what Meta's side hashes.
    """
    if raw is None:
        return None
    code = "".join(_text(raw).split()).split("-", 1)[0]
    if country == "US":
        us = _US_ZIP.match(code)
        return us.group(1) if us else None
    if country == "GB":
        uk = _UK_POSTCODE.match(code)
        return uk.group(1) + uk.group(2) if uk else None
    return code if len(code) >= 2 and _OTHER_POSTAL.match(code) else None


def normalise_country(raw: str | None) -> str | None:
    """ISO 3166-1 alpha-2 in lower case, from a code or a country's name."""
    region = normalise_region(raw)
    return region.lower() if region is not None else None


def normalise_extern_id(raw: str | None) -> str | None:
    """The dataset key as written, trimmed.

    Meta's SDK also lower-cases it (it lower-cases every multi-key value
    before its per-key rules), but keys "A1" and "a1" are two people in a
    dataset, and Meta asks nothing of an external id's case.
    """
    if raw is None:
        return None
    key = unicodedata.normalize("NFC", raw).strip()
    return key or None


@dataclass(frozen=True)
class MetaColumns:
    """The dataset columns Meta matches on that the shared mapping has no entry for."""

    city: str | None = None
    state: str | None = None

    def columns(self) -> list[str]:
        """Every dataset column read here (each once)."""
        return list(dict.fromkeys(c for c in (self.city, self.state) if c is not None))


def check_schema(schema: Sequence[str]) -> tuple[str, ...]:
    """The schema as a tuple, or a clear error naming what Meta would refuse in it."""
    if not schema:
        raise InvalidInput("a Meta upload schema needs at least one key")
    counts = Counter(schema)
    for key, count in counts.items():
        if key not in KEYS:
            raise InvalidInput(f"unknown Meta schema key {key!r} (known: {', '.join(KEYS)})")
        limit = REPEATABLE.get(key, 1)
        if count > limit:
            raise InvalidInput(
                f"Meta schema key {key} appears {count} times; at most {limit} allowed"
            )
    return tuple(schema)


# Every member of an upload shares one schema: check it once, not per member.
_checked_schema = functools.lru_cache(maxsize=64)(check_schema)


def schema_for(
    mapping: Mapping, columns: MetaColumns = MetaColumns(), *, extern_id: bool = False
) -> tuple[str, ...]:
    """The keys a dataset's mapping can fill, in segflow's order.

    One ``EMAIL`` (``PHONE``) per mapped email (phone) column, at most three;
    ``EXTERN_ID`` only when the destination sends the dataset key.
    """
    keys = [EMAIL] * min(len(mapping.email), REPEATABLE[EMAIL])
    keys += [PHONE] * min(len(mapping.phone), REPEATABLE[PHONE])
    present = {
        FN: mapping.first_name,
        LN: mapping.last_name,
        ZIP: mapping.postal_code,
        CT: columns.city,
        ST: columns.state,
        COUNTRY: mapping.country,
    }
    keys += [key for key, column in present.items() if column is not None]
    if extern_id:
        keys.append(EXTERN_ID)
    return tuple(keys)


def _get(record: dict[str, str | None], column: str | None) -> str | None:
    if column is None:
        return None
    value = record.get(column)
    return value if value is not None and value.strip() else None


_Normaliser = Callable[[str], str | None]


def _distinct(
    raws: Iterable[str | None], normalise: _Normaliser, kind: str, skipped: Skipped
) -> list[str]:
    out: list[str] = []
    for raw in raws:
        if raw is None:
            continue
        value = normalise(raw)
        if value is None:
            skipped.add(kind)
        elif value not in out:
            out.append(value)
    return out


def member_row(
    record: dict[str, str | None],
    mapping: Mapping,
    schema: Sequence[str],
    *,
    columns: MetaColumns = MetaColumns(),
    key: str | None = None,
    hash_extern_id: bool = True,
    skipped: Skipped | None = None,
) -> tuple[str, ...] | None:
    """One member's values for ``schema`` (hashes, ``""`` where none), or None.

    ``record`` holds the raw values by column name, ``key`` the dataset key
    (sent as ``EXTERN_ID`` when the schema has it). A value present but
    unusable is left out and counted in ``skipped`` under its kind; it never
    fails the member. None when the row would name no one: no email, phone
    or external id, and not both names.
    """
    schema = _checked_schema(tuple(schema))
    skipped = skipped if skipped is not None else Skipped()
    record_country = _get(record, mapping.country)
    country = normalise_region(record_country)
    if record_country is not None and country is None:
        skipped.add("country")
    # Where the record says no country, ZIP and ST follow the dataset's.
    place = country if country is not None else mapping.default_region.upper()

    emails = _distinct(
        (_get(record, c) for c in mapping.email[: schema.count(EMAIL)]),
        normalise_email,
        "email",
        skipped,
    )
    phone_values = _distinct(
        (_get(record, c) for c in mapping.phone[: schema.count(PHONE)]),
        lambda raw: normalise_phone(raw, mapping.default_region),
        "phone",
        skipped,
    )

    def one(kind: str, column: str | None, normalise: _Normaliser) -> str | None:
        raw = _get(record, column)
        if raw is None:
            return None
        value = normalise(raw)
        if value is None:
            skipped.add(kind)
        return value

    values: dict[str, str | None] = {}
    if FN in schema:
        values[FN] = one("first_name", mapping.first_name, normalise_name)
    if LN in schema:
        values[LN] = one("last_name", mapping.last_name, normalise_name)
    if ZIP in schema:
        values[ZIP] = one(
            "postal_code", mapping.postal_code, lambda r: normalise_postal_code(r, place)
        )
    if CT in schema:
        values[CT] = one("city", columns.city, normalise_city)
    if ST in schema:
        values[ST] = one("state", columns.state, lambda r: normalise_state(r, place))
    if COUNTRY in schema:
        values[COUNTRY] = country.lower() if country is not None else None
    extern = normalise_extern_id(key) if EXTERN_ID in schema else None

    if not (emails or phone_values or extern or (values.get(FN) and values.get(LN))):
        return None
    queues = {EMAIL: iter(emails), PHONE: iter(phone_values)}
    row: list[str] = []
    for name in schema:
        if name in queues:
            value = next(queues[name], None)
        elif name == EXTERN_ID:
            if extern is not None and not hash_extern_id:
                row.append(extern)
                continue
            value = extern
        else:
            value = values[name]
            if value is not None:
                row.append(_hash_repeated(value))
                continue
        row.append(sha256_hex(value) if value is not None else "")
    return tuple(row)


#: Every key segflow can fill, as many times as Meta takes it: a member's
#: codes come from this schema, and each request's schema from its members.
FULL_SCHEMA = (EMAIL,) * 3 + (PHONE,) * 3 + (FN, LN, ZIP, CT, ST, COUNTRY, EXTERN_ID)
#: The keys of a member's one ``a:`` code, in order.
PERSON_KEYS = (FN, LN, ZIP, CT, ST, COUNTRY)

_CITY_NAMES = frozenset({"city", "town", "locality"})
_STATE_NAMES = frozenset({"state", "province", "stateprovince", "stateorprovince", "county"})


def _header_key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def detect_columns(names: Sequence[str]) -> MetaColumns:
    """The first city and state columns of a dataset, by header name."""
    keys = [(_header_key(n), n) for n in names]
    city = next((n for k, n in keys if k in _CITY_NAMES), None)
    state = next((n for k, n in keys if k in _STATE_NAMES), None)
    return MetaColumns(city=city, state=state)


def member_codes(
    record: dict[str, str | None],
    mapping: Mapping,
    *,
    columns: MetaColumns = MetaColumns(),
    key: str | None = None,
    skipped: Skipped | None = None,
) -> list[str]:
    """One member's codes for the sync pass: what is stored as sent, and sent.

    ``e:<hash>`` per email and ``p:<hash>`` per phone (at most three each),
    one ``a:`` code holding the six person keys' hashes in
    :data:`PERSON_KEYS` order (``""`` for a key without a value) when any has
    one, and ``x:<hash>`` for the dataset key when ``key`` is given. A remove
    names the member with the same codes. [] when the member names no one.
    """
    row = member_row(record, mapping, FULL_SCHEMA, columns=columns, key=key, skipped=skipped)
    if row is None:
        return []
    values = dict(zip(FULL_SCHEMA[6:], row[6:], strict=True))
    codes = [f"e:{h}" for h in row[0:3] if h]
    codes += [f"p:{h}" for h in row[3:6] if h]
    person = [values[k] for k in PERSON_KEYS]
    if any(person):
        codes.append("a:" + ":".join(person))
    if values[EXTERN_ID]:
        codes.append(f"x:{values[EXTERN_ID]}")
    return codes


def request_rows(codes_per_member: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """The schema and rows of one request for members' codes (:func:`member_codes`).

    The schema holds as many ``EMAIL`` and ``PHONE`` keys as the member with
    the most, the person keys when any member has them and ``EXTERN_ID``
    when any has one; each row fills the schema, ``""`` where the member has
    no value, as Meta's own uploader sends.
    """
    parsed = []
    emails = phones_most = 0
    person = extern = False
    for codes in codes_per_member:
        e = [c[2:] for c in codes if c[0] == "e"]
        p = [c[2:] for c in codes if c[0] == "p"]
        a = next((c[2:].split(":") for c in codes if c[0] == "a"), None)
        x = next((c[2:] for c in codes if c[0] == "x"), None)
        emails, phones_most = max(emails, len(e)), max(phones_most, len(p))
        person = person or a is not None
        extern = extern or x is not None
        parsed.append((e, p, a, x))
    schema = [EMAIL] * emails + [PHONE] * phones_most
    if person:
        schema += PERSON_KEYS
    if extern:
        schema.append(EXTERN_ID)
    rows = []
    for e, p, a, x in parsed:
        row = e + [""] * (emails - len(e)) + p + [""] * (phones_most - len(p))
        if person:
            row += a if a is not None else [""] * len(PERSON_KEYS)
        if extern:
            row.append(x or "")
        rows.append(row)
    return schema, rows
