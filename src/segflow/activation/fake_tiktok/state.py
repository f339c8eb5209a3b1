"""What the fake TikTok holds: tokens, advertisers, uploaded files and audiences.

Every method here takes the state's lock; the server decides what a request
may do and calls these to do it.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

EMAIL_SHA256 = "EMAIL_SHA256"
PHONE_SHA256 = "PHONE_SHA256"
#: TikTok's "Enumeration - Encryption Type" values for customer files. The
#: fake keeps members for the two segflow sends; the device-id types are
#: accepted as TikTok accepts them.
CALCULATE_TYPES = frozenset(
    {
        EMAIL_SHA256,
        PHONE_SHA256,
        "IDFA_SHA256",
        "IDFA_MD5",
        "GAID_SHA256",
        "GAID_MD5",
        "FIRST_SHA256",
        "FIRST_MD5",
    }
)
#: How :meth:`State.members` writes an id of each type: segflow's code prefixes.
CODE_PREFIX = {EMAIL_SHA256: "e:", PHONE_SHA256: "p:"}


@dataclass(frozen=True)
class UploadedFile:
    path: str
    advertiser_id: str
    calculate_type: str
    ids: frozenset[str]


@dataclass
class Audience:
    audience_id: str
    advertiser_id: str
    name: str
    calculate_type: str
    ids: set[str] = field(default_factory=set)
    retention_in_days: int | None = None
    #: (action, file count, size after), one per create or update.
    history: list[tuple[str, int, int]] = field(default_factory=list)


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: token -> advertiser ids it may act for.
        self.tokens: dict[str, set[str]] = {}
        self.expired: set[str] = set()
        self.advertisers: set[str] = set()
        self.files: dict[str, UploadedFile] = {}
        self.audiences: dict[str, Audience] = {}
        self._ids = itertools.count(7_300_000_000_000_000_001)

    def add_advertiser(self, advertiser_id: str) -> None:
        with self.lock:
            self.advertisers.add(advertiser_id)

    def add_token(self, token: str, advertisers: Iterable[str]) -> None:
        with self.lock:
            granted = set(advertisers)
            self.advertisers |= granted
            self.tokens.setdefault(token, set()).update(granted)
            self.expired.discard(token)

    def new_audience_id(self) -> str:
        with self.lock:
            return str(next(self._ids))

    def add_file(self, advertiser_id: str, calculate_type: str, ids: frozenset[str]) -> str:
        path = f"dmp/{advertiser_id}/{uuid.uuid4().hex}.txt"
        with self.lock:
            self.files[path] = UploadedFile(path, advertiser_id, calculate_type, ids)
        return path

    def add_audience(self, audience: Audience) -> None:
        with self.lock:
            self.audiences[audience.audience_id] = audience

    def members(self, audience_id: str) -> set[str]:
        with self.lock:
            audience = self.audiences.get(audience_id)
            if audience is None:
                return set()
            prefix = CODE_PREFIX.get(audience.calculate_type, "")
            return {prefix + i for i in audience.ids}
