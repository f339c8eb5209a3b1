"""Google credentials: loading them from what a user stored, describing them, scrubbing them.

A destination's credentials are kept as a small dict (opened from its
encrypted column by :mod:`.destinations`): either ``{"type":
"service_account", "info": <key JSON>}`` or ``{"type": "oauth",
"client_id", "client_secret", "refresh_token"}``. This module is the one
place that turns that dict into google-auth credentials, for checking when a
destination is added and for sending, and the one place that removes any
credential value an error message might have echoed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.oauth2 import credentials as oauth2
from google.oauth2 import service_account

from segflow.errors import InvalidInput

#: What Google credentials are asked for, and where OAuth tokens are refreshed.
OAUTH_SCOPE = "https://www.googleapis.com/auth/datamanager"
OAUTH_TOKEN_URI = "https://oauth2.googleapis.com/token"
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


def describe(secret: dict[str, Any]) -> str:
    """Load credentials (raising InvalidInput if they cannot be); a short description."""
    loaded = load(secret)
    if isinstance(loaded, service_account.Credentials):
        return f"service account {loaded.service_account_email}"
    return "OAuth refresh token"


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
