"""Google credentials: loading them from what a user stored, describing them, scrubbing them.

A destination's credentials are kept as a small dict (opened from its
encrypted column by :mod:`.destinations`): either ``{"type":
"service_account", "info": <key JSON>}`` or ``{"type": "oauth",
"client_id", "client_secret", "refresh_token"}``. This module is the one
place that turns that dict into google-auth credentials, for checking when a
destination is added and for sending, and the one place that removes any
credential value an error message might have echoed.

Checking credentials (:func:`describe` with ``check=True``) refreshes them
once against the token server: a refusal for good (``invalid_grant``, a
wrong client, a key Google does not know) refuses the destination with
Google's words; a token server that cannot be reached, or answers "try
later", does not: the destination is stored and its description says the
credentials are not checked yet (the first sync will tell).

:func:`project_of` names the Google Cloud project requests are counted
against, for pacing; :func:`fingerprint` tells two credentials apart without
keeping either.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from google.auth import exceptions as auth
from google.auth.transport import requests as auth_requests
from google.oauth2 import credentials as oauth2
from google.oauth2 import service_account

from segflow.config import GOOGLE_TOKEN_URI
from segflow.errors import InvalidInput

#: What Google credentials are asked for, and where OAuth tokens are refreshed.
OAUTH_SCOPE = "https://www.googleapis.com/auth/datamanager"
OAUTH_TOKEN_URI = GOOGLE_TOKEN_URI
OAUTH_KEYS = ("client_id", "client_secret", "refresh_token")

Credentials = oauth2.Credentials | service_account.Credentials


def load(secret: dict[str, Any], token_uri: str = OAUTH_TOKEN_URI) -> Credentials:
    """google-auth credentials for a stored secret; InvalidInput says what is wrong.

    ``token_uri`` replaces Google's token server for OAuth credentials (a
    local fake's, in tests); a service-account key names its own.
    """
    kind = secret.get("type")
    if kind == "service_account":
        info = secret.get("info")
        if not isinstance(info, dict):
            raise InvalidInput("the service-account key must be a JSON object")
        try:
            loaded: service_account.Credentials = (
                service_account.Credentials.from_service_account_info(info, scopes=[OAUTH_SCOPE])
            )
            return loaded
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(
                f"the service-account key cannot be loaded: {scrub(str(exc), secret)}"
            ) from None
    if kind == "oauth":
        missing = [k for k in OAUTH_KEYS if not secret.get(k)]
        if missing:
            raise InvalidInput(f"OAuth credentials need {', '.join(missing)}")
        return oauth2.Credentials(
            token=None,
            refresh_token=secret["refresh_token"],
            client_id=secret["client_id"],
            client_secret=secret["client_secret"],
            token_uri=token_uri,
            scopes=[OAUTH_SCOPE],
        )
    raise InvalidInput("credentials must be a service-account key or OAuth client and token")


#: Seconds a token server has to answer when credentials are checked.
CHECK_TIMEOUT = 30.0


class TokenRequest(auth_requests.Request):
    """google-auth's HTTP transport with our timeout (its own default waits 120 s)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        return super().__call__(url, method, body, headers, timeout=self.timeout, **kwargs)


def describe(
    secret: dict[str, Any], *, check: bool = False, token_uri: str = OAUTH_TOKEN_URI
) -> str:
    """Load credentials (raising InvalidInput if they cannot be); a short description.

    With ``check``, refresh them once at ``token_uri`` (OAuth; a key uses its
    own): InvalidInput if the token server refuses them for good.
    """
    loaded = load(secret, token_uri)
    if isinstance(loaded, service_account.Credentials):
        described = f"service account {loaded.service_account_email}"
    else:
        described = "OAuth refresh token"
    if not check:
        return described
    if isinstance(loaded, service_account.Credentials) and token_uri != OAUTH_TOKEN_URI:
        # A key names Google's token server itself: a local one cannot check it.
        return f"{described} (not checked: a local token server is set)"
    try:
        request = TokenRequest(CHECK_TIMEOUT)
        try:
            loaded.refresh(request)
        finally:
            request.session.close()
    except auth.RefreshError as exc:
        if not exc.retryable:
            raise InvalidInput(
                f"Google refused these credentials: {scrub(refresh_error(exc), secret)} "
                "(authorise again and use the new credentials)"
            ) from None
        return f"{described} (not checked yet: the token server said to try later)"
    except auth.TransportError:
        return f"{described} (not checked yet: the token server could not be reached)"
    return f"{described}, checked"


def refresh_error(exc: BaseException) -> str:
    """google-auth's refresh failure as its first line (``invalid_grant: ...``), not a tuple."""
    first = exc.args[0] if exc.args else ""
    return first if isinstance(first, str) and first else str(exc)


#: The project number an OAuth client id starts with: ``123456789012-abc...``.
_CLIENT_PROJECT = re.compile(r"^(\d+)-")


def project_of(secret: dict[str, Any] | None) -> str:
    """The Google Cloud project whose quota these credentials' requests use.

    A service-account key names it (``project_id``); an OAuth client id
    starts with the project's number. Application Default Credentials, or a
    client id of another shape, count as ``"default"``.
    """
    if not secret:
        return "default"
    if secret.get("type") == "service_account":
        info = secret.get("info")
        project = info.get("project_id") if isinstance(info, dict) else None
        return str(project) if project else "default"
    found = _CLIENT_PROJECT.match(str(secret.get("client_id") or ""))
    return found.group(1) if found else "default"


def fingerprint(secret: dict[str, Any] | None) -> str:
    """A short digest that changes whenever the credentials do (never shown, never stored)."""
    if secret is None:
        return "adc"
    canonical = json.dumps(secret, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _secret_values(secret: Any) -> Iterable[str]:
    if isinstance(secret, dict):
        for value in secret.values():
            yield from _secret_values(value)
    elif isinstance(secret, list):
        for value in secret:
            yield from _secret_values(value)
    elif isinstance(secret, str) and len(secret) >= 6:
        yield secret


def scrub(message: str, secret: Any) -> str:
    """Remove any credential value that an error message might have echoed."""
    for value in sorted(_secret_values(secret), key=len, reverse=True):
        message = message.replace(value, "[redacted]")
    return message
