"""The fake TikTok Business API server: routes, checks in TikTok's order, scripted failures.

A request is recorded in :attr:`FakeTikTok.received` (body and query, never
the token), then meets any scripted failure (:meth:`FakeTikTok.fail_next`,
:meth:`FakeTikTok.chaos`), then the token, the rate limit and the call's own
checks. See the package docstring for what each call checks and answers.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from segflow.activation.fake_tiktok.state import (
    CALCULATE_TYPES,
    EMAIL_SHA256,
    Audience,
    State,
    UploadedFile,
)

API = "/open_api/v1.3"
UPLOAD = f"{API}/dmp/custom_audience/file/upload/"
CREATE = f"{API}/dmp/custom_audience/create/"
UPDATE = f"{API}/dmp/custom_audience/update/"
GET = f"{API}/dmp/custom_audience/get/"
LIST = f"{API}/dmp/custom_audience/list/"

ACTIONS = ("APPEND", "REMOVE", "REPLACE")

# TikTok's answer codes (NumericErrorCodes, tiktok_code.py of tiktok-business-api-sdk).
OK = 0
PERMISSION_ERROR = 40001
PARAM_ERROR = 40002
NOT_EXIST = 40007
REQUEST_TOO_FREQUENT = 40100
ACCESS_TOKEN_EXPIRE = 40102
EMPTY_ACCESS_TOKEN = 40104
INVALID_ACCESS_TOKEN = 40105
ROUTE_NOT_FOUND = 40400
SIGNATURE_ERROR = 40900
FILE_NOT_EXIST = 40905
FILE_EMPTY = 40906
FILE_TOO_LARGE = 40907
FILE_TYPE_ERROR = 40908
FILE_CALCULATE_TYPE_ERROR = 40909
SYS_ERROR = 50000

# Scripted failure kinds.
FAIL_TOKEN = "token"
FAIL_EXPIRED_TOKEN = "expired_token"
FAIL_RATE_LIMIT = "rate_limit"
FAIL_HTTP_500 = "500"
FAIL_SYSTEM = "system"
FAIL_DROP = "drop"
FAIL_SLOW = "slow"
FAIL_LOST = "lost"
FAILURE_KINDS = (
    FAIL_TOKEN,
    FAIL_EXPIRED_TOKEN,
    FAIL_RATE_LIMIT,
    FAIL_HTTP_500,
    FAIL_SYSTEM,
    FAIL_DROP,
    FAIL_SLOW,
    FAIL_LOST,
)
#: What :meth:`FakeTikTok.chaos` picks from (never slow: chaos keeps tests quick).
_CHAOS_KINDS = (FAIL_HTTP_500, FAIL_SYSTEM, FAIL_RATE_LIMIT, FAIL_DROP, FAIL_LOST)

#: TikTok's audience name limit (custom_audience_name: 128 characters).
MAX_NAME_LENGTH = 128
#: custom_audience_ids of a get: 1 to 100; page_size of a list: 1 to 100.
MAX_IDS_PER_GET = 100
MAX_PAGE_SIZE = 100

_SHA256_FILE = re.compile(rb"(?:[0-9a-f]{64}\r?\n)*[0-9a-f]{64}(?:\r?\n)?")
_MD5_FILE = re.compile(rb"(?:[0-9a-f]{32}\r?\n)*[0-9a-f]{32}(?:\r?\n)?")
_DIGITS = re.compile(r"^[0-9]+$")
_DISPOSITION_NAME = re.compile(rb'\bname="([^"]*)"')
_DISPOSITION_FILENAME = re.compile(rb'\bfilename="([^"]*)"')


class _Refusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Received:
    """One request as it arrived: no headers, so no token."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes


@dataclass
class _Chaos:
    rng: random.Random
    rate: float


@dataclass
class _Part:
    name: str
    filename: str | None
    content: bytes


def _multipart(content_type: str, body: bytes) -> dict[str, _Part]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or match is None:
        raise _Refusal(PARAM_ERROR, "Content-Type must be multipart/form-data for a file upload")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts: dict[str, _Part] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise _Refusal(PARAM_ERROR, "malformed multipart body")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = _DISPOSITION_NAME.search(head)
        if name is None:
            raise _Refusal(PARAM_ERROR, "a multipart part has no name")
        filename = _DISPOSITION_FILENAME.search(head)
        key = name.group(1).decode("utf-8", "replace")
        parts[key] = _Part(
            key, filename.group(1).decode("utf-8", "replace") if filename else None, content
        )
    return parts


def _missing(name: str) -> _Refusal:
    return _Refusal(PARAM_ERROR, f"{name}: Missing data for required field.")


@dataclass
class FakeTikTok:
    """A strict local TikTok Business API for customer-file audiences (see the package doc)."""

    port: int = 0
    #: Requests per token in any one second (TikTok answers 40100 past its QPS limit).
    qps: int = 10
    #: TikTok: APPEND, REMOVE and REPLACE fail if the audience would hold fewer.
    min_audience_size: int = 1000
    #: Bytes per uploaded file.
    max_file_bytes: int = 50 * 1024 * 1024
    #: file_paths per create or update (TikTok recommends fewer than 50).
    max_file_paths: int = 50
    #: How long a scripted ``slow`` answer waits.
    slow_seconds: float = 2.0
    clock: Callable[[], float] = time.monotonic

    received: list[Received] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.state = State()
        self._lock = threading.Lock()
        self._failures: deque[tuple[str, str | None]] = deque()
        self._chaos: _Chaos | None = None
        self._recent: dict[str, deque[float]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeTikTok:
        fake = self

        class Handler(_Handler):
            owner = fake

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        # A short poll: stop() waits for the loop to see the shutdown.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeTikTok:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- setting up

    def add_advertiser(self, advertiser_id: str) -> None:
        """An ad account no token is granted yet (a token for another is refused 40001)."""
        self.state.add_advertiser(advertiser_id)

    def add_token(self, token: str, advertisers: Iterable[str]) -> None:
        """A valid access token granted the given advertisers (created if new)."""
        self.state.add_token(token, advertisers)

    def expire(self, token: str) -> None:
        """The token answers 40102 from now on."""
        with self.state.lock:
            self.state.expired.add(token)

    def revoke(self, token: str) -> None:
        """The token answers 40105 from now on, as an unknown one does."""
        with self.state.lock:
            self.state.tokens.pop(token, None)

    def add_audience(
        self,
        advertiser_id: str,
        ids: Iterable[str] = (),
        *,
        calculate_type: str = EMAIL_SHA256,
        name: str = "segflow audience",
    ) -> str:
        """An existing customer-file audience of the advertiser holding ``ids`` (hashes); its id."""
        if calculate_type not in CALCULATE_TYPES:
            raise ValueError(f"unknown calculate_type {calculate_type!r}")
        audience_id = self.state.new_audience_id()
        with self.state.lock:
            self.state.advertisers.add(advertiser_id)
            self.state.audiences[audience_id] = Audience(
                audience_id, advertiser_id, name, calculate_type, set(ids)
            )
        return audience_id

    def fail_next(self, kind: str, count: int = 1, *, path: str | None = None) -> None:
        """The next ``count`` requests fail as ``kind`` (one of :data:`FAILURE_KINDS`).

        With ``path`` (say ``"/update/"``), only requests whose path ends so
        are counted: the upload before an update is answered as usual.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r} (known: {', '.join(FAILURE_KINDS)})")
        with self._lock:
            self._failures.extend([(kind, path)] * count)

    def chaos(self, seed: int, rate: float = 0.3) -> None:
        """Fail about ``rate`` of requests at random (seeded); ``rate=0`` stops."""
        with self._lock:
            self._chaos = _Chaos(random.Random(seed), rate) if rate > 0 else None

    # -- reading back

    def members(self, audience_id: str) -> set[str]:
        """The audience's ids as segflow codes: ``e:<hash>`` (email) or ``p:<hash>`` (phone)."""
        return self.state.members(audience_id)

    def audience(self, audience_id: str) -> Audience:
        with self.state.lock:
            return self.state.audiences[audience_id]

    def files(self) -> list[UploadedFile]:
        with self.state.lock:
            return list(self.state.files.values())

    # -- serving

    def _next_failure(self, path: str) -> str | None:
        with self._lock:
            for scripted in self._failures:
                kind, where = scripted
                if where is None or path.endswith(where):
                    self._failures.remove(scripted)
                    return kind
            chaos = self._chaos
            if chaos is None or chaos.rng.random() >= chaos.rate:
                return None
            return chaos.rng.choice(_CHAOS_KINDS)

    def _rate_limited(self, token: str) -> bool:
        if self.qps <= 0:
            return False
        now = self.clock()
        with self._lock:
            recent = self._recent.setdefault(token, deque())
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= self.qps:
                return True
            recent.append(now)
            return False

    def _check_token(self, token: str | None) -> None:
        if not token:
            raise _Refusal(EMPTY_ACCESS_TOKEN, "Access-Token is empty.")
        with self.state.lock:
            if token in self.state.expired:
                raise _Refusal(ACCESS_TOKEN_EXPIRE, "Access token has expired.")
            if token not in self.state.tokens:
                raise _Refusal(
                    INVALID_ACCESS_TOKEN, "Access token is incorrect or has been revoked."
                )

    def _advertiser(self, value: Any, token: str) -> str:
        if value is None or value == "":
            raise _missing("advertiser_id")
        advertiser = str(value)
        if not _DIGITS.match(advertiser):
            raise _Refusal(PARAM_ERROR, f"advertiser_id: Not a valid id: {advertiser[:40]!r}.")
        if advertiser not in self.state.tokens.get(token, set()):
            raise _Refusal(
                PERMISSION_ERROR,
                f"No permission to operate advertiser {advertiser}: "
                "it does not exist or has not granted this app access.",
            )
        return advertiser

    def handle(
        self, method: str, target: str, content_type: str, token: str | None, body: bytes
    ) -> tuple[int, str, dict[str, Any]] | str:
        """One request's outcome: (code, message, data), or a failure kind with no answer.

        Returns :data:`FAIL_DROP`, :data:`FAIL_LOST` or :data:`FAIL_HTTP_500`
        when the answer is not TikTok's envelope.
        """
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self._lock:
            self.received.append(Received(method, parts.path, query, body))
        failure = self._next_failure(parts.path)
        if failure in (FAIL_DROP, FAIL_HTTP_500):
            return failure
        if failure == FAIL_TOKEN:
            return INVALID_ACCESS_TOKEN, "Access token is incorrect or has been revoked.", {}
        if failure == FAIL_EXPIRED_TOKEN:
            return ACCESS_TOKEN_EXPIRE, "Access token has expired.", {}
        if failure == FAIL_RATE_LIMIT:
            return REQUEST_TOO_FREQUENT, "Too many requests. Please retry in some time.", {}
        if failure == FAIL_SYSTEM:
            return SYS_ERROR, "System error.", {}
        if failure == FAIL_SLOW:
            # A slow server still does the work once it gets to it.
            time.sleep(self.slow_seconds)
        routes: dict[tuple[str, str], Callable[[str, dict[str, str], str, bytes], dict[str, Any]]]
        routes = {
            ("POST", UPLOAD): self._upload,
            ("POST", CREATE): self._create,
            ("POST", UPDATE): self._update,
            ("GET", GET): self._get,
            ("GET", LIST): self._list,
        }
        route = routes.get((method, parts.path))
        if route is None:
            return ROUTE_NOT_FOUND, f"Route {method} {parts.path} not found.", {}
        try:
            self._check_token(token)
            assert token is not None
            if self._rate_limited(token):
                return REQUEST_TOO_FREQUENT, "Too many requests. Please retry in some time.", {}
            data = route(token, query, content_type, body)
        except _Refusal as refusal:
            return refusal.code, refusal.message, {}
        if failure == FAIL_LOST:
            return FAIL_LOST
        return OK, "OK", data

    # -- the calls

    def _upload(self, token: str, query: dict[str, str], ctype: str, body: bytes) -> dict[str, Any]:
        parts = _multipart(ctype, body)

        def text(name: str) -> str | None:
            part = parts.get(name)
            return part.content.decode("utf-8", "replace") if part is not None else None

        with self.state.lock:
            advertiser = self._advertiser(text("advertiser_id"), token)
        kind = text("calculate_type")
        if not kind:
            raise _missing("calculate_type")
        if kind not in CALCULATE_TYPES:
            raise _Refusal(
                PARAM_ERROR,
                f"calculate_type: Must be one of: {', '.join(sorted(CALCULATE_TYPES))}.",
            )
        upload = parts.get("file")
        if upload is None or upload.filename is None:
            raise _missing("file")
        file_name = text("file_name") or upload.filename
        if not file_name.lower().endswith((".csv", ".txt")):
            raise _Refusal(FILE_TYPE_ERROR, "Only .csv and .txt files are supported.")
        signature = text("file_signature")
        if not signature:
            raise _missing("file_signature")
        content = upload.content
        if len(content) > self.max_file_bytes:
            raise _Refusal(FILE_TOO_LARGE, f"The file is larger than {self.max_file_bytes} bytes.")
        if signature.lower() != hashlib.md5(content, usedforsecurity=False).hexdigest():
            raise _Refusal(SIGNATURE_ERROR, "file_signature does not match the file's MD5.")
        ids = self._file_ids(kind, content)
        return {"file_path": self.state.add_file(advertiser, kind, ids)}

    @staticmethod
    def _file_ids(kind: str, content: bytes) -> frozenset[str]:
        lines = content.split(b"\n", 1)
        # A header row naming the type (as TikTok's customer-file template has) is allowed.
        first = lines[0].strip().replace(b" ", b"").upper()
        if first == kind.encode("ascii"):
            content = lines[1] if len(lines) > 1 else b""
        if not content.strip():
            raise _Refusal(FILE_EMPTY, "The file holds no ids.")
        shape = _MD5_FILE if kind.endswith("_MD5") else _SHA256_FILE
        if not shape.fullmatch(content):
            # Never echo the line: it may be a raw identifier.
            raise _Refusal(
                FILE_CALCULATE_TYPE_ERROR,
                f"The file's content does not match calculate_type {kind}: every line must be "
                "one lower-case hex hash (unhashed values are refused).",
            )
        return frozenset(content.decode("ascii").split())

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            parsed = json.loads(body or b"null")
        except ValueError:
            raise _Refusal(PARAM_ERROR, "The request body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise _Refusal(PARAM_ERROR, "The request body must be a JSON object.")
        return parsed

    def _files_of(self, advertiser: str, kind: str, raw: Any) -> list[UploadedFile]:
        if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
            raise _Refusal(PARAM_ERROR, "file_paths: must be a non-empty list of file paths.")
        if len(raw) > self.max_file_paths:
            raise _Refusal(
                PARAM_ERROR, f"file_paths: at most {self.max_file_paths} files per request."
            )
        found = []
        for path in raw:
            uploaded = self.state.files.get(path)
            # Another advertiser's file is as unknown as a made-up path.
            if uploaded is None or uploaded.advertiser_id != advertiser:
                raise _Refusal(FILE_NOT_EXIST, f"file_path {path[:80]!r} does not exist.")
            if uploaded.calculate_type != kind:
                raise _Refusal(
                    FILE_CALCULATE_TYPE_ERROR,
                    f"file_path {path[:80]!r} is {uploaded.calculate_type}, not {kind}.",
                )
            found.append(uploaded)
        return found

    def _create(self, token: str, query: dict[str, str], ctype: str, body: bytes) -> dict[str, Any]:
        request = self._json(body)
        with self.state.lock:
            advertiser = self._advertiser(request.get("advertiser_id"), token)
            name = request.get("custom_audience_name")
            if not isinstance(name, str) or not name.strip():
                raise _missing("custom_audience_name")
            if len(name) > MAX_NAME_LENGTH:
                raise _Refusal(
                    PARAM_ERROR, f"custom_audience_name: at most {MAX_NAME_LENGTH} characters."
                )
            kind = request.get("calculate_type")
            if not kind:
                raise _missing("calculate_type")
            if kind not in CALCULATE_TYPES:
                raise _Refusal(PARAM_ERROR, "calculate_type: not a known encryption type.")
            retention = request.get("retention_in_days")
            if retention is not None and (
                not isinstance(retention, int)
                or isinstance(retention, bool)
                or not 1 <= retention <= 365
            ):
                raise _Refusal(PARAM_ERROR, "retention_in_days: must be in [1, 365].")
            files = self._files_of(advertiser, kind, request.get("file_paths"))
            ids: set[str] = set().union(*(f.ids for f in files))
            audience_id = self.state.new_audience_id()
            audience = Audience(audience_id, advertiser, name, kind, ids, retention)
            audience.history.append(("CREATE", len(files), len(ids)))
            self.state.audiences[audience_id] = audience
        return {"custom_audience_id": audience_id}

    def _audience_of(self, advertiser: str, raw: Any) -> Audience:
        if raw is None or raw == "":
            raise _missing("custom_audience_id")
        audience = self.state.audiences.get(str(raw))
        if audience is None or audience.advertiser_id != advertiser:
            raise _Refusal(NOT_EXIST, f"Custom audience {str(raw)[:40]} does not exist.")
        return audience

    def _update(self, token: str, query: dict[str, str], ctype: str, body: bytes) -> dict[str, Any]:
        request = self._json(body)
        with self.state.lock:
            advertiser = self._advertiser(request.get("advertiser_id"), token)
            audience = self._audience_of(advertiser, request.get("custom_audience_id"))
            name = request.get("custom_audience_name")
            raw_paths = request.get("file_paths")
            if name is None and raw_paths is None:
                raise _Refusal(PARAM_ERROR, "Pass custom_audience_name or file_paths.")
            if name is not None and (
                not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH
            ):
                raise _Refusal(
                    PARAM_ERROR, f"custom_audience_name: 1 to {MAX_NAME_LENGTH} characters."
                )
            new_ids = audience.ids
            action = request.get("action", "REPLACE")
            if raw_paths is not None:
                if action not in ACTIONS:
                    raise _Refusal(PARAM_ERROR, f"action: Must be one of: {', '.join(ACTIONS)}.")
                files = self._files_of(advertiser, audience.calculate_type, raw_paths)
                given: set[str] = set().union(*(f.ids for f in files))
                if action == "APPEND":
                    new_ids = audience.ids | given
                elif action == "REMOVE":
                    new_ids = audience.ids - given
                else:
                    new_ids = given
                if len(new_ids) < self.min_audience_size:
                    raise _Refusal(
                        PARAM_ERROR,
                        f"The audience would hold {len(new_ids)} ids after {action}; "
                        f"APPEND, REMOVE and REPLACE need at least {self.min_audience_size}.",
                    )
                audience.history.append((action, len(files), len(new_ids)))
            audience.ids = set(new_ids)
            if name is not None:
                audience.name = name
        return {}

    def _details(self, audience: Audience) -> dict[str, Any]:
        return {
            "audience_id": audience.audience_id,
            "name": audience.name,
            "audience_type": "Customer File",
            "calculate_type": audience.calculate_type,
            "cover_num": len(audience.ids),
            "is_valid": True,
            "is_expiring": False,
        }

    def _get(self, token: str, query: dict[str, str], ctype: str, body: bytes) -> dict[str, Any]:
        with self.state.lock:
            advertiser = self._advertiser(query.get("advertiser_id"), token)
            raw = query.get("custom_audience_ids")
            if not raw:
                raise _missing("custom_audience_ids")
            try:
                ids = json.loads(raw)
            except ValueError:
                raise _Refusal(PARAM_ERROR, "custom_audience_ids: must be a JSON list.") from None
            if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_IDS_PER_GET:
                raise _Refusal(
                    PARAM_ERROR, f"custom_audience_ids: a list of 1 to {MAX_IDS_PER_GET} ids."
                )
            found = [self._audience_of(advertiser, i) for i in ids]
            return {
                "list": [
                    {
                        "audience_details": self._details(a),
                        "audience_history": [
                            {"action": act, "file_count": n, "size_after": size}
                            for act, n, size in a.history
                        ],
                    }
                    for a in found
                ]
            }

    def _list(self, token: str, query: dict[str, str], ctype: str, body: bytes) -> dict[str, Any]:
        with self.state.lock:
            advertiser = self._advertiser(query.get("advertiser_id"), token)
            try:
                page = int(query.get("page", "1"))
                page_size = int(query.get("page_size", "10"))
            except ValueError:
                raise _Refusal(PARAM_ERROR, "page and page_size must be integers.") from None
            if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
                raise _Refusal(
                    PARAM_ERROR, f"page must be >= 1 and page_size 1 to {MAX_PAGE_SIZE}."
                )
            mine = [a for a in self.state.audiences.values() if a.advertiser_id == advertiser]
            start = (page - 1) * page_size
            return {
                "list": [self._details(a) for a in mine[start : start + page_size]],
                "page_info": {
                    "page": page,
                    "page_size": page_size,
                    "total_number": len(mine),
                    "total_page": -(-len(mine) // page_size),
                },
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeTikTok

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: a request line is all it would log, but tests read stderr.
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        outcome = self.owner.handle(
            self.command,
            self.path,
            self.headers.get("Content-Type", ""),
            self.headers.get("Access-Token"),
            body,
        )
        if outcome in (FAIL_DROP, FAIL_LOST):
            # Nothing answered: the connection just closes.
            self.close_connection = True
            return
        if outcome == FAIL_HTTP_500:
            self._write(500, b"<html><body>500 Internal Server Error</body></html>", "text/html")
            return
        assert not isinstance(outcome, str)
        code, message, data = outcome
        status = 404 if code == ROUTE_NOT_FOUND else 200
        envelope = {
            "code": code,
            "message": message,
            "request_id": uuid.uuid4().hex,
            "data": data,
        }
        self._write(status, json.dumps(envelope).encode("utf-8"), "application/json")

    def _write(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The caller gave up (a slow answer past its timeout).
            self.close_connection = True
