"""The fake's refusals: a ``google.rpc.Status`` carrying Google's standard detail payloads.

Google's Data Manager API answers a failed call with a gRPC status whose
``grpc-status-details-bin`` trailer holds ``ErrorInfo``, ``BadRequest``,
``QuotaFailure``, ``RetryInfo``, ``RequestInfo`` and ``Help`` messages;
google-api-core decodes them into the exception's ``details`` and ``reason``.
A :class:`Refusal` is one such answer, built here and raised by whatever
check refuses the call.

Field paths follow Google's published samples, which repeat the collection
name before the index: ``audience_members.audience_members[0]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

#: ErrorInfo.domain of the API's own reasons (Google's samples).
DOMAIN = "datamanager.googleapis.com"
SERVICE = "datamanager.googleapis.com"
#: ErrorInfo.domain of the platform's reasons (quota, authentication).
PLATFORM_DOMAIN = "googleapis.com"
#: Google's message for INVALID_ARGUMENT answers (from its samples).
INVALID_MESSAGE = "There was a problem with the request."


def path(collection: str, index: int, rest: str = "") -> str:
    """A field path in Google's style: ``audience_members.audience_members[3].user_data``."""
    return f"{collection}.{collection}[{index}]{rest}"


@dataclass(frozen=True)
class Violation:
    """One ``BadRequest.FieldViolation``: the request field and its ``ErrorReason`` name."""

    field: str
    reason: str
    description: str = ""


class Refusal(Exception):
    """A call the fake refuses, with the status it answers."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status

    @property
    def code(self) -> grpc.StatusCode:
        return _CODES[self.status.code]


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def refusal(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str | None = None,
    domain: str = DOMAIN,
    metadata: Mapping[str, str] | None = None,
    violations: Iterable[Violation] = (),
    quota: Iterable[error_details_pb2.QuotaFailure.Violation] = (),
    retry_delay: float | None = None,
    help_url: str | None = None,
) -> Refusal:
    """A refusal with the given details, in the order Google's answers put them."""
    status = status_pb2.Status(code=code.value[0], message=message)
    details: list[object] = []
    if reason is not None:
        details.append(
            error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {}))
        )
    bad = [
        error_details_pb2.BadRequest.FieldViolation(
            field=v.field, reason=v.reason, description=v.description
        )
        for v in violations
    ]
    if bad:
        details.append(error_details_pb2.BadRequest(field_violations=bad))
    quota = list(quota)
    if quota:
        details.append(error_details_pb2.QuotaFailure(violations=quota))
    if retry_delay is not None:
        seconds = int(retry_delay)
        details.append(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(
                    seconds=seconds, nanos=int(round((retry_delay - seconds) * 1e9))
                )
            )
        )
    details.append(error_details_pb2.RequestInfo(request_id=uuid.uuid4().hex))
    if help_url is not None:
        details.append(error_details_pb2.Help(links=[error_details_pb2.Help.Link(url=help_url)]))
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return Refusal(status)


def invalid_argument(violations: Iterable[Violation]) -> Refusal:
    """INVALID_ARGUMENT as Google's samples give it: generic ErrorInfo, specific violations."""
    return refusal(
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID_MESSAGE,
        reason="INVALID_ARGUMENT",
        violations=violations,
    )


def permission_denied(where: str, account: str, why: str) -> Refusal:
    """The caller may not act on ``account``; ``where`` names the request field."""
    return refusal(
        grpc.StatusCode.PERMISSION_DENIED,
        "The caller does not have permission",
        reason="PERMISSION_DENIED",
        metadata={"field": where, "account": account},
        violations=[Violation(where, "PERMISSION_DENIED", why)],
    )


def not_found(where: str, name: str) -> Refusal:
    return refusal(
        grpc.StatusCode.NOT_FOUND,
        f"Resource not found: {name}",
        reason="NOT_FOUND",
        metadata={"field": where, "resource": name},
        violations=[Violation(where, "NOT_FOUND", f"{name} does not exist")],
    )


def unauthenticated(reason: str, method: str) -> Refusal:
    """Google's answer to a call without a valid OAuth access token."""
    return refusal(
        grpc.StatusCode.UNAUTHENTICATED,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential. "
        "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        reason=reason,
        domain=PLATFORM_DOMAIN,
        metadata={"service": SERVICE, "method": method},
    )


def abort(context: grpc.ServicerContext, refused: Refusal) -> None:
    context.abort_with_status(rpc_status.to_status(refused.status))
