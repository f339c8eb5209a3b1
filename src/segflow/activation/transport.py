"""What every sender shares: the batch a sync pass hands over, and how sending fails.

A :class:`Sender` delivers one batch of :class:`OutMember` (an ingest or a
remove) to one destination and returns the platform's request id. Senders
turn a platform's failures into the kinds the sync pass acts on:

* :class:`TransientError`: try again later (``retry_after`` when the
  platform said how long to wait); :class:`QuotaExhausted` is the kind that
  says which request quota ran out, so the wait runs to when it refills;
* :class:`MembersRejected`: the request was refused because of the members
  it names; the rest are sent again without them;
* :class:`RequestRejected`: refused as invalid without naming a member; the
  only failure that justifies splitting a batch to find the bad ones;
* :class:`LinkBroken`: credentials, permissions, terms, consent or a missing
  list; nothing can succeed until a person fixes it, so the link pauses.

An accepted request answers a :class:`Receipt`: the platform's request id,
with the warnings the answer carried.

The platforms' own senders live beside this module (:mod:`.senders` builds
the one a destination needs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

INGEST = "ingest"
REMOVE = "remove"

#: Google's limits per request.
MAX_MEMBERS_PER_REQUEST = 10_000
MAX_IDENTIFIERS_PER_MEMBER = 10


class TransientError(Exception):
    """Worth retrying later; ``retry_after`` is the server's requested delay in seconds.

    ``unanswered``: the request may have reached the platform (a timeout, a
    connection lost after sending) and may still be applied.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, *, unanswered: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unanswered = unanswered


class QuotaExhausted(TransientError):
    """The platform's request quota ran out: ``window`` is ``"minute"`` or ``"day"``.

    ``limit`` names the quota as the platform does, when it said which.
    """

    def __init__(
        self,
        message: str,
        window: str,
        limit: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after)
        self.window = window
        self.limit = limit


class RequestRejected(Exception):
    """The platform refused the request as invalid without saying which member."""


class MembersRejected(Exception):
    """The platform refused the request because of the members it named.

    ``reasons`` maps a member's position in the batch to the platform's reason.
    """

    def __init__(self, message: str, reasons: Mapping[int, str]) -> None:
        super().__init__(message)
        self.reasons = dict(reasons)


class LinkBroken(Exception):
    """Needs a person: credentials, permissions, terms, consent or a missing list."""


class Receipt(str):
    """A platform's request id, carrying the warnings its answer gave (no member data).

    ``settings`` are destination settings the request made known (the id of
    an audience it created); the sync pass stores them with the answer.
    """

    warnings: tuple[str, ...]
    settings: dict[str, Any]

    def __new__(
        cls,
        request_id: str,
        warnings: Sequence[str] = (),
        settings: Mapping[str, Any] | None = None,
    ) -> Receipt:
        made = super().__new__(cls, request_id)
        made.warnings = tuple(warnings)
        made.settings = dict(settings or {})
        return made


@dataclass(frozen=True)
class OutMember:
    """One audience member as it will be sent: identifier codes and consent."""

    rid: int
    codes: tuple[str, ...]
    #: (ad_user_data, ad_personalization) from the record, each None for
    #: "the destination's default".
    consent: tuple[str | None, str | None] = (None, None)


class Sender(Protocol):
    """Delivers batches to one destination."""

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        """Deliver one batch; return the platform's request id (a :class:`Receipt`
        when the answer carried warnings)."""

    def close(self) -> None: ...
