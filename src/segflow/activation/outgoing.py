"""What the sync pass sends for each due add: identifiers and consent from the record.

The sync pass reads a batch of due adds and, for each, the record's current
values in the mapped columns. :func:`plan_adds` decides, member by member,
whether it is sent (with the identifier sets it replaces, to remove first),
settled without a request (its identifiers did not change), or refused
(deleted, or no usable identifier). It does no I/O: the sync pass writes what
it decides in the same transaction that read the batch.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.activation import identifiers as ids
from segflow.activation.among import among
from segflow.activation.platform import Encoder
from segflow.activation.transport import OutMember
from segflow.datasets import Column, Dataset
from segflow.db import records
from segflow.ingest.consent import DENIED, EMPTY, GRANTED, classify


@dataclass
class AddPlan:
    """What to do with one batch of due adds."""

    #: Members to add.
    members: list[OutMember] = field(default_factory=list)
    #: Identifier sets the list may hold that were replaced: removed first.
    stale: list[OutMember] = field(default_factory=list)
    #: ``sent``/``stale``/``have`` to write for the members added, keyed r, s, g, h.
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: Members refused before any request, keyed r, reason.
    refused: list[dict[str, Any]] = field(default_factory=list)
    #: Members whose consent was withdrawn while the list may hold them: their
    #: sets (keyed g, as JSON) become stale, removed first, and they are
    #: refused once that remove is answered. Keyed r, g, reason.
    withdrawn: list[dict[str, Any]] = field(default_factory=list)
    #: Record ids whose identifiers did not change: no longer pending.
    settled: list[int] = field(default_factory=list)
    #: Members past Google's limit of identifiers, and how many were left out.
    capped: ids.Capped = field(default_factory=ids.Capped)


def read_records(
    conn: Connection,
    dataset: Dataset,
    mapping: ids.Mapping,
    rids: list[int],
    extra: Sequence[str] = (),
) -> tuple[dict[str, Column | None], dict[int, sa.Row[Any]]]:
    """The mapped columns (and ``extra`` ones) by name, and these records' rows by rid.

    A row holds rid, deleted, key, then the value of each mapped column in
    ``mapped`` order (the columns a dataset lacks left out).
    """
    rec = records.table(dataset.records_table, dataset.columns)
    names = dict.fromkeys([*mapping.columns(), *extra])
    mapped = {name: dataset.column(name) for name in names}
    cols = [
        rec.c[records.raw_col(c.position)].label(f"c{c.position}")
        for c in mapped.values()
        if c is not None
    ]
    query = sa.select(rec.c.rid, rec.c.deleted, rec.c.key, *cols).where(
        among(conn, rec.c.rid, rids)
    )
    rows = conn.execute(query).all()
    return mapped, {r.rid: r for r in rows}


def plan_adds(
    due: Sequence[sa.Row[Any]],
    by_rid: dict[int, sa.Row[Any]],
    mapped: dict[str, Column | None],
    mapping: ids.Mapping,
    recent: dt.datetime,
    encoder: Encoder,
    *,
    sends_consent: bool = True,
) -> AddPlan:
    """Decide each due add: send, settle or refuse (see the module docstring).

    ``due`` rows carry the member's ``rid``, ``sent``, ``have``, ``acked_at``
    and ``stale``; a member acknowledged at or after ``recent`` whose
    identifiers are unchanged is settled. ``encoder`` is the destination's
    normaliser. Without ``sends_consent`` (a platform whose requests carry
    no consent) a member whose record denies ``ad_user_data`` or
    ``ad_personalization`` is refused: only Google is told a member's choice,
    so elsewhere it is never sent, and what the list may hold of it is removed.
    """
    plan = AddPlan()
    # Without consent columns every member takes the destination's consent.
    per_record = bool(mapping.consent_ad_user_data or mapping.consent_ad_personalization)
    no_consent: tuple[str | None, str | None] = (None, None)
    names = [name for name, col in mapped.items() if col is not None]
    # One member's unusable values at a time (a Counter a member costs more than its JSON).
    skipped = ids.Skipped()
    for item in due:
        rid = item.rid
        row = by_rid.get(rid)
        if row is None or row.deleted:
            plan.refused.append({"r": rid, "reason": "the record was deleted"})
            continue
        # The row's values after rid, deleted and key, in `mapped` order (read_records).
        record = dict(zip(names, row[3:], strict=True))
        if skipped.counts:
            skipped.counts.clear()
        consent, consent_key = no_consent, _NO_RECORD_CONSENT
        if per_record:
            consent = (
                consent_value(record.get(mapping.consent_ad_user_data or "")),
                consent_value(record.get(mapping.consent_ad_personalization or "")),
            )
            consent_key = consent_text(consent)
            if not sends_consent and DENIED in consent:
                held: list[list[str]] = json.loads(item.stale) if item.stale else []
                if item.sent and json.loads(item.sent) not in held:
                    held.append(json.loads(item.sent))
                if held:
                    plan.stale.extend(OutMember(rid, tuple(g)) for g in held)
                    plan.withdrawn.append(
                        {"r": rid, "g": json.dumps(held), "reason": DENIED_REASON}
                    )
                else:
                    plan.refused.append({"r": rid, "reason": DENIED_REASON})
                continue
        codes = encoder.codes(record, row.key, skipped, plan.capped)
        if not codes:
            # An encoder that sends one kind only says so (a TikTok phone audience).
            reason = getattr(encoder, "missing", None) or no_identifier_reason(mapping, skipped)
            plan.refused.append({"r": rid, "reason": reason})
            continue
        old = json.loads(item.sent) if item.sent else None
        if (
            item.have == 1
            and old == codes
            and (item.sent_consent or _NO_RECORD_CONSENT) == consent_key
            and item.acked_at
            and item.acked_at >= recent
        ):
            # The record changed; what Google was told of it did not.
            plan.settled.append(rid)
            continue
        # Earlier identifier sets the list may hold, each removed whole
        # (a remove names a member the way its ingest did).
        gone: list[list[str]] = json.loads(item.stale) if item.stale else []
        if old is not None and old != codes and old not in gone:
            gone.append(old)
        if gone:
            gone = [g for g in gone if g != codes]
            plan.stale.extend(OutMember(rid, tuple(g)) for g in gone)
        plan.members.append(OutMember(rid, tuple(codes), consent))
        plan.sent.append(
            {
                "r": rid,
                "s": ids.codes_json(codes),
                "g": json.dumps(gone) if gone else None,
                # Replaced identifiers: the list no longer holds this member as sent.
                "h": 0 if gone else item.have,
                "c": consent_key,
            }
        )
    return plan


_NO_RECORD_CONSENT = "-|-"
DENIED_REASON = (
    "the record denies consent to advertising use of its data (ad_user_data or "
    "ad_personalization), and this platform cannot be told: it is not sent"
)


def consent_text(consent: tuple[str | None, str | None]) -> str:
    """A member's per-record consent as stored in ``sent_consent``: ``granted|-``."""
    return "|".join(value or "-" for value in consent)


def consent_of_text(text: str | None) -> tuple[str | None, str | None]:
    """:func:`consent_text` read back (None: no per-record consent, as before it was kept)."""
    given, _, personal = (text or _NO_RECORD_CONSENT).partition("|")
    return (None if given == "-" else given, None if personal == "-" else personal)


def consent_value(raw: str | None) -> str | None:
    """A record's consent cell as ``granted`` or ``denied``; None when it is empty.

    None means "the destination's consent". A value that is not one of the
    accepted spellings (:mod:`segflow.ingest.consent`) is denied, never the
    destination's default: ``unknown`` or ``N/A`` must not become granted.
    """
    meaning = classify(raw)
    if meaning == EMPTY:
        return None
    return GRANTED if meaning == GRANTED else DENIED


def no_identifier_reason(mapping: ids.Mapping, skipped: ids.Skipped) -> str:
    """Why a member has no identifier to send, for its ``rejected`` reason."""
    if not (mapping.email or mapping.phone or mapping.first_name):
        return "the dataset has no identifier columns mapped (segflow datasets identifiers)"
    invalid = sorted(skipped.counts)
    if invalid:
        return f"no usable identifier ({', '.join(invalid)} invalid, the rest empty)"
    return "no usable identifier (email, phone and address are empty)"
