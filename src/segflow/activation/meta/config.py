"""A Meta destination's settings, checked: the ad account, the audience, Limited Data Use.

Settings (``config``, shown freely):

* ``ad_account_id``: the ad account, ``act_1234`` or its digits (stored as
  digits);
* ``audience_id``: the customer-list Custom Audience to keep; or, when
  adding, ``audience_name`` with ``customer_file_source`` and segflow creates
  the audience and stores its id (Meta requires the source of a customer
  file: ``USER_PROVIDED_ONLY``, ``PARTNER_PROVIDED_ONLY`` or
  ``BOTH_USER_AND_PARTNER_PROVIDED``);
* ``limited_data_use``: send every batch with ``data_processing_options:
  ["LDU"]`` and Meta's geolocation (country and state 0), Meta's mode for
  US state privacy laws; off by default;
* ``send_extern_id``: add the dataset key, hashed, as ``EXTERN_ID``.

The access token is the destination's credentials (``{"access_token": ...}``),
stored encrypted apart from the config and never shown again: the config
keeps only a fingerprint (:func:`describe_token`).
"""

from __future__ import annotations

import re
from typing import Any

from segflow.activation import tokens
from segflow.errors import InvalidInput

META = "meta"

#: The Graph API version every request names; the fake serves the same one.
GRAPH_API_VERSION = "v26.0"

CUSTOMER_FILE_SOURCES = (
    "USER_PROVIDED_ONLY",
    "PARTNER_PROVIDED_ONLY",
    "BOTH_USER_AND_PARTNER_PROVIDED",
)

_ACCOUNT = re.compile(r"(?:act_)?(\d{1,20})", re.ASCII)
_AUDIENCE = re.compile(r"\d{1,20}", re.ASCII)
_KNOWN = {
    "ad_account_id",
    "audience_id",
    "audience_name",
    "customer_file_source",
    "limited_data_use",
    "send_extern_id",
    "terms_accepted",
}


def account_digits(value: Any) -> str:
    text = str(value).strip()
    match = _ACCOUNT.fullmatch(text)
    if match is None:
        raise InvalidInput(
            f"ad_account_id must be a Meta ad account id such as act_1234567890, got {value!r}"
        )
    return match.group(1)


def _flag(raw: dict[str, Any], name: str) -> bool:
    value = raw.get(name, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false, got {value!r}")


def customer_file_source(value: Any) -> str:
    text = str(value or "").strip().upper()
    if text not in CUSTOMER_FILE_SOURCES:
        raise InvalidInput(
            "a new Meta audience needs customer_file_source, where the people in it came "
            f"from: {', '.join(CUSTOMER_FILE_SOURCES)} (USER_PROVIDED_ONLY: you collected "
            f"them from your customers directly), got {value!r}"
        )
    return text


def check_config(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings to store, or InvalidInput naming what is wrong."""
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise InvalidInput(
            f"unknown meta setting(s): {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN))})"
        )
    if not raw.get("ad_account_id"):
        raise InvalidInput("a meta destination needs ad_account_id (act_ followed by digits)")
    config: dict[str, Any] = {
        "ad_account_id": account_digits(raw["ad_account_id"]),
        "limited_data_use": _flag(raw, "limited_data_use"),
        "send_extern_id": _flag(raw, "send_extern_id"),
        # Known only once Meta has been asked (see meta.audiences.prepare).
        "terms_accepted": bool(raw.get("terms_accepted", False)),
    }
    audience = str(raw.get("audience_id") or "").strip()
    name = str(raw.get("audience_name") or "").strip()
    if audience and name:
        raise InvalidInput("give audience_id (an existing audience) or audience_name, not both")
    if audience:
        if not _AUDIENCE.fullmatch(audience):
            raise InvalidInput(f"audience_id must be Meta's numeric audience id, got {audience!r}")
        config["audience_id"] = audience
        if raw.get("customer_file_source"):
            config["customer_file_source"] = customer_file_source(raw["customer_file_source"])
    elif name:
        if len(name) > 200:
            raise InvalidInput("audience_name must be at most 200 characters")
        config["audience_name"] = name
        config["customer_file_source"] = customer_file_source(raw.get("customer_file_source"))
    else:
        raise InvalidInput(
            "a meta destination needs audience_id, or audience_name (with "
            "customer_file_source) to create a customer-list Custom Audience"
        )
    return config


def check_secret(secret: dict[str, Any] | None) -> str:
    """The access token in a destination's credentials, or InvalidInput (never echoing it)."""
    return tokens.check_token(secret, META, "a system user's token with ads_management")


describe_token = tokens.describe_token
