"""What Google did with one accepted request: ``RetrieveRequestStatus``.

The Data Manager API accepts an ingest or a remove at once and processes it
later; its answer carries a ``request_id``, and Google reports on that
request (for about 24 hours) as PROCESSING, then SUCCESS, PARTIAL_SUCCESS or
FAILED, with error and warning counts by reason and, for an ingest, the
upload's match-rate range. This module asks and turns the answer into plain
values; :mod:`segflow.activation.uploads` decides when to ask and keeps them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from google.ads.datamanager_v1.types import ingestion_service
from google.ads.datamanager_v1.types import match_rate as mr
from google.ads.datamanager_v1.types import processing_errors as pe
from google.ads.datamanager_v1.types import request_status_per_destination as rs
from google.api_core import exceptions as core

from segflow.activation.credentials import scrub
from segflow.activation.google.client import GoogleConnection
from segflow.activation.google.errors import classify, describe
from segflow.activation.transport import RequestRejected

PROCESSING = "PROCESSING"
SUCCESS = "SUCCESS"
PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
FAILED = "FAILED"
UNKNOWN = "UNKNOWN"
#: Statuses after which Google's answer no longer changes.
FINAL = (SUCCESS, PARTIAL_SUCCESS, FAILED, UNKNOWN)

_STATUS = rs.RequestStatusPerDestination.RequestStatus
_NAMES = {
    _STATUS.SUCCESS: SUCCESS,
    _STATUS.PROCESSING: PROCESSING,
    _STATUS.FAILED: FAILED,
    _STATUS.PARTIAL_SUCCESS: PARTIAL_SUCCESS,
}
#: When one request went to several destinations, the worst answer stands.
_RANK = {SUCCESS: 0, UNKNOWN: 1, PARTIAL_SUCCESS: 2, FAILED: 3, PROCESSING: 4}

_MATCH_RATES = {
    mr.MatchRateRange.MATCH_RATE_RANGE_NOT_ELIGIBLE: "not eligible",
    mr.MatchRateRange.MATCH_RATE_RANGE_LESS_THAN_20: "<20%",
    mr.MatchRateRange.MATCH_RATE_RANGE_20_TO_30: "20-30%",
    mr.MatchRateRange.MATCH_RATE_RANGE_31_TO_40: "31-40%",
    mr.MatchRateRange.MATCH_RATE_RANGE_41_TO_50: "41-50%",
    mr.MatchRateRange.MATCH_RATE_RANGE_51_TO_60: "51-60%",
    mr.MatchRateRange.MATCH_RATE_RANGE_61_TO_70: "61-70%",
    mr.MatchRateRange.MATCH_RATE_RANGE_71_TO_80: "71-80%",
    mr.MatchRateRange.MATCH_RATE_RANGE_81_TO_90: "81-90%",
    mr.MatchRateRange.MATCH_RATE_RANGE_91_TO_100: "91-100%",
}

_REASON_PREFIXES = (
    "PROCESSING_ERROR_REASON_",
    "PROCESSING_WARNING_REASON_",
    "PROCESSING_ERROR_",
    "PROCESSING_WARNING_",
)


@dataclass(frozen=True)
class RequestStatus:
    """Google's answer about one request, as segflow keeps it."""

    status: str
    #: Records that failed, by Google's reason (without its long prefix).
    errors: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    #: The upload's match-rate range ("81-90%"), for an ingest once processed.
    match_rate: str | None = None
    #: Members Google counted in the request.
    records: int | None = None


def reason_name(enum_type: Any, value: int) -> str:
    """A reason's short name: ``INVALID_FORMAT`` for ``PROCESSING_ERROR_REASON_INVALID_FORMAT``."""
    try:
        name = enum_type(value).name
    except ValueError:
        return f"REASON_{value}"
    for prefix in _REASON_PREFIXES:
        if name.startswith(prefix):
            return str(name[len(prefix) :])
    return str(name)


def match_rate_label(value: int) -> str | None:
    """``"81-90%"`` for ``MATCH_RATE_RANGE_81_TO_90``; None when Google gave none."""
    return _MATCH_RATES.get(value)


def parse(response: Any) -> RequestStatus:
    """A ``RetrieveRequestStatusResponse`` (proto-plus or raw) as a :class:`RequestStatus`."""
    pb = response._pb if hasattr(response, "_pb") else response
    worst: str | None = None
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    match_rate: str | None = None
    records: int | None = None
    for one in pb.request_status_per_destination:
        status = _NAMES.get(one.request_status, UNKNOWN)
        if worst is None or _RANK[status] > _RANK[worst]:
            worst = status
        for count in one.error_info.error_counts:
            errors[reason_name(pe.ProcessingErrorReason, count.reason)] += count.record_count
        for count in one.warning_info.warning_counts:
            warnings[reason_name(pe.ProcessingWarningReason, count.reason)] += count.record_count
        counted, rate = _counts(one)
        if counted is not None:
            records = (records or 0) + counted
        match_rate = match_rate or rate
    return RequestStatus(
        status=worst or UNKNOWN,
        errors=dict(errors),
        warnings=dict(warnings),
        match_rate=match_rate,
        records=records,
    )


def _counts(one: Any) -> tuple[int | None, str | None]:
    """(record count, match-rate label) from whichever kind of status the request had."""
    kind = one.WhichOneof("status")
    if kind is None:
        return None, None
    outer = getattr(one, kind)
    inner_kind = outer.WhichOneof("status") if outer.DESCRIPTOR.oneofs else None
    if inner_kind is None:
        return (int(outer.record_count) if hasattr(outer, "record_count") else None), None
    inner = getattr(outer, inner_kind)
    rate = None
    if hasattr(inner, "upload_match_rate_range"):
        rate = match_rate_label(inner.upload_match_rate_range)
    return int(inner.record_count), rate


def retrieve(connection: GoogleConnection, request_id: str, timeout: float) -> RequestStatus:
    """Ask Google about one request.

    Raises the kinds of :mod:`segflow.activation.transport` (via
    :func:`~segflow.activation.google.errors.classify`): ``RequestRejected``
    when Google does not know the id, ``TransientError`` to ask again later,
    ``LinkBroken`` when the credentials or permissions fail.
    """
    request = ingestion_service.RetrieveRequestStatusRequest(request_id=request_id)
    client = connection.ingestion()
    # A fresh token first, so that a refused refresh is reported as such.
    metadata = connection.authorize()
    try:
        response = client.retrieve_request_status(
            request=request, retry=None, timeout=timeout, metadata=metadata
        )
    except (core.InvalidArgument, core.NotFound) as exc:
        # About this id only (unknown, or forgotten after 24 hours): nothing
        # about the link or its credentials, whatever the details name.
        raise RequestRejected(scrub(describe(exc), connection.secret)) from None
    except Exception as exc:
        raise classify(exc, connection.secret) from None
    return parse(response)
