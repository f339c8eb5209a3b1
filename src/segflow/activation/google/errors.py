"""What a failure of Google's client or of google-auth means for the sync pass.

:func:`classify` maps an exception raised by a Data Manager API call to one
of the kinds in :mod:`segflow.activation.transport`, with a message that
never carries a credential value.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as core
from google.auth import exceptions as auth

from segflow.activation.credentials import scrub
from segflow.activation.transport import LinkBroken, RequestRejected, TransientError


def classify(exc: BaseException, secret: Any = None) -> Exception:
    """Map a client or auth failure to what the sync worker should do."""
    message = scrub(describe(exc), secret)
    if isinstance(exc, auth.RefreshError | auth.DefaultCredentialsError):
        return LinkBroken(f"credentials rejected: {message}")
    if isinstance(exc, auth.TransportError):
        return TransientError(message)
    if isinstance(exc, core.InvalidArgument | core.BadRequest):
        return RequestRejected(message)
    if isinstance(
        exc,
        core.PermissionDenied
        | core.Forbidden
        | core.Unauthenticated
        | core.Unauthorized
        | core.NotFound
        | core.FailedPrecondition,
    ):
        return LinkBroken(message)
    if isinstance(exc, core.GoogleAPIError):
        return TransientError(message, retry_delay(exc))
    # Anything else (a bug in a transport, a closed channel) is retried
    # rather than losing the batch; the log keeps the reason.
    return TransientError(message)


def describe(exc: BaseException) -> str:
    """``STATUS_NAME: message`` for a gRPC error, ``Type: message`` otherwise."""
    if isinstance(exc, core.GoogleAPIError) and hasattr(exc, "grpc_status_code"):
        code = getattr(exc, "grpc_status_code", None)
        name = code.name if code is not None else type(exc).__name__
        return f"{name}: {getattr(exc, 'message', str(exc))}"
    return f"{type(exc).__name__}: {exc}"


def retry_delay(exc: Any) -> float | None:
    """The delay a ``RetryInfo`` detail asks for, in seconds, if there is one."""
    for detail in getattr(exc, "details", None) or []:
        delay = getattr(detail, "retry_delay", None)
        if delay is not None and hasattr(delay, "seconds"):
            return float(delay.seconds) + float(delay.nanos) / 1e9
    return None
