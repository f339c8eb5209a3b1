"""What the fake checks in an audience-members request before it touches any list.

Google's Data Manager API fails fast: one bad record fails the whole request,
and the answer names every problem it found as a ``BadRequest`` field
violation with its ``ErrorReason``. Problems with the request as a whole
(destinations, encoding, terms, the number of members) are reported alone;
problems with members are all reported together, one violation per problem,
each naming the member's index (``audience_members.audience_members[i]``).

:func:`field_warnings` builds the warnings an accepted ingest's answer carries.

:func:`member_key` is how the fake (and the tests) name a member: the sorted
identifier codes it carries, ``e:<hash>``, ``p:<hash>``,
``a:<given>:<family>:<region>:<postal>``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from google.ads.datamanager_v1.types import processing_errors as pe

from segflow.activation.fake.errors import Violation, path

Member = tuple[str, ...]

MAX_DESTINATIONS = 10
MAX_MEMBERS = 10_000
MAX_IDENTIFIERS = 10

# Google's own samples send upper-case hex, so either case is accepted.
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HEX = re.compile(r"[0-9a-fA-F]*")
_REGION = re.compile(r"[A-Z]{2}")

ENCODING_UNSPECIFIED, HEX, BASE64 = 0, 1, 2
GOOGLE_ADS = 1  # ProductAccount.AccountType.GOOGLE_ADS
ACCEPTED = 1  # TermsOfServiceStatus.ACCEPTED


def member_key(member: Any) -> Member:
    """A member as the sorted identifier strings it carries."""
    parts = []
    for identifier in member.user_data.user_identifiers:
        which = identifier.WhichOneof("identifier")
        if which == "email_address":
            parts.append(f"e:{identifier.email_address}")
        elif which == "phone_number":
            parts.append(f"p:{identifier.phone_number}")
        elif which == "address":
            a = identifier.address
            parts.append(f"a:{a.given_name}:{a.family_name}:{a.region_code}:{a.postal_code}")
    return tuple(sorted(parts))


def destination_problems(request: Any) -> list[Violation]:
    """Problems with the destinations' shape (accounts and lists are checked against state)."""
    count = len(request.destinations)
    if count == 0:
        return [Violation("destinations", "REQUIRED_FIELD_MISSING", "a destination is required")]
    if count > MAX_DESTINATIONS:
        return [
            Violation(
                "destinations",
                "TOO_MANY_DESTINATIONS",
                f"at most {MAX_DESTINATIONS} destinations per request",
            )
        ]
    out = []
    for index, destination in enumerate(request.destinations):
        account = destination.operating_account
        if account.account_type != GOOGLE_ADS:
            out.append(
                Violation(
                    path("destinations", index, ".operating_account.account_type"),
                    "INVALID_DESTINATION",
                    "this fake holds Google Ads Customer Match lists only",
                )
            )
        if not account.account_id:
            out.append(
                Violation(
                    path("destinations", index, ".operating_account.account_id"),
                    "REQUIRED_FIELD_MISSING",
                )
            )
        elif not account.account_id.isdigit():
            out.append(
                Violation(
                    path("destinations", index, ".operating_account.account_id"),
                    "INVALID_FORMAT",
                    "a Google Ads account id is digits only",
                )
            )
        if not destination.product_destination_id:
            out.append(
                Violation(
                    path("destinations", index, ".product_destination_id"),
                    "REQUIRED_FIELD_MISSING",
                )
            )
    return out


def request_problems(request: Any, ingest: bool) -> list[Violation]:
    """Problems with the request as a whole: encoding, terms, consent, member count."""
    out = []
    if request.encoding == ENCODING_UNSPECIFIED:
        out.append(Violation("encoding", "REQUIRED_FIELD_MISSING", "HEX or BASE64 is required"))
    if ingest:
        if request.terms_of_service.customer_match_terms_of_service_status != ACCEPTED:
            out.append(
                Violation(
                    "terms_of_service.customer_match_terms_of_service_status",
                    "TERMS_AND_CONDITIONS_NOT_SIGNED",
                    "the Customer Match terms of service must be accepted",
                )
            )
        # Google documents request consent as optional; the fake requires it so
        # that a sender never leaves consent to chance.
        if not request.HasField("consent"):
            out.append(Violation("consent", "REQUIRED_FIELD_MISSING", "consent is required"))
    count = len(request.audience_members)
    if count == 0:
        out.append(Violation("audience_members", "REQUIRED_FIELD_MISSING"))
    elif count > MAX_MEMBERS:
        out.append(
            Violation(
                "audience_members",
                "TOO_MANY_AUDIENCE_MEMBERS",
                f"{count} members; at most {MAX_MEMBERS:,} per request",
            )
        )
    return out


def member_keys(request: Any) -> list[Member]:
    """Each member's :func:`member_key`, in order (read once a request: the checks, the
    lists and the warnings all use them)."""
    return [member_key(member) for member in request.audience_members]


def member_problems(
    request: Any, refuse: Iterable[str], keys: list[Member] | None = None
) -> list[Violation]:
    """Every problem of every member, in member order.

    ``keys`` (:func:`member_keys`), when given, let a request whose every value
    is well formed pass with a few checks over all of them at once; any doubt,
    and the members are looked at one by one for the exact violations.
    """
    refused = set(refuse)
    if keys is not None and _all_well_formed(request, keys) and not refused:
        return []
    base64_encoded = request.encoding == BASE64
    out: list[Violation] = []
    for index, member in enumerate(request.audience_members):
        at = path("audience_members", index)
        identifiers = member.user_data.user_identifiers
        if not identifiers:
            out.append(
                Violation(f"{at}.user_data", "NO_IDENTIFIERS_PROVIDED", "no user identifiers")
            )
            continue
        if len(identifiers) > MAX_IDENTIFIERS:
            out.append(
                Violation(
                    f"{at}.user_data.user_identifiers",
                    "TOO_MANY_USER_IDENTIFIERS",
                    f"{len(identifiers)} identifiers; at most {MAX_IDENTIFIERS}",
                )
            )
        for identifier in identifiers:
            out.extend(_identifier_problems(at, identifier, base64_encoded))
        if refused and refused.intersection(member_key(member)):
            out.append(
                Violation(
                    at, "INVALID_AUDIENCE_MEMBER", "an identifier the fake was told to refuse"
                )
            )
    return out


#: Every code of a request, each followed by a newline, all well formed: an
#: email or phone hash, or an address of two hashes, a region and a postal
#: code (no ":" inside a part, none empty).
_WELL_FORMED = re.compile(
    r"(?:(?:[ep]:[0-9a-fA-F]{64}|a:[0-9a-fA-F]{64}:[0-9a-fA-F]{64}:[A-Z]{2}:[^:\n]+)\n)*+"
)


def _all_well_formed(request: Any, keys: list[Member]) -> bool:
    """Whether no member can have a problem: hex hashes, regions and postal codes
    all well formed and every member holding 1 to 10 identifiers, each with a value."""
    if request.encoding == BASE64:
        return False
    if not all(0 < len(key) <= MAX_IDENTIFIERS for key in keys):
        return False
    # A key leaves out an identifier without a value, so the key of every
    # member is as long as its identifiers exactly when the totals are equal.
    identifiers = sum(len(member.user_data.user_identifiers) for member in request.audience_members)
    codes = [code for key in keys for code in key]
    if len(codes) != identifiers:
        return False
    joined = "\n".join(codes) + "\n" if codes else ""
    # The count rules out a newline inside a value ("<hash>\n<hash>").
    return joined.count("\n") == len(codes) and _WELL_FORMED.fullmatch(joined) is not None


def _identifier_problems(at: str, identifier: Any, base64_encoded: bool) -> list[Violation]:
    which = identifier.WhichOneof("identifier")
    where = f"{at}.user_data.user_identifiers"
    if which in ("email_address", "phone_number"):
        kind = "Email" if which == "email_address" else "Phone number"
        reason = _hash_problem(getattr(identifier, which), base64_encoded)
        if reason is None:
            return []
        if reason == "INVALID_SHA256_FORMAT":
            return [Violation(at, reason, f"{kind} is not a SHA-256 hash.")]
        encoding = "base64" if base64_encoded else "hex"
        return [Violation(where, reason, f"{kind} is not {encoding} encoded.")]
    if which == "address":
        a = identifier.address
        out = []
        for name in ("given_name", "family_name"):
            reason = _hash_problem(getattr(a, name), base64_encoded)
            if reason is not None:
                out.append(Violation(f"{where}.address.{name}", reason))
        if not _REGION.fullmatch(a.region_code):
            out.append(
                Violation(
                    f"{where}.address.region_code",
                    "INVALID_REGION_CODE",
                    "a two-letter upper-case ISO 3166-1 code is required",
                )
            )
        if not a.postal_code:
            out.append(Violation(f"{where}.address.postal_code", "INVALID_POSTAL_CODE"))
        return out
    return [Violation(where, "REQUIRED_FIELD_MISSING", "an identifier carries no value")]


def _hash_problem(value: str, base64_encoded: bool) -> str | None:
    if base64_encoded:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "INVALID_BASE64_ENCODING"
        return None if len(raw) == 32 else "INVALID_SHA256_FORMAT"
    if _HEX_SHA256.fullmatch(value):
        return None
    if value and len(value) % 2 == 0 and _HEX.fullmatch(value):
        return "INVALID_SHA256_FORMAT"
    return "INVALID_HEX_ENCODING"


def field_warnings(
    request: Any, warn: dict[str, str], keys: list[Member] | None = None
) -> list[Any]:
    """The ``FieldWarning`` s an accepted ingest's answer carries: one per member holding
    an identifier of ``warn`` (identifier code -> ``WarningReason`` name), naming the
    member's ``user_data`` as Google names fields."""
    if not warn:
        return []
    found = []
    for i, key in enumerate(keys if keys is not None else member_keys(request)):
        hits = sorted(c for c in key if c in warn)
        if hits:
            reason = getattr(pe.WarningReason, warn[hits[0]])
            found.append(
                pe.FieldWarning.pb()(
                    reason=reason,
                    field=f"audience_members.audience_members[{i}].user_data",
                    description="a value was ignored",
                )
            )
    return found
