"""TikTok Business API v1.3 custom-audience calls over ``httpx``, and TikTok's failures.

:class:`TikTokClient` makes the five calls a customer-file audience needs
(TikTok's API definitions, ``AudienceApi`` of ``tiktok-business-api-sdk``):

* ``POST /open_api/v1.3/dmp/custom_audience/file/upload/``: multipart
  ``advertiser_id``, ``calculate_type``, ``file`` (a ``.csv`` or ``.txt``),
  ``file_signature`` (the file's MD5, which TikTok checks); answers
  ``data.file_path``;
* ``POST .../dmp/custom_audience/create/``: JSON ``advertiser_id``,
  ``custom_audience_name`` (at most 128 characters), ``calculate_type``
  (the same as every file's), ``file_paths``; answers
  ``data.custom_audience_id``;
* ``POST .../dmp/custom_audience/update/``: JSON ``advertiser_id``,
  ``custom_audience_id``, ``action`` (``APPEND``, ``REMOVE`` or
  ``REPLACE``; TikTok's default is ``REPLACE``, so segflow always names
  one), ``file_paths``;
* ``GET .../dmp/custom_audience/get/``: ``advertiser_id`` and
  ``custom_audience_ids`` (1 to 100, a JSON array in the query string);
* ``GET .../dmp/custom_audience/list/``: ``advertiser_id``, ``page``,
  ``page_size`` (1 to 100).

Every call carries the token in the ``Access-Token`` header. TikTok answers
HTTP 200 with ``{"code", "message", "request_id", "data"}``; a non-zero code
is a failure, turned by :func:`failure` into segflow's kinds
(:mod:`segflow.activation.transport`). The codes are TikTok's own list
(``NumericErrorCodes`` in the SDK's ``tiktok_code.py``):

* credentials and permissions (``40001`` permission, which TikTok also
  answers for an advertiser that is gone or not granted; ``40003``,
  ``40102`` token expired, ``40104`` no token, ``40105`` invalid token,
  ``40113``, ``40118``, ``40125``, ``40130`` scope not authorised, the
  ``403xx`` advertiser codes) and a missing audience (``40007`` not
  exist): :class:`~segflow.activation.transport.LinkBroken`;
* too many requests (``40100``, ``40132``, ``61000``), system and service
  errors (``50000``, ``50002``, ``51xxx``, ``52xxx``), maintenance
  (``60001``), a write conflict or a task not ready (``40202``, ``40201``):
  :class:`~segflow.activation.transport.TransientError` (TikTok gives no
  delay; an HTTP ``Retry-After`` is honoured when present);
* anything else (``40000``/``40002`` parameters, ``40062`` PII not hashed,
  the ``409xx`` file errors): :class:`~segflow.activation.transport.RequestRejected`.

HTTP 5xx, 429, timeouts, dropped connections and answers that are not JSON
are transient. Messages carry TikTok's code, message and request id, never
the token (any echo of it is masked).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from segflow.activation.transport import LinkBroken, RequestRejected, TransientError

API = "/open_api/v1.3"
UPLOAD = f"{API}/dmp/custom_audience/file/upload/"
CREATE = f"{API}/dmp/custom_audience/create/"
UPDATE = f"{API}/dmp/custom_audience/update/"
GET = f"{API}/dmp/custom_audience/get/"
LIST = f"{API}/dmp/custom_audience/list/"

APPEND = "APPEND"
REMOVE = "REMOVE"
REPLACE = "REPLACE"
ACTIONS = (APPEND, REMOVE, REPLACE)

OK = 0
#: Requests a client sends a second at most (the limit TikTok applies per
#: token is not published for these endpoints; 10 is the common one).
REQUESTS_PER_SECOND = 5.0
#: "Partial OK": accepted, with something left out; its message is kept as a warning.
PARTIAL_OK = 20001

#: Codes that need a person: the token, the app's or the advertiser's permissions,
#: an advertiser or audience that is not there (tiktok_code.py names in comments).
LINK_BROKEN_CODES = frozenset(
    {
        40001,  # PERMISSION_ERROR (also a deleted or ungranted advertiser)
        40003,  # FORBIDDEN
        40007,  # NOT_EXIST
        40013,  # SANDBOX_ADV_NOT_EXIST
        40101,  # INVALID_PARTNER
        40102,  # ACCESS_TOKEN_EXPIRE
        40103,  # REFRESH_TOKEN_EXPIRE
        40104,  # EMPTY_ACCESS_TOKEN
        40105,  # INVALID_ACCESS_TOKEN
        40106,  # INVALID_CORE_USER
        40107,  # INVALID_REFRESH_TOKEN
        40113,  # APP_FORBIDDEN
        40114,  # ADVERTISER_LOGOUT
        40117,  # APP_METHOD_FORBIDDEN
        40118,  # NOT_IN_WHITELIST
        40119,  # NOT_SAME_IDENTITY
        40124,  # DEVELOPER_REJECTED
        40125,  # DEVELOPER_NO_PERMISSION
        40130,  # SCOPE_NOT_AUTHORIZED
        40300,  # ADVERTISER_NOT_EXIST
        40301,  # ADVERTISER_ROLE_ERROR
        40302,  # CUSTOMER_ADVERTISER_NOT_EXIST
        40309,  # REQUIRE_LOGIN
        41000,  # BLOCKED
        41001,  # INTERFACE_OFFLINE
    }
)
#: Too many requests: worth waiting for.
RATE_LIMIT_CODES = frozenset({40100, 40132, 61000})
#: Worth retrying: TikTok's side failed or was busy.
TRANSIENT_CODES = frozenset({40201, 40202, 50000, 50002, 60001}) | RATE_LIMIT_CODES


def _is_transient(code: int) -> bool:
    return code in TRANSIENT_CODES or 50000 <= code < 60000


def failure(code: int, message: str, request_id: str | None) -> Exception:
    """The segflow failure kind for a TikTok answer code (see the module docstring)."""
    text = f"TikTok answered {code}: {message or 'no message'}"
    if request_id:
        text += f" (request {request_id})"
    if code in LINK_BROKEN_CODES:
        return LinkBroken(text)
    if _is_transient(code):
        return TransientError(text)
    return RequestRejected(text)


def md5_hex(content: bytes) -> str:
    """TikTok's ``file_signature``: the MD5 of the file's bytes, in hex."""
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Answer:
    """One accepted TikTok answer."""

    data: dict[str, Any]
    request_id: str
    code: int = OK
    message: str = ""

    @property
    def warnings(self) -> tuple[str, ...]:
        return (self.message,) if self.code == PARTIAL_OK and self.message else ()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class TikTokClient:
    """TikTok's custom-audience calls for one access token (``base_url`` without the path)."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        timeout: float = 30,
        per_second: float = REQUESTS_PER_SECOND,
    ) -> None:
        if not access_token or not access_token.strip():
            raise ValueError("a TikTok client needs an access token")
        if not all(" " < c < "\x7f" for c in access_token):
            # Never echoed: a header could not carry it, and it is a secret.
            raise ValueError("the TikTok access token holds characters a header cannot carry")
        self._token = access_token
        self._gap = 1.0 / per_second if per_second > 0 else 0.0
        self._next_at = 0.0
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Access-Token": access_token},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TikTokClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the calls

    def upload_file(
        self,
        advertiser_id: str,
        calculate_type: str,
        content: bytes,
        *,
        file_name: str = "segflow.txt",
    ) -> Answer:
        """Upload one file of ids; ``answer.data["file_path"]`` names it for create/update."""
        answer = self._call(
            "POST",
            UPLOAD,
            data={
                "advertiser_id": advertiser_id,
                "calculate_type": calculate_type,
                "file_signature": md5_hex(content),
            },
            files={"file": (file_name, content, "text/plain")},
        )
        if not isinstance(answer.data.get("file_path"), str):
            raise TransientError(
                f"TikTok's upload answer named no file_path (request {answer.request_id})"
            )
        return answer

    def create_audience(
        self,
        advertiser_id: str,
        name: str,
        calculate_type: str,
        file_paths: Sequence[str],
        *,
        retention_in_days: int | None = None,
    ) -> Answer:
        """Create a customer-file audience; ``answer.data["custom_audience_id"]`` is its id."""
        body: dict[str, Any] = {
            "advertiser_id": advertiser_id,
            "custom_audience_name": name,
            "calculate_type": calculate_type,
            "file_paths": list(file_paths),
        }
        if retention_in_days is not None:
            body["retention_in_days"] = retention_in_days
        answer = self._call("POST", CREATE, json_body=body)
        audience_id = answer.data.get("custom_audience_id")
        if not isinstance(audience_id, (str, int)) or isinstance(audience_id, bool):
            raise TransientError(
                f"TikTok's create answer named no custom_audience_id (request {answer.request_id})"
            )
        return answer

    def update_audience(
        self, advertiser_id: str, audience_id: str, action: str, file_paths: Sequence[str]
    ) -> Answer:
        """Append, remove or replace the audience's ids with those of the files."""
        if action not in ACTIONS:
            raise ValueError(f"unknown TikTok update action {action!r}")
        return self._call(
            "POST",
            UPDATE,
            json_body={
                "advertiser_id": advertiser_id,
                "custom_audience_id": audience_id,
                "action": action,
                "file_paths": list(file_paths),
            },
        )

    def get_audiences(
        self, advertiser_id: str, audience_ids: Sequence[str]
    ) -> list[dict[str, Any]]:
        """The details of 1 to 100 audiences, as TikTok's ``data.list`` gives them."""
        answer = self._call(
            "GET",
            GET,
            params={
                "advertiser_id": advertiser_id,
                "custom_audience_ids": json.dumps(list(audience_ids)),
            },
        )
        found = answer.data.get("list")
        return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []

    def list_audiences(
        self, advertiser_id: str, *, page: int = 1, page_size: int = 100
    ) -> dict[str, Any]:
        """One page of the advertiser's audiences: TikTok's ``data`` (``list``, ``page_info``)."""
        return self._call(
            "GET",
            LIST,
            params={"advertiser_id": advertiser_id, "page": page, "page_size": page_size},
        ).data

    # -- one request

    def _pace(self) -> None:
        # TikTok limits requests a second per token (40100 past it): a
        # batch's upload and update, and a pass's batches, keep under it
        # rather than spend a retry on the refusal.
        now = time.monotonic()
        if now < self._next_at:
            time.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._gap

    def _masked(self, text: str) -> str:
        # A token must never reach a message, even if an answer echoed it.
        return text.replace(self._token, "[access token]") if text else text

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> Answer:
        failed: TransientError | None = None
        self._pace()
        try:
            response = self._http.request(
                method, path, params=params, data=data, files=files, json=json_body
            )
        except httpx.TimeoutException as exc:
            failed = TransientError(
                f"TikTok did not answer {path} in time ({type(exc).__name__})", unanswered=True
            )
        except httpx.RequestError as exc:
            # The exception's own text is left out: it could quote a header.
            failed = TransientError(
                f"TikTok's connection failed on {path} ({type(exc).__name__})", unanswered=True
            )
        if failed is not None:
            # Raised outside the handler, so no __context__ carries httpx's exception.
            raise failed
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(
                f"TikTok answered HTTP {response.status_code} on {path}",
                retry_after=_retry_after(response),
            )
        if not isinstance(body, dict) or not isinstance(body.get("code"), int):
            if response.status_code != 200:
                raise RequestRejected(f"TikTok answered HTTP {response.status_code} on {path}")
            raise TransientError(f"TikTok's answer to {path} was not its JSON envelope")
        code: int = body["code"]
        message = self._masked(str(body.get("message") or ""))
        request_id = str(body.get("request_id") or "")
        if code not in (OK, PARTIAL_OK):
            error = failure(code, message, request_id)
            if isinstance(error, TransientError):
                error.retry_after = _retry_after(response)
            raise error
        payload = body.get("data")
        return Answer(payload if isinstance(payload, dict) else {}, request_id, code, message)
