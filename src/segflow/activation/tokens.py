"""Credentials that are one access token (Meta, TikTok): checked, never echoed, fingerprinted."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from segflow.activation.transport import LinkBroken
from segflow.errors import InvalidInput


def check_token(secret: dict[str, Any] | None, kind: str, what: str) -> str:
    """The token in ``{"access_token": ...}``, or InvalidInput that never repeats it.

    ``what`` says which token the platform wants, for the message.
    """
    token = (secret or {}).get("access_token")
    if not isinstance(token, str) or not token.strip():
        raise InvalidInput(
            f"a {kind} destination needs an access token ({what}): give it with "
            "--token-file or credentials.access_token"
        )
    if secret is not None and set(secret) - {"access_token"}:
        raise InvalidInput(f"{kind} credentials take only access_token")
    token = token.strip()
    if not all("!" <= c <= "~" for c in token) or len(token) > 4096:
        # Platforms issue printable ASCII; anything else cannot travel in a
        # header or URL, and would fail every request.
        raise InvalidInput(
            f"the access token is not one {kind} issues (only printable ASCII without spaces, "
            "at most 4,096 characters)"
        )
    return token


def token_to_send(
    check: Callable[[dict[str, Any] | None], str], secret: dict[str, Any] | None
) -> str:
    """The stored token a sender will use; one that is not there pauses the link."""
    try:
        return check(secret)
    except InvalidInput as exc:
        raise LinkBroken(str(exc)) from None


def describe_token(token: str) -> dict[str, str]:
    """What the config may show of a token: a fingerprint, to tell two tokens apart."""
    return {
        "type": "access_token",
        "fingerprint": hashlib.sha256(token.encode("utf-8")).hexdigest()[:12],
    }
