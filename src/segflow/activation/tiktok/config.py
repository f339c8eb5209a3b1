"""A TikTok destination's settings: checked, with unknown keys refused.

``advertiser_id`` (digits) names the ad account; ``audience_id`` (digits)
an existing customer-file audience, or ``audience_name`` one to create.
``id_type`` (``email``, the default, or ``phone``) is the one kind of
identifier the audience holds: TikTok's ``/dmp/custom_audience/create/``
says every file of an audience must have the audience's ``calculate_type``,
and ``/dmp/custom_audience/update/`` that added or removed files must be
"encrypted with the same encryption method/type" as the audience (TikTok's
API definitions, ``CustomAudienceCreateBody`` / ``CustomAudienceUpdateBody``).

The access token is a secret: it never appears here, and a config carrying
one is refused without echoing it.
"""

from __future__ import annotations

import re
from typing import Any

from segflow.activation import tokens
from segflow.errors import InvalidInput

TIKTOK = "tiktok"
EMAIL = "email"
PHONE = "phone"
#: segflow's identifier kind to TikTok's calculate_type ("Enumeration - Encryption Type").
CALCULATE_TYPES = {EMAIL: "EMAIL_SHA256", PHONE: "PHONE_SHA256"}

#: TikTok's limit on an audience name (``custom_audience_name``: 128 characters).
MAX_NAME_LENGTH = 128

_DIGITS = re.compile(r"^[0-9]{1,32}$")
_KNOWN = ("advertiser_id", "audience_id", "audience_name", "id_type")
#: Keys that would hold a secret: refused by name, their value never echoed.
_SECRETS = {"access_token", "token", "secret", "app_secret", "refresh_token"}


def _digits(name: str, value: Any) -> str:
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    if isinstance(value, bool) or not _DIGITS.match(text):
        raise InvalidInput(f"{name} must be a TikTok id made of digits, got {value!r}")
    return text


def tiktok_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The checked settings of a TikTok destination (InvalidInput says what is wrong)."""
    secrets = sorted(set(raw) & _SECRETS)
    if secrets:
        # Name the key, never the value: it is a credential.
        raise InvalidInput(
            f"a tiktok destination's settings hold no credentials ({', '.join(secrets)}): "
            "the access token is stored apart, encrypted"
        )
    unknown = sorted(set(raw) - set(_KNOWN))
    if unknown:
        raise InvalidInput(
            f"unknown tiktok setting(s): {', '.join(unknown)} (known: {', '.join(_KNOWN)})"
        )
    if raw.get("advertiser_id") in (None, ""):
        raise InvalidInput("a tiktok destination needs advertiser_id")
    config: dict[str, Any] = {"advertiser_id": _digits("advertiser_id", raw["advertiser_id"])}
    id_type = raw.get("id_type", EMAIL)
    if id_type not in CALCULATE_TYPES:
        raise InvalidInput(f"id_type must be {EMAIL!r} or {PHONE!r}, got {id_type!r}")
    config["id_type"] = id_type
    has_id = raw.get("audience_id") not in (None, "")
    name = raw.get("audience_name")
    has_name = name not in (None, "")
    if has_id == has_name:
        raise InvalidInput(
            "a tiktok destination needs either audience_id (an existing audience) "
            "or audience_name (one to create), not both"
            if has_id
            else "a tiktok destination needs audience_id or audience_name"
        )
    if has_id:
        config["audience_id"] = _digits("audience_id", raw["audience_id"])
    else:
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("audience_name must be text")
        name = name.strip()
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(
                f"audience_name is {len(name)} characters; TikTok allows {MAX_NAME_LENGTH}"
            )
        config["audience_name"] = name
    return config


check_config = tiktok_config
describe_token = tokens.describe_token


def check_secret(secret: dict[str, Any] | None) -> str:
    """The access token in a destination's credentials, or InvalidInput (never echoing it)."""
    return tokens.check_token(
        secret, TIKTOK, "a long-term access token of the TikTok for Business app"
    )


def calculate_type(config: dict[str, Any]) -> str:
    """TikTok's ``calculate_type`` for a checked config's ``id_type``."""
    return CALCULATE_TYPES[config.get("id_type", EMAIL)]
