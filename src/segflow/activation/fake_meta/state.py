"""What the fake holds: tokens, ad accounts, their Custom Audiences and each audience's entries.

An audience holds entries, one per distinct row added: the row's
``(key, value)`` pairs without empty values (:data:`Entry`). Meta matches a
remove row to people, not to rows, so :meth:`Audience.remove_matching` takes
out every entry sharing any strong identifier (EMAIL, PHONE, EXTERN_ID,
MADID) with the row, and every entry with the row's first and last name and
every other key the row gives (an address match).

It also owns the ``/users`` edge's payload rules: :func:`read_payload` turns
the ``payload`` parameter into a :class:`Payload` (raising the
:class:`~segflow.activation.fake_meta.errors.GraphError` Meta would answer
for a malformed request); :func:`row_entry` checks one row and gives the
entry it stands for, or the reason it is an invalid entry.
"""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from segflow.activation.fake_meta.errors import GraphError, invalid_parameter, missing_parameter

#: One held entry: a row's ``(schema key, value)`` pairs, empty values left out.
Entry = frozenset[tuple[str, str]]

#: Keys that on their own name one person, so one shared value is a match.
STRONG_KEYS = frozenset({"EMAIL", "PHONE", "EXTERN_ID", "MADID"})
HOUR = 3600.0


@dataclass
class Token:
    token: str
    accounts: set[str]
    expired: bool = False
    revoked: bool = False
    permissions: frozenset[str] = frozenset({"ads_management"})

    def may_read(self) -> bool:
        return bool(self.permissions & {"ads_management", "ads_read"})

    def may_write(self) -> bool:
        return "ads_management" in self.permissions


@dataclass
class Account:
    """An ad account; ``account_id`` is the digits (``act_`` is the node id's prefix)."""

    account_id: str
    name: str
    account_status: int = 1
    business: tuple[str, str] | None = None
    #: Whether the Custom Audience terms are accepted (``tos_accepted.custom_audience_tos``).
    tos: bool = True

    @property
    def node_id(self) -> str:
        return f"act_{self.account_id}"


@dataclass
class Session:
    """A ``session`` of ``/users`` calls: the batches seen and the rows received."""

    session_id: int
    batches: set[int] = field(default_factory=set)
    received: int = 0
    invalid: int = 0
    finished: bool = False


@dataclass
class Audience:
    audience_id: str
    account_id: str
    name: str
    description: str
    subtype: str
    customer_file_source: str
    time_updated: int
    entries: set[Entry] = field(default_factory=set)
    sessions: dict[int, Session] = field(default_factory=dict)
    _strong: dict[tuple[str, str], set[Entry]] = field(default_factory=dict, repr=False)
    _names: dict[tuple[str, str], set[Entry]] = field(default_factory=dict, repr=False)

    def add(self, entry: Entry) -> None:
        if not entry or entry in self.entries:
            return
        self.entries.add(entry)
        for pair in entry:
            if pair[0] in STRONG_KEYS:
                self._strong.setdefault(pair, set()).add(entry)
        name = _name(entry)
        if name is not None:
            self._names.setdefault(name, set()).add(entry)

    def remove_matching(self, row: Entry) -> int:
        """Take out every entry the row names (see the module docstring); return how many."""
        doomed: set[Entry] = set()
        for pair in row:
            if pair[0] in STRONG_KEYS:
                doomed |= self._strong.get(pair, set())
        name = _name(row)
        if name is not None:
            others = [p for p in row if p[0] not in STRONG_KEYS and p[0] not in ("FN", "LN")]
            for held in self._names.get(name, set()):
                if all(p in held for p in others):
                    doomed.add(held)
        for entry in doomed:
            self._discard(entry)
        return len(doomed)

    def _discard(self, entry: Entry) -> None:
        self.entries.discard(entry)
        for pair in entry:
            if pair[0] in STRONG_KEYS:
                _drop(self._strong, pair, entry)
        name = _name(entry)
        if name is not None:
            _drop(self._names, name, entry)

    def hashes(self, key: str) -> set[str]:
        return {value for entry in self.entries for k, value in entry if k == key}

    def count_bounds(self) -> tuple[int, int]:
        """Meta reports a range, not a count: the fake's is the held count +/- 10 %."""
        size = len(self.entries)
        return size - size // 10, size + math.ceil(size / 10)


def _name(entry: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    first = last = None
    for key, value in entry:
        if key == "FN":
            first = value
        elif key == "LN":
            last = value
    if first is None or last is None:
        return None
    return first, last


def _drop(index: dict[tuple[str, str], set[Entry]], key: tuple[str, str], entry: Entry) -> None:
    holders = index.get(key)
    if holders is not None:
        holders.discard(entry)
        if not holders:
            del index[key]


class CallBudget:
    """Calls per ad account in a rolling hour, for the custom-audience business use case.

    Refused calls are not counted: a client that keeps retrying while blocked
    must still see ``estimated_time_to_regain_access`` come down.
    """

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._calls: dict[str, collections.deque[float]] = {}

    def _window(self, account_id: str, now: float) -> collections.deque[float]:
        calls = self._calls.setdefault(account_id, collections.deque())
        while calls and calls[0] <= now - HOUR:
            calls.popleft()
        return calls

    def over(self, account_id: str, now: float) -> bool:
        return len(self._window(account_id, now)) >= self.per_hour

    def charge(self, account_id: str, now: float) -> None:
        self._window(account_id, now).append(now)

    def usage(self, account_id: str, now: float) -> tuple[int, int]:
        """(percent of the budget used, minutes until a call is possible again)."""
        calls = self._window(account_id, now)
        percent = min(100, len(calls) * 100 // max(1, self.per_hour))
        if len(calls) < self.per_hour:
            return percent, 0
        # The budget frees up when the oldest call over the limit leaves the window.
        oldest = calls[len(calls) - self.per_hour]
        return percent, max(1, math.ceil((oldest + HOUR - now) / 60))


# -- the /users payload

#: Keys Meta hashes: a value must be a lower-case SHA-256 hex digest, or "".
HASHED_KEYS = frozenset(
    {
        "EMAIL",
        "PHONE",
        "FN",
        "LN",
        "ZIP",
        "CT",
        "ST",
        "COUNTRY",
        "DOBY",
        "DOBM",
        "DOBD",
        "GEN",
        "FI",
    }
)
#: Keys Meta takes as sent (a device id; the advertiser's own id).
PLAIN_KEYS = frozenset({"MADID", "EXTERN_ID"})
#: Spellings Meta's SDKs send for a single-key schema of hashes.
ALIASES = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE"}
#: Keys that may repeat in one schema, and how often (Meta: up to 3 emails, 3 phones).
REPEATABLE = {"EMAIL": 3, "PHONE": 3}
#: Rows in one request (Custom Audience Users reference: "only a maximum of 10000 at a time").
MAX_ROWS = 10_000
#: Limited Data Use: country 1 is the US; state codes 1000 and up are US states
#: (1000 California); 0 and 0 ask Meta to geolocate.
LDU_COUNTRIES = frozenset({0, 1})
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Payload:
    keys: list[str]
    rows: list[list[str]]


def _bad(title: str, message: str) -> GraphError:
    return invalid_parameter(title, message)


def read_payload(params: dict[str, str]) -> Payload:
    text = params.get("payload")
    if text is None or text == "":
        raise missing_parameter("payload")
    try:
        payload = json.loads(text)
    except ValueError:
        raise _bad("Invalid Payload", "The payload parameter is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise _bad("Invalid Payload", "The payload must be a JSON object.")
    schema = payload.get("schema")
    single = isinstance(schema, str)
    if single:
        keys_in: list[object] = [schema]
    elif isinstance(schema, list) and schema:
        keys_in = list(schema)
    else:
        raise _bad("Invalid Schema", "The payload needs a schema: a key or a list of keys.")
    keys: list[str] = []
    for key in keys_in:
        if not isinstance(key, str):
            raise _bad("Invalid Schema", f"Schema keys are strings, not {key!r}.")
        canon = ALIASES.get(key, key)
        if canon not in HASHED_KEYS and canon not in PLAIN_KEYS:
            raise _bad("Invalid Schema", f"{key} is not a valid schema key.")
        keys.append(canon)
    for key in set(keys):
        allowed = REPEATABLE.get(key, 1)
        if keys.count(key) > allowed:
            raise _bad(
                "Invalid Schema",
                f"The schema may hold {key} at most {allowed} time{'s' if allowed > 1 else ''}.",
            )
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        raise _bad("Missing Data", "The payload has no data to upload.")
    if len(data) > MAX_ROWS:
        raise _bad(
            "Too Many Entries",
            f"A request may carry at most {MAX_ROWS} entries; this one has {len(data)}. "
            "Split the list into several requests.",
        )
    rows: list[list[str]] = []
    width = len(keys)
    for index, row in enumerate(data):
        if single and not isinstance(row, list):
            row = [row]
        if not isinstance(row, list) or len(row) != width:
            raise _bad(
                "Row Does Not Match Schema",
                f"Row {index} has {len(row) if isinstance(row, list) else 1} values; "
                f"the schema has {width} keys.",
            )
        rows.append([value if isinstance(value, str) else str(value) for value in row])
    _check_data_processing(payload)
    return Payload(keys, rows)


def _check_data_processing(payload: dict[str, object]) -> None:
    """Meta's Data Processing Options: ``[]`` or ``["LDU"]``, LDU with a country and state."""
    options = payload.get("data_processing_options")
    if options is None:
        return
    if not isinstance(options, list) or any(o != "LDU" for o in options) or len(options) > 1:
        raise _bad(
            "Invalid Data Processing Options",
            'data_processing_options is [] or ["LDU"].',
        )
    if not options:
        return
    country = payload.get("data_processing_options_country", 0)
    state = payload.get("data_processing_options_state", 0)
    if not isinstance(country, int) or not isinstance(state, int):
        raise _bad(
            "Invalid Data Processing Options",
            "data_processing_options_country and _state are integers.",
        )
    if country not in LDU_COUNTRIES:
        raise _bad(
            "Invalid Data Processing Options",
            "Limited Data Use takes country 1 (the US), or 0 to let Meta geolocate.",
        )
    if country == 0 and state != 0:
        raise _bad(
            "Invalid Data Processing Options",
            "With country 0 (geolocate) the state is 0 as well.",
        )
    if country == 1 and state != 0 and state < 1000:
        raise _bad(
            "Invalid Data Processing Options",
            "US state codes start at 1000 (California); 0 lets Meta geolocate.",
        )


def row_entry(keys: list[str], row: list[str], refuse: set[str]) -> tuple[Entry | None, str]:
    """The entry a row stands for, or None and the reason it is an invalid entry."""
    pairs: list[tuple[str, str]] = []
    for key, value in zip(keys, row, strict=True):
        if value == "":
            continue
        if key in HASHED_KEYS and not _HEX64.fullmatch(value):
            return None, key
        if value in refuse:
            return None, key
        pairs.append((key, value))
    if not pairs:
        return None, "EMPTY"
    return frozenset(pairs), ""
