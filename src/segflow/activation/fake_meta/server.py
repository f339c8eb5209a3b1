"""``FakeMeta``: the HTTP server, its controls, and the order in which it checks a call.

Every request passes the same gate: the request line's length (over
:data:`MAX_REQUEST_LINE` bytes the connection is closed unanswered), the API
version, the access token, any scripted failure (:meth:`FakeMeta.fail_next`,
:meth:`FakeMeta.chaos`), the object (exists and the token may see it), the
token's permissions, the ad account's custom-audience call budget, then the
endpoint itself.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from segflow.activation.fake_meta import errors
from segflow.activation.fake_meta.errors import API_VERSION, GraphError
from segflow.activation.fake_meta.state import (
    Account,
    Audience,
    CallBudget,
    Entry,
    Session,
    Token,
    read_payload,
    row_entry,
)

#: Longest request line answered; a longer one gets its connection closed with
#: no response, as Meta's front end does (facebook-python-business-sdk#717:
#: ``RemoteDisconnected`` on a large ``delete_users``).
MAX_REQUEST_LINE = 16_384
#: Calls per ad account per rolling hour for the custom-audience use case: the
#: base of Meta's standard-access formula (rate-limiting guide, as summarised in
#: api-evangelist/facebook-business-manager: 5000 + 40 * active custom audiences).
DEFAULT_CALLS_PER_HOUR = 5_000
CUSTOMER_FILE_SOURCES = frozenset(
    {"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED"}
)
ACCOUNT_FIELDS = frozenset(
    {"id", "account_id", "name", "account_status", "business", "tos_accepted"}
)
AUDIENCE_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "account_id",
        "subtype",
        "customer_file_source",
        "approximate_count_lower_bound",
        "approximate_count_upper_bound",
        "operation_status",
        "data_source",
        "time_updated",
    }
)
#: What :meth:`FakeMeta.fail_next` and :meth:`FakeMeta.chaos` can script.
FAILURE_KINDS = (
    "app_limit",  # code 4
    "user_limit",  # code 17
    "calls_exceeded",  # code 613
    "account_limit",  # code 80003 with X-Business-Use-Case-Usage
    "transient",  # code 2, HTTP 500, is_transient
    "unavailable",  # HTTP 503, an HTML page
    "drop",  # connection closed unanswered, nothing applied
    "slow",  # answered after ``sleep`` seconds (applied)
    "lost",  # applied, then the connection closed unanswered
)


@dataclass
class Received:
    """One request as the fake saw it; ``params`` merges the query string and the form body."""

    method: str
    path: str
    params: dict[str, str]
    body_size: int
    request_line_length: int
    status: int | None = None
    outcome: str = ""


@dataclass
class _Chaos:
    rng: random.Random
    rate: float
    sleep: float


class _Drop(Exception):
    """Close the connection without an answer."""


@dataclass
class _Call:
    method: str
    version: str
    parts: list[str]
    params: dict[str, str]
    token: Token | None = None


@dataclass
class FakeMeta:
    host: str = "127.0.0.1"
    port: int = 0
    calls_per_hour: int = DEFAULT_CALLS_PER_HOUR
    clock: Callable[[], float] = time.time
    #: Hashes that make a row an invalid entry (counted, sampled, not held).
    refuse: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            raise ValueError(f"the fake serves on loopback only, not {self.host!r}")
        self._lock = threading.Lock()
        self._tokens: dict[str, Token] = {}
        self._accounts: dict[str, Account] = {}
        self._audiences: dict[str, Audience] = {}
        self._next_audience = 23_850_000_000_000_001
        self._failures: deque[tuple[str, float]] = deque()
        self._chaos: _Chaos | None = None
        self._budget = CallBudget(self.calls_per_hour)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeMeta:
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
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
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeMeta:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Graph root to set as ``FacebookSession.GRAPH``."""
        return f"http://{self.host}:{self.port}"

    # -- setup

    def add_token(
        self,
        token: str,
        accounts: Iterable[str] = (),
        expired: bool = False,
        permissions: Iterable[str] = ("ads_management",),
    ) -> None:
        """A token that may see ``accounts`` (digits, or ``act_`` ids)."""
        with self._lock:
            self._tokens[token] = Token(
                token, {_digits(a) for a in accounts}, expired, False, frozenset(permissions)
            )

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens[token].revoked = True

    def add_account(
        self,
        account_id: str,
        name: str | None = None,
        *,
        business: tuple[str, str] | None = None,
        account_status: int = 1,
        tos_accepted: bool = True,
    ) -> None:
        """An ad account; ``business`` is the owning business's ``(id, name)``."""
        digits = _digits(account_id)
        with self._lock:
            self._accounts[digits] = Account(
                digits, name or f"Ad account {digits}", account_status, business, tos_accepted
            )

    def accept_tos(self, account_id: str, accepted: bool = True) -> None:
        with self._lock:
            self._accounts[_digits(account_id)].tos = accepted

    def add_audience(
        self,
        account_id: str,
        name: str = "segment",
        customer_file_source: str = "USER_PROVIDED_ONLY",
    ) -> str:
        """A customer-file Custom Audience of ``account_id``; returns its id."""
        with self._lock:
            return self._new_audience(
                _digits(account_id), name, "", customer_file_source
            ).audience_id

    # -- control and inspection

    def fail_next(self, kind: str, count: int = 1, *, sleep: float = 2.0) -> None:
        """Answer the next ``count`` requests (past the token check) with ``kind``.

        ``kind`` is one of :data:`FAILURE_KINDS`; ``sleep`` is the delay of ``slow``.
        """
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure {kind!r}; one of {FAILURE_KINDS}")
        with self._lock:
            self._failures.extend([(kind, sleep)] * count)

    def chaos(self, seed: int, rate: float = 0.3, sleep: float = 2.0) -> None:
        """Fail about ``rate`` of requests at random (seeded), any kind; ``rate=0`` stops."""
        with self._lock:
            self._chaos = _Chaos(random.Random(seed), rate, sleep) if rate > 0 else None

    def entries(self, audience_id: str) -> set[Entry]:
        with self._lock:
            return set(self._audiences[audience_id].entries)

    def hashes(self, audience_id: str, key: str) -> set[str]:
        """Every value of ``key`` (e.g. ``"EMAIL"``) the audience holds."""
        with self._lock:
            return self._audiences[audience_id].hashes(key)

    def audiences(self, account_id: str | None = None) -> list[str]:
        with self._lock:
            return [
                a.audience_id
                for a in self._audiences.values()
                if account_id is None or a.account_id == _digits(account_id)
            ]

    def saw_raw(self, values: Iterable[str]) -> bool:
        """Whether any of ``values`` appeared anywhere in any request's parameters."""
        wanted = [v for v in values if v]
        if not wanted:
            return False
        for received in list(self.received):
            text = "\n".join(f"{k}={v}" for k, v in received.params.items())
            if any(v in text for v in wanted):
                return True
        return False

    @property
    def request_count(self) -> int:
        return len(self.received)

    def requests(self, method: str | None = None, path_end: str = "") -> list[Received]:
        return [
            r
            for r in list(self.received)
            if (method is None or r.method == method) and r.path.endswith(path_end)
        ]

    # -- the gate every request passes

    def _serve(
        self, method: str, target: str, body: bytes, record: Received, content_type: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: (status, headers, body); raises _Drop to answer nothing."""
        split = urlsplit(target)
        params = _form(split.query)
        if body and content_type.split(";")[0].strip().lower() == "application/json":
            # Graph takes a JSON object as the body too; its values are the
            # parameters, objects among them as their JSON.
            try:
                given = json.loads(body)
            except ValueError:
                given = None
            if not isinstance(given, dict):
                record.params = params
                refused = errors.invalid_parameter(
                    "Invalid body", "The request body is not a JSON object."
                )
                return refused.status, dict(refused.headers), refused.body()
            params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in given.items()})
        elif body:
            params.update(_form(body.decode("utf-8", "replace")))
        record.params = params
        # Graph's "method override": a POST with method=delete is a DELETE, for
        # clients that cannot send one (Graph API guide, "Deleting"; relied on by
        # restfb, restfb/restfb#174). Other overrides are not documented.
        if method == "POST" and params.get("method", "").upper() == "DELETE":
            del params["method"]
            method = "DELETE"
        parts = [p for p in split.path.split("/") if p]
        try:
            if not parts or parts[0] != API_VERSION:
                raise errors.deprecated_version(parts[0] if parts else "")
            call = _Call(method, parts[0], parts[1:], params)
            with self._lock:
                call.token = self._token(params.get("access_token"))
                failure = self._next_failure()
            if failure is not None:
                kind, sleep = failure
                answer = self._scripted(kind, sleep, call)
                if answer is not None:
                    return answer
            status, headers, payload = self._route(call)
            return status, headers, json.dumps(payload).encode()
        except GraphError as refused:
            return refused.status, dict(refused.headers), refused.body()

    def _scripted(
        self, kind: str, sleep: float, call: _Call
    ) -> tuple[int, dict[str, str], bytes] | None:
        if kind == "drop":
            raise _Drop
        if kind == "slow":
            time.sleep(sleep)
            return None
        if kind == "lost":
            try:
                self._route(call)
            except GraphError:
                pass
            raise _Drop
        if kind == "unavailable":
            return 503, {"Content-Type": "text/html; charset=utf-8"}, errors.UNAVAILABLE_HTML
        if kind == "account_limit":
            account = self._account_of(call) or "0"
            raise errors.account_rate_limited(self._usage_header(account, forced=True))
        raise {
            "app_limit": errors.app_limit,
            "user_limit": errors.user_limit,
            "calls_exceeded": errors.calls_exceeded,
            "transient": errors.temporary,
        }[kind]()

    def _next_failure(self) -> tuple[str, float] | None:
        """Lock held."""
        if self._failures:
            return self._failures.popleft()
        chaos = self._chaos
        if chaos is None or chaos.rng.random() >= chaos.rate:
            return None
        return chaos.rng.choice(FAILURE_KINDS), chaos.sleep

    def _token(self, text: str | None) -> Token:
        """Lock held."""
        if not text:
            raise errors.token_missing()
        token = self._tokens.get(text)
        if token is None:
            raise errors.token_invalid()
        if token.revoked:
            raise errors.token_revoked()
        if token.expired:
            raise errors.token_expired(self.clock())
        return token

    def _account_of(self, call: _Call) -> str | None:
        if not call.parts:
            return None
        node = call.parts[0]
        if node.startswith("act_"):
            return node[4:]
        with self._lock:
            audience = self._audiences.get(node)
            return audience.account_id if audience else None

    def _usage_header(self, account_id: str, forced: bool = False) -> str:
        """``X-Business-Use-Case-Usage``: the account's custom-audience use, keyed by its id."""
        with self._lock:
            percent, regain = self._budget.usage(account_id, self.clock())
        if forced:
            percent, regain = 100, max(regain, 1)
        return json.dumps(
            {
                account_id: [
                    {
                        "type": "custom_audience",
                        "call_count": percent,
                        "total_cputime": percent,
                        "total_time": percent,
                        "estimated_time_to_regain_access": regain,
                        "ads_api_access_tier": "standard_access",
                    }
                ]
            }
        )

    # -- routing

    def _route(self, call: _Call) -> tuple[int, dict[str, str], Any]:
        assert call.token is not None
        node = call.parts[0] if call.parts else ""
        edge = "/".join(call.parts[1:])
        if node.startswith("act_"):
            account = self._visible_account(call, node)
            if edge == "" and call.method == "GET":
                return 200, {}, self._account_fields(account, call.params)
            if edge == "customaudiences" and call.method == "POST":
                self._require_write(call.token)
                return self._charged(
                    account.account_id, lambda: self._create_audience(account, call)
                )
            raise errors.unsupported(call.method, node)
        audience = self._visible_audience(call, node)
        if edge == "" and call.method == "GET":
            return self._charged(
                audience.account_id, lambda: self._audience_fields(audience, call.params)
            )
        if edge == "users" and call.method in ("POST", "DELETE"):
            self._require_write(call.token)
            return self._charged(audience.account_id, lambda: self._users(audience, call))
        raise errors.unsupported(call.method, node)

    def _visible_account(self, call: _Call, node: str) -> Account:
        assert call.token is not None
        with self._lock:
            account = self._accounts.get(node[4:])
            if account is None or account.account_id not in call.token.accounts:
                raise errors.unsupported(call.method, node)
            if not call.token.may_read():
                raise errors.permission_denied()
            return account

    def _visible_audience(self, call: _Call, node: str) -> Audience:
        assert call.token is not None
        with self._lock:
            audience = self._audiences.get(node)
            if audience is None or audience.account_id not in call.token.accounts:
                raise errors.unsupported(call.method, node)
            if not call.token.may_read():
                raise errors.permission_denied()
            return audience

    def _require_write(self, token: Token) -> None:
        if not token.may_write():
            raise errors.permission_denied()

    def _charged(
        self, account_id: str, handler: Callable[[], Any]
    ) -> tuple[int, dict[str, str], Any]:
        """Run a custom-audience call against the account's hourly budget."""
        now = self.clock()
        with self._lock:
            over = self._budget.over(account_id, now)
            if not over:
                self._budget.charge(account_id, now)
        if over:
            raise errors.account_rate_limited(self._usage_header(account_id))
        headers = {"X-Business-Use-Case-Usage": self._usage_header(account_id)}
        try:
            return 200, headers, handler()
        except GraphError as refused:
            refused.headers.update(headers)
            raise

    # -- endpoints

    def _account_fields(self, account: Account, params: dict[str, str]) -> dict[str, Any]:
        fields = _fields(params, ACCOUNT_FIELDS, "AdAccount", default=("id", "account_id"))
        values: dict[str, Any] = {
            "id": account.node_id,
            "account_id": account.account_id,
            "name": account.name,
            "account_status": account.account_status,
            # Meta's map of accepted terms; custom_audience_tos is the Custom Audience terms.
            "tos_accepted": {"custom_audience_tos": 1} if account.tos else {},
        }
        if account.business is not None:
            values["business"] = {"id": account.business[0], "name": account.business[1]}
        out = {name: values[name] for name in fields if name in values}
        out.setdefault("id", account.node_id)
        return out

    def _create_audience(self, account: Account, call: _Call) -> dict[str, Any]:
        params = call.params
        if not account.tos:
            raise errors.tos_not_accepted(account.account_id)
        name = params.get("name", "")
        if not name:
            raise errors.missing_parameter("name")
        subtype = params.get("subtype", "CUSTOM")
        if subtype != "CUSTOM":
            raise errors.invalid_parameter(
                "Unsupported Audience Type",
                f"The fake creates customer-file audiences (subtype CUSTOM) only, not {subtype}.",
            )
        source = params.get("customer_file_source", "")
        if not source:
            raise errors.invalid_parameter(
                "Customer File Source Required",
                "A customer list audience needs customer_file_source: USER_PROVIDED_ONLY, "
                "PARTNER_PROVIDED_ONLY or BOTH_USER_AND_PARTNER_PROVIDED.",
            )
        if source not in CUSTOMER_FILE_SOURCES:
            raise errors.invalid_parameter(
                "Invalid Customer File Source", f"{source} is not a customer_file_source."
            )
        with self._lock:
            audience = self._new_audience(
                account.account_id, name, params.get("description", ""), source
            )
        return {"id": audience.audience_id}

    def _audience_fields(self, audience: Audience, params: dict[str, str]) -> dict[str, Any]:
        fields = _fields(params, AUDIENCE_FIELDS, "CustomAudience", default=("id",))
        with self._lock:
            lower, upper = audience.count_bounds()
            values: dict[str, Any] = {
                "id": audience.audience_id,
                "name": audience.name,
                "description": audience.description,
                "account_id": audience.account_id,
                "subtype": audience.subtype,
                "customer_file_source": audience.customer_file_source,
                "approximate_count_lower_bound": lower,
                "approximate_count_upper_bound": upper,
                "operation_status": {"code": 200, "description": "Normal"},
                "data_source": {
                    "type": "FILE_IMPORTED",
                    "sub_type": "HASHES",
                    "creation_params": "[]",
                },
                "time_updated": audience.time_updated,
            }
        out = {name: values[name] for name in fields}
        out.setdefault("id", audience.audience_id)
        return out

    def _users(self, audience: Audience, call: _Call) -> dict[str, Any]:
        with self._lock:
            account = self._accounts[audience.account_id]
            tos = account.tos
        if not tos:
            raise errors.tos_not_accepted(account.account_id)
        payload = read_payload(call.params)
        session = _read_session(call.params)
        if session is not None:
            with self._lock:
                held = audience.sessions.get(session["session_id"])
                if held is not None and held.finished:
                    raise errors.invalid_parameter(
                        "Session Finished",
                        f"Session {held.session_id} already received its last batch.",
                    )
        adding = call.method == "POST"
        invalid = 0
        samples: dict[str, str] = {}
        entries: list[Entry] = []
        refuse = self.refuse
        for row in payload.rows:
            entry, reason = row_entry(payload.keys, row, refuse)
            if entry is None:
                invalid += 1
                if len(samples) < 10:
                    sample = next((v for v in row if v), "")
                    samples[sample] = reason
                continue
            entries.append(entry)
        with self._lock:
            if adding:
                for entry in entries:
                    audience.add(entry)
            else:
                for entry in entries:
                    audience.remove_matching(entry)
            audience.time_updated = int(self.clock())
            if session is None:
                session_id = random.randrange(10**15, 10**16)
            else:
                session_id = session["session_id"]
                held = audience.sessions.setdefault(session_id, Session(session_id))
                held.batches.add(session["batch_seq"])
                held.received += len(payload.rows)
                held.invalid += invalid
                held.finished = bool(session["last_batch_flag"])
        return {
            "audience_id": audience.audience_id,
            "session_id": str(session_id),
            "num_received": len(payload.rows),
            "num_invalid_entries": invalid,
            "invalid_entry_samples": samples,
        }

    def _new_audience(self, account_id: str, name: str, description: str, source: str) -> Audience:
        """Lock held."""
        if account_id not in self._accounts:
            raise ValueError(f"no account {account_id}: add_account first")
        audience_id = str(self._next_audience)
        self._next_audience += 1
        audience = Audience(
            audience_id, account_id, name, description, "CUSTOM", source, int(self.clock())
        )
        self._audiences[audience_id] = audience
        return audience


def _digits(account_id: str) -> str:
    digits = account_id.removeprefix("act_")
    if not digits.isdigit():
        raise ValueError(f"an ad account id is digits (optionally act_...): {account_id!r}")
    return digits


def _form(text: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _fields(
    params: dict[str, str], known: frozenset[str], node_type: str, default: tuple[str, ...]
) -> list[str]:
    text = params.get("fields", "")
    if not text:
        return list(default)
    names = [f.strip() for f in text.split(",") if f.strip()]
    for name in names:
        if name not in known:
            raise errors.nonexisting_field(name, node_type)
    return names


def _read_session(params: dict[str, str]) -> dict[str, int] | None:
    text = params.get("session")
    if not text:
        return None
    try:
        session = json.loads(text)
    except ValueError:
        session = None
    if not isinstance(session, dict):
        raise errors.invalid_parameter("Invalid Session", "session is a JSON object.")
    out: dict[str, int] = {}
    for key in ("session_id", "batch_seq"):
        value = session.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise errors.invalid_parameter(
                "Invalid Session", f"session.{key} is a positive integer."
            )
        out[key] = value
    last = session.get("last_batch_flag", False)
    if not isinstance(last, bool):
        raise errors.invalid_parameter("Invalid Session", "session.last_batch_flag is a boolean.")
    out["last_batch_flag"] = int(last)
    total = session.get("estimated_num_total")
    if total is not None and (not isinstance(total, int) or total < 0):
        raise errors.invalid_parameter("Invalid Session", "session.estimated_num_total is a count.")
    return out


def _handler_for(fake: FakeMeta) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-graph"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle_one_request(self) -> None:
            try:
                line = self.rfile.readline(MAX_REQUEST_LINE + 3)
                if not line:
                    self.close_connection = True
                    return
                if len(line.rstrip(b"\r\n")) > MAX_REQUEST_LINE:
                    self._refuse_long_line(line)
                    return
                self.raw_requestline = line
                if not self.parse_request():
                    return
                self._answer()
                self.wfile.flush()
            except (TimeoutError, ConnectionError):
                self.close_connection = True

        def _refuse_long_line(self, head: bytes) -> None:
            """Read the rest of the request, then close without a word."""
            pieces = [head]
            line = head
            while not line.endswith(b"\n"):
                line = self.rfile.readline(1 << 20)
                if not line:
                    break
                pieces.append(line)
            request_line = b"".join(pieces).rstrip(b"\r\n").decode("latin-1")
            size = 0
            while True:
                header = self.rfile.readline(1 << 16)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    size = int(value.strip())
            if size:
                self.rfile.read(size)
            words = request_line.split(" ")
            target = urlsplit(words[1] if len(words) > 1 else "")
            # Kept, query and all: a test must see what reached the fake even unanswered.
            fake.received.append(
                Received(
                    words[0],
                    target.path,
                    _form(target.query),
                    size,
                    len(request_line),
                    None,
                    "dropped: request line too long",
                )
            )
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _answer(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else b""
            target = self.path
            record = Received(
                self.command, urlsplit(target).path, {}, len(body), len(self.requestline)
            )
            fake.received.append(record)
            try:
                status, headers, payload = fake._serve(
                    self.command, target, body, record, self.headers.get("Content-Type", "")
                )
            except _Drop:
                record.outcome = "dropped"
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            record.status = status
            record.outcome = "ok" if status == 200 else "error"
            self.send_response(status)
            headers.setdefault("Content-Type", "application/json; charset=UTF-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("facebook-api-version", API_VERSION)
            self.send_header("x-fb-trace-id", errors.trace_id())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
