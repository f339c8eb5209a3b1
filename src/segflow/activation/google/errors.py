"""What a failure of Google's client or of google-auth means for the sync pass.

Google's Data Manager API answers a failed call with a gRPC status whose
details (the ``grpc-status-details-bin`` trailer, decoded by google-api-core
into the exception's ``details``) say what went wrong: an ``ErrorInfo``
(reason and metadata), ``BadRequest`` field violations (the request field,
for a member ``audience_members[i]...``, each with its ``ErrorReason`` name),
``QuotaFailure`` (which quota ran out) and ``RetryInfo``. Google's own samples
put only the generic ``INVALID_ARGUMENT`` in ``ErrorInfo.reason``: the
violations carry the specific reasons, so they are read first.

:func:`classify` maps an exception to one kind of
:mod:`segflow.activation.transport`:

* violations naming members -> ``MembersRejected`` (every named member, with
  its reasons), unless something names the destination too;
* a reason or violation about the list, the accounts, the terms, consent or
  any other part of the request but its members -> ``LinkBroken``, with
  Google's reason and field shown;
* ``RESOURCE_EXHAUSTED`` -> ``QuotaExhausted`` saying whether the minute's or
  the day's quota ran out;
* a refresh of OAuth credentials refused for good -> ``LinkBroken`` ("re-
  authorise"); one that may work later -> ``TransientError``;
* ``INVALID_ARGUMENT`` naming nothing -> ``RequestRejected`` (the sync pass
  may split it, within a bound).

Messages never carry a credential value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as core
from google.auth import exceptions as auth

from segflow.activation.credentials import refresh_error, scrub
from segflow.activation.transport import (
    LinkBroken,
    MembersRejected,
    QuotaExhausted,
    RequestRejected,
    TransientError,
)

#: ``audience_members[3]...`` or, as Google's samples write it,
#: ``audience_members.audience_members[3]...``.
_MEMBER_FIELD = re.compile(r"^(?:audience_members\.)?audience_members\[(\d+)\]")
#: ``destinations.destinations[0]`` -> ``destinations[0]`` for display.
_REPEATED = re.compile(r"\b(\w+)\.\1\[")

#: ``ErrorReason`` names that nothing but a person can fix: the list, the
#: accounts and their relation, terms, allow-lists.
LINK_REASONS = frozenset(
    {
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "INVALID_DESTINATION",
        "INVALID_USER_LIST_ID",
        "INVALID_USER_LIST_TYPE",
        "TOO_MANY_DESTINATIONS",
        "DUPLICATE_DESTINATION_REFERENCE",
        "DATA_PARTNER_USER_LIST_MUTATE_NOT_ALLOWED",
        "DIFFERENT_LOGIN_ACCOUNTS_NOT_ALLOWED_FOR_DATA_PARTNER",
        "TERMS_AND_CONDITIONS_NOT_SIGNED",
        "ADVERTISER_TOS_NOT_ACCEPTED",
        "UNSUPPORTED_OPERATING_ACCOUNT_FOR_DATA_PARTNER",
        "UNSUPPORTED_LINKED_ACCOUNT_FOR_DATA_PARTNER",
        "LINKED_ACCOUNT_ONLY_ALLOWED_WITH_DATA_PARTNER_LOGIN_ACCOUNT",
        "OPERATING_ACCOUNT_LOGIN_ACCOUNT_MISMATCH",
        "DESTINATION_ACCOUNT_TYPE_MISMATCH",
        "MISMATCHED_ACCOUNT_TYPE",
        "INVALID_CLIENT_ACCOUNT_ID",
        "NOT_ALLOWLISTED",
        "USER_LIST_TYPE_NOT_SUPPORTED_FOR_ACCOUNT",
        "UNSUPPORTED_USER_LIST_UPLOAD_KEY_TYPES",
        "EU_POLITICAL_ADVERTISING_DECLARATION_REQUIRED",
    }
)
#: Reasons about the number of members in one request: halving helps.
SIZE_REASONS = frozenset({"TOO_MANY_AUDIENCE_MEMBERS", "TOO_MANY_ELEMENTS"})

REAUTHORISE = (
    "credentials were revoked or expired: re-authorise (store new credentials for this "
    "destination, then segflow links resume SEGMENT DESTINATION)"
)


@dataclass(frozen=True)
class Violation:
    """One ``BadRequest`` field violation."""

    field: str
    reason: str
    description: str = ""

    @property
    def member(self) -> int | None:
        """The index of the member it names, if it names one."""
        found = _MEMBER_FIELD.match(self.field)
        return int(found.group(1)) if found else None

    def shown(self) -> str:
        where = f" ({display_field(self.field)})" if self.field else ""
        said = f": {self.description}" if self.description else ""
        return f"{self.reason or 'INVALID_ARGUMENT'}{where}{said}"


@dataclass(frozen=True)
class Details:
    """What a failed call's status said, read from its standard detail payloads."""

    status: str
    message: str
    reason: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: tuple[Violation, ...] = ()
    #: ``QuotaFailure`` violations as (quota id or limit name, description).
    quotas: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None


def details_of(exc: BaseException) -> Details:
    """Read the status name, ``ErrorInfo``, ``BadRequest``, ``QuotaFailure``, ``RetryInfo``."""
    code = getattr(exc, "grpc_status_code", None)
    status = code.name if code is not None else type(exc).__name__
    message = str(getattr(exc, "message", None) or exc)
    reason: str | None = None
    metadata: dict[str, str] = {}
    violations: list[Violation] = []
    quotas: list[tuple[str, str]] = []
    retry_after: float | None = None
    for detail in getattr(exc, "details", None) or []:
        name = type(detail).__name__
        if name == "ErrorInfo":
            reason = reason or detail.reason or None
            metadata.update(dict(detail.metadata))
        elif name == "BadRequest":
            violations.extend(
                Violation(v.field, v.reason, v.description) for v in detail.field_violations
            )
        elif name == "QuotaFailure":
            quotas.extend(
                (getattr(v, "quota_id", "") or v.subject, v.description) for v in detail.violations
            )
        elif name == "RetryInfo" and detail.HasField("retry_delay"):
            delay = detail.retry_delay
            retry_after = float(delay.seconds) + float(delay.nanos) / 1e9
    if reason is None:
        # An exception built with error_info but no ErrorInfo among its details.
        reason = getattr(exc, "reason", None) or None
    return Details(status, message, reason, metadata, tuple(violations), tuple(quotas), retry_after)


def classify(exc: BaseException, secret: Any = None) -> Exception:
    """Map a client or auth failure to what the sync worker should do."""
    kind = _classify(exc)
    # The one place a message leaves this module: scrub it here.
    text = scrub(str(kind), secret)
    if isinstance(kind, MembersRejected):
        return MembersRejected(
            text, {i: scrub(reason, secret) for i, reason in kind.reasons.items()}
        )
    if isinstance(kind, QuotaExhausted):
        return QuotaExhausted(text, kind.window, kind.limit, kind.retry_after)
    if isinstance(kind, TransientError):
        return TransientError(text, kind.retry_after, unanswered=kind.unanswered)
    return type(kind)(text)


def _classify(exc: BaseException) -> Exception:
    if isinstance(exc, auth.RefreshError):
        if getattr(exc, "retryable", False):
            return TransientError(
                f"Google's token server failed, will try again: {refresh_error(exc)}"
            )
        return LinkBroken(f"{REAUTHORISE}: {refresh_error(exc)}")
    if isinstance(exc, auth.DefaultCredentialsError):
        return LinkBroken(f"no usable credentials: {exc}")
    if isinstance(exc, auth.TransportError):
        return TransientError(f"Google's token server could not be reached: {refresh_error(exc)}")
    if not isinstance(exc, core.GoogleAPIError):
        # A bug in a transport, a closed channel: retried rather than losing
        # the batch; the log keeps the reason.
        return TransientError(f"{type(exc).__name__}: {exc}")
    d = details_of(exc)
    if isinstance(exc, core.ResourceExhausted | core.TooManyRequests):
        return _quota(d)
    if isinstance(exc, core.ServiceUnavailable) and "invalid_grant" in d.message:
        # The token plugin's refresh failed inside the call: gRPC reports it
        # as UNAVAILABLE ("Getting metadata from plugin failed").
        return LinkBroken(REAUTHORISE)
    if isinstance(exc, core.Unauthenticated) and d.reason == "ACCESS_TOKEN_EXPIRED":
        # The token ran out (or was revoked) after google-auth last checked it:
        # the next attempt refreshes, and a revoked grant then pauses the link.
        return TransientError(f"{d.status} {d.reason}: a new access token will be fetched")
    if isinstance(
        exc,
        core.InvalidArgument
        | core.BadRequest
        | core.PermissionDenied
        | core.Forbidden
        | core.Unauthenticated
        | core.Unauthorized
        | core.NotFound
        | core.FailedPrecondition,
    ):
        return _refusal(exc, d)
    # Past its deadline a request may still be carried out at Google.
    return TransientError(
        f"{d.status}: {d.message}",
        d.retry_after,
        unanswered=isinstance(exc, core.DeadlineExceeded),
    )


def _refusal(exc: BaseException, d: Details) -> Exception:
    named: dict[int, list[str]] = {}
    about_link: list[Violation] = []
    about_size: list[Violation] = []
    unnamed: list[Violation] = []
    for v in d.violations:
        index = v.member
        if index is not None:
            named.setdefault(index, []).append(_member_reason(v))
        elif v.reason in SIZE_REASONS or v.field == "audience_members":
            about_size.append(v)
        elif v.field or v.reason in LINK_REASONS:
            about_link.append(v)
        else:
            unnamed.append(v)
    if about_link:
        return LinkBroken(_refused(about_link[0], others=len(about_link) - 1))
    if d.reason in LINK_REASONS:
        where = d.metadata.get("field", "")
        return LinkBroken(_refused(Violation(where, d.reason or "", d.message), others=0))
    if named:
        count = len(named)
        first = min(named)
        return MembersRejected(
            f"Google refused {count} member{'s' if count != 1 else ''} of the request "
            f"(first: #{first}: {named[first][0]})",
            {i: "; ".join(reasons) for i, reasons in named.items()},
        )
    if not isinstance(exc, core.InvalidArgument | core.BadRequest):
        # PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND, FAILED_PRECONDITION:
        # about who calls and what, never about members.
        said = f" {d.reason}" if d.reason else ""
        return LinkBroken(f"{d.status}{said}: {d.message}")
    shown = [v.shown() for v in (about_size + unnamed)]
    reason = f" {d.reason}" if d.reason and d.reason != d.status else ""
    extra = f" ({'; '.join(shown)})" if shown else ""
    return RequestRejected(f"{d.status}{reason}: {d.message}{extra}")


def _member_reason(v: Violation) -> str:
    """``INVALID_SHA256_FORMAT: description``, with the field below the member if any."""
    rest = _MEMBER_FIELD.sub("", v.field).lstrip(".")
    where = f" ({rest})" if rest else ""
    said = f": {v.description}" if v.description else ""
    return f"{v.reason or 'INVALID_ARGUMENT'}{where}{said}"


def _subject(v: Violation) -> str:
    """What a violation is about, in the words a user knows from segflow's settings."""
    probe = f"{v.field} {v.reason}".lower()
    for marker, subject in (
        ("product_destination_id", "the list"),
        ("user_list", "the list"),
        ("login_account", "the login account"),
        ("login account", "the login account"),
        ("operating_account", "the account"),
        ("linked_account", "the linked account"),
        ("terms", "the terms of service"),
        ("tos", "the terms of service"),
        ("consent", "the consent"),
        ("permission", "the account"),
        ("destination", "the destination"),
    ):
        if marker in probe:
            return subject
    return "the request"


def _refused(v: Violation, *, others: int) -> str:
    more = f" (and {others} more)" if others else ""
    return f"Google refused {_subject(v)}: {v.shown()}{more}"


def display_field(path: str) -> str:
    """``destinations.destinations[0].x`` (Google's spelling) as ``destinations[0].x``."""
    return _REPEATED.sub(r"\1[", path)


def _quota(d: Details) -> QuotaExhausted:
    """Which quota ran out: the ``QuotaFailure``, then ``ErrorInfo`` metadata, then the text."""
    candidates: Iterable[str] = [
        *(quota_id for quota_id, _ in d.quotas),
        d.metadata.get("quota_limit", ""),
        *(description for _, description in d.quotas),
        d.message,
    ]
    window, limit = "minute", None
    for text in candidates:
        found = _window(text)
        if found is not None:
            window = found
            limit = _limit_name(text)
            break
    else:
        limit = next((q for q, _ in d.quotas if q), None) or d.metadata.get("quota_limit") or None
    return QuotaExhausted(
        f"Google's per-{window} request quota is used up"
        + (f" ({limit})" if limit else "")
        + f": {d.message}",
        window,
        limit,
        d.retry_after,
    )


_DAY = re.compile(r"per ?day|perday|per-day|daily|\bday\b", re.IGNORECASE)
_MINUTE = re.compile(r"per ?minute|perminute|per-minute|\bminute\b", re.IGNORECASE)
_LIMIT_NAME = re.compile(r"\b([A-Z][A-Za-z]+Per(?:Day|Minute)[A-Za-z]*)\b")


def _window(text: str) -> str | None:
    if not text:
        return None
    if _DAY.search(text):
        return "day"
    if _MINUTE.search(text):
        return "minute"
    return None


def _limit_name(text: str) -> str | None:
    found = _LIMIT_NAME.search(text)
    return found.group(1) if found else None


def describe(exc: BaseException) -> str:
    """``STATUS_NAME: message`` for a gRPC error, ``Type: message`` otherwise."""
    if isinstance(exc, core.GoogleAPIError) and hasattr(exc, "grpc_status_code"):
        d = details_of(exc)
        return f"{d.status}: {d.message}"
    return f"{type(exc).__name__}: {exc}"


def retry_delay(exc: BaseException) -> float | None:
    """The delay a ``RetryInfo`` detail asks for, in seconds, if there is one."""
    return details_of(exc).retry_after
