"""Talking to Meta's Graph API through its official SDK: one session, and its failures sorted.

:func:`connect` builds a ``facebook_business`` API object for one access
token, against Meta (``https://graph.facebook.com``) or a local stand-in
(``Settings.meta_graph_url``), at :data:`~.config.GRAPH_API_VERSION`.
:func:`call` makes one request and turns every failure into the kinds of
:mod:`segflow.activation.transport`:

* code 190 (the token is invalid, expired or revoked), 104 (no token), 10
  and 200-299 (permissions), 100 with subcode 33 (the account or audience
  does not exist or the token may not see it), 368 (blocked for policy) and
  2663 / 2655 (the Custom Audience terms not accepted): the link pauses with
  Meta's message;
* codes 4, 17, 32, 613 and 80000-80014 (rate limits, the Custom Audience
  business use case's 80003 among them): try again when Meta says access
  returns (``estimated_time_to_regain_access`` in the
  ``X-Business-Use-Case-Usage`` header, minutes), else in five minutes;
* codes 1, 2 and answers Meta marks ``is_transient``, HTTP 5xx, an answer
  that is not Graph's JSON, timeouts and lost connections: try again later;
* anything else about the request (code 100, invalid parameters): refused.

Meta answers a request line it cannot read (about 16 KiB, SDK issues #717
and #179) by closing the connection; the SDK puts a ``DELETE``'s parameters
in the query string, so :func:`call` sends the ``users`` edge's parameters
(adds and removes) as a JSON body, where a 10,000-member remove fits.

Messages never carry the token or what was sent: the SDK's own error text
includes the request's parameters, and ``requests``' includes the URL with
``access_token`` in its query, so neither is ever shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import requests
from facebook_business.api import FacebookAdsApi, FacebookResponse
from facebook_business.exceptions import FacebookError, FacebookRequestError
from facebook_business.session import FacebookSession

from segflow.activation.meta.config import GRAPH_API_VERSION
from segflow.activation.transport import LinkBroken, RequestRejected, TransientError
from segflow.config import Settings

GRAPH_URL = "https://graph.facebook.com"

#: 190 token, 10 and 200-299 permissions, 102 session, 104 no token, 368
#: blocked for policy, 2663 and 2655 the Custom Audience terms not accepted.
_PAUSING_CODES = frozenset({190, 10, 102, 104, 368, 2655, 2663})
_RATE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
_TRANSIENT_CODES = frozenset({1, 2})
#: When a rate limit says nothing of when it lifts.
DEFAULT_RATE_WAIT = 300.0


def connect(token: str, settings: Settings, timeout: float | None = None) -> FacebookAdsApi:
    """An API object for this token, at Meta or at ``settings.meta_graph_url``."""
    session = FacebookSession(access_token=token, timeout=timeout or float(settings.sync_timeout))
    # An instance attribute: the class's GRAPH stays Meta's for everyone else.
    session.GRAPH = settings.meta_graph_url or GRAPH_URL
    return FacebookAdsApi(session, api_version=GRAPH_API_VERSION)


def call(
    api: FacebookAdsApi, method: str, path: tuple[str, ...], params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One Graph request; its JSON answer, or a transport error (see the module docstring)."""
    try:
        if method == "DELETE" or path[-1:] == ("users",):
            response = _in_json_body(api, method, path, dict(params or {}))
        else:
            response = api.call(method, path, params=dict(params or {}))
    except FacebookRequestError as exc:
        raise classify(exc, api._session.access_token) from None
    except requests.Timeout:
        raise TransientError("Meta did not answer in time", unanswered=True) from None
    except requests.RequestException as exc:
        # str(exc) holds the URL, and with it the access token.
        raise TransientError(
            f"could not reach Meta ({type(exc).__name__})", unanswered=True
        ) from None
    except FacebookError as exc:
        raise TransientError(f"Meta's answer could not be read ({type(exc).__name__})") from None
    body = response.json()
    if not isinstance(body, dict):
        raise TransientError("Meta's answer was not a JSON object")
    return body


def _in_json_body(
    api: FacebookAdsApi, method: str, path: tuple[str, ...], params: dict[str, Any]
) -> Any:
    """``api.call`` with the parameters as a JSON body, not a form.

    Graph reads a JSON object body as the request's parameters (Meta's own
    Conversions API examples post one to ``/{pixel_id}/events``).

    A DELETE's parameters must leave the URL (see the module docstring); and
    a 10,000-row ``users`` payload is about 5 MB of JSON, which a form body
    would escape again a byte at a time in Python (0.4 s a request) where
    ``json`` writes it once, in C.
    """
    session = api._session
    url = "/".join((session.GRAPH, GRAPH_API_VERSION, "/".join(path)))
    headers = dict(FacebookAdsApi.HTTP_DEFAULT_HEADERS)
    response = session.requests.request(
        method, url, json=params, headers=headers, timeout=session.timeout
    )
    answer = FacebookResponse(
        body=response.text,
        headers=response.headers,
        http_status=response.status_code,
        call={"method": method, "path": url, "params": {}, "headers": headers, "files": {}},
    )
    if answer.is_failure():
        raise answer.error()
    return answer


def regain_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds until Meta lets this business call again, from its usage header."""
    if not headers:
        return None
    raw = next((v for k, v in headers.items() if k.lower() == "x-business-use-case-usage"), None)
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    waits = [float(m) for m in minutes if isinstance(m, int | float) and m > 0]
    return max(waits) * 60 if waits else None


def describe(exc: FacebookRequestError, token: str | None = None) -> str:
    """Meta's message with its codes, and nothing of the request or of ``token``.

    Graph repeats a token it cannot read in its message ("Malformed access
    token EAAB..."): the token is masked wherever it appears.
    """
    code, subcode = exc.api_error_code(), exc.api_error_subcode()
    message = exc.api_error_message() or f"HTTP {exc.http_status()}"
    body = exc.body()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        user_message = body["error"].get("error_user_msg")
        if user_message and user_message not in message:
            message = f"{message} ({user_message})"
    codes = f"code {code}" + (f", subcode {subcode}" if subcode else "") if code else ""
    text = f"Meta: {message}" + (f" [{codes}]" if codes else "")
    return mask(text, token)


def mask(text: str, token: str | None) -> str:
    """``text`` without the token: whole, URL-encoded, or any run of 12 of its characters.

    Graph may quote a token cut short. The spans are found in the text as it
    is, then each replaced once, so no tail of a token survives a replacement
    that broke the next window.
    """
    if not token:
        return text
    spans: list[tuple[int, int]] = []
    for form in {token, quote(token, safe=""), quote_plus(token)}:
        for start in range(0, max(len(form) - 11, 1)):
            piece = form[start : start + 12]
            at = text.find(piece)
            while at != -1:
                spans.append((at, at + len(piece)))
                at = text.find(piece, at + 1)
    if not spans:
        return text
    spans.sort()
    merged = [list(spans[0])]
    for begin, finish in spans[1:]:
        if begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], finish)
        else:
            merged.append([begin, finish])
    out, last = [], 0
    for begin, finish in merged:
        out.append(text[last:begin])
        out.append("[access token]")
        last = finish
    out.append(text[last:])
    return "".join(out)


def classify(exc: FacebookRequestError, token: str | None = None) -> Exception:
    """The transport error for one of Meta's refusals (see the module docstring)."""
    code = exc.api_error_code()
    subcode = exc.api_error_subcode()
    text = describe(exc, token)
    status = exc.http_status() or 0
    if code is None:
        # The SDK answers a page that is not Graph's JSON (Meta sends a
        # "Service Unavailable" page with 200 at times) as a failure too.
        if status >= 500 or status in (0, 200, 408, 429):
            return TransientError(f"Meta answered HTTP {status} without Graph's JSON")
        return RequestRejected(f"Meta answered HTTP {status} without an error it explains")
    if code in _RATE_CODES:
        wait = regain_seconds(exc.http_headers()) or DEFAULT_RATE_WAIT
        return TransientError(f"{text}; waiting as Meta asks", retry_after=wait)
    if code in _TRANSIENT_CODES or exc.api_transient_error():
        return TransientError(text)
    if code in _PAUSING_CODES or 200 <= code <= 299:
        if code == 190:
            text += (
                "; give a new token (a system user's, with ads_management): "
                "segflow destinations credentials NAME --token-file FILE"
            )
        return LinkBroken(text)
    if code == 100 and subcode == 33:
        return LinkBroken(text)
    if status >= 500:
        return TransientError(text)
    return RequestRejected(text)
