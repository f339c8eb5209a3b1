"""``FakeDataManager``: the gRPC server, its controls, and the order in which it checks a call.

Every call goes through the same gate, in the order Google's front end
applies it: authentication (when ``require_auth``), the project's quota,
then any scripted failure (:meth:`FakeDataManager.fail_next`,
:meth:`FakeDataManager.chaos`), then the method itself.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.ads.datamanager_v1.types import ingestion_service as svc
from google.ads.datamanager_v1.types import user_list_service as uls

from segflow.activation.fake.checks import (
    Member,
    destination_problems,
    field_warnings,
    member_keys,
    member_problems,
    request_problems,
)
from segflow.activation.fake.errors import (
    Refusal,
    Violation,
    abort,
    invalid_argument,
    not_found,
    path,
    permission_denied,
    refusal,
    unauthenticated,
)
from segflow.activation.fake.oauth import TokenServer
from segflow.activation.fake.quota import (
    INGESTION_MUTATE,
    INGESTION_READ,
    MANAGEMENT_MUTATE,
    MANAGEMENT_READ,
    Quota,
    exceeded,
)
from segflow.activation.fake.state import (
    DAY,
    CustomerList,
    Upload,
    apply,
    user_list_name,
)

INGESTION = "google.ads.datamanager.v1.IngestionService"
USER_LISTS = "google.ads.datamanager.v1.UserListService"
#: Google's cap on a user list's membership duration.
MAX_MEMBERSHIP_DAYS = 540
_ACCOUNT_NAME = re.compile(r"accountTypes/GOOGLE_ADS/accounts/(\d+)")
_LIST_NAME = re.compile(r"accountTypes/GOOGLE_ADS/accounts/(\d+)/userLists/(\d+)")
_FILTER = re.compile(r'\s*(display_name|displayName|id)\s*=\s*"?([^"]*)"?\s*')


@dataclass
class Failure:
    """One scripted failure: a gRPC status, optionally after a delay.

    ``reason`` and ``violations`` (``(field, reason)`` pairs) become the
    ``ErrorInfo`` and ``BadRequest`` details; ``quota`` (``"minute"`` or
    ``"day"``) answers Google's structured quota error for that limit instead.
    """

    code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
    message: str = "injected failure"
    retry_delay: float | None = None
    #: Seconds to wait before answering (past the caller's timeout, the
    #: request still takes effect afterwards, as a slow server's would).
    sleep: float = 0.0
    reason: str | None = None
    violations: Sequence[tuple[str, str]] = ()
    quota: str | None = None

    def refusal(self, quota: Quota, group: str) -> Refusal:
        if self.quota is not None:
            limit = quota.limit(group, self.quota)
            if self.quota == "minute":
                return exceeded(limit, retry_delay=self.retry_delay or 60.0)
            return exceeded(limit, retry_delay=self.retry_delay)
        assert self.code is not None
        return refusal(
            self.code,
            self.message,
            reason=self.reason,
            violations=[Violation(f, r) for f, r in self.violations],
            retry_delay=self.retry_delay,
        )


@dataclass
class Received:
    method: str
    request: Any
    outcome: str
    request_id: str | None = None


@dataclass
class _Chaos:
    rng: random.Random
    rate: float
    sleep: float


@dataclass
class FakeDataManager:
    host: str = "127.0.0.1"
    port: int = 0
    latency: float = 0.0
    per_minute: int = 300
    per_day: int = 100_000
    #: ``RetrieveRequestStatus`` answers PROCESSING this many times per request.
    processing_polls: int = 1
    clock: Callable[[], float] = time.time
    require_auth: bool = False
    received: list[Received] = field(default_factory=list)
    #: Identifier codes that make a member invalid at ingest (INVALID_ARGUMENT).
    refuse: set[str] = field(default_factory=set)
    #: Identifier codes of members accepted at ingest but failed in processing:
    #: not held, and counted under ``refuse_later_reason`` in the request status.
    refuse_later: set[str] = field(default_factory=set)
    refuse_later_reason: str = "PROCESSING_ERROR_REASON_INVALID_FORMAT"
    #: Identifier code -> ``WarningReason`` name: an accepted ingest's answer
    #: carries a field warning for each member holding one (the member is
    #: still held), as Google warns about a value it ignored.
    warn: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: deque[Failure] = deque()
        self._accounts: dict[str, set[str]] = {}
        self._lists: dict[str, CustomerList] = {}
        self._uploads: dict[str, Upload] = {}
        self._next_list_id = 9_000_000_001
        self._chaos: _Chaos | None = None
        self._server: grpc.Server | None = None
        self.quota = Quota(self.per_minute, self.per_day, self.clock)
        self.tokens = TokenServer(self.clock)

    # -- lifecycle

    def start(self) -> FakeDataManager:
        limit = 64 * 1024 * 1024
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )
        ingestion = {
            "IngestAudienceMembers": self._method(
                "IngestAudienceMembers", INGESTION_MUTATE, svc.IngestAudienceMembersRequest,
                self._ingest,
            ),
            "RemoveAudienceMembers": self._method(
                "RemoveAudienceMembers", INGESTION_MUTATE, svc.RemoveAudienceMembersRequest,
                self._remove,
            ),
            "RetrieveRequestStatus": self._method(
                "RetrieveRequestStatus", INGESTION_READ, svc.RetrieveRequestStatusRequest,
                self._request_status,
            ),
        }  # fmt: skip
        user_lists = {
            "CreateUserList": self._method(
                "CreateUserList", MANAGEMENT_MUTATE, uls.CreateUserListRequest, self._create_list
            ),
            "GetUserList": self._method(
                "GetUserList", MANAGEMENT_READ, uls.GetUserListRequest, self._get_list
            ),
            "ListUserLists": self._method(
                "ListUserLists", MANAGEMENT_READ, uls.ListUserListsRequest, self._list_lists
            ),
        }
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(INGESTION, ingestion),
                grpc.method_handlers_generic_handler(USER_LISTS, user_lists),
            )
        )
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        self.tokens.start()
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
            self.tokens.stop()

    def __enter__(self) -> FakeDataManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint (``refresh_token`` grant), for google-auth's ``token_uri``."""
        return self.tokens.uri

    # -- setup

    def add_account(self, account_id: str, managers: Iterable[str] = ()) -> None:
        """An operating account; a call's login account must be it or one of ``managers``."""
        if not account_id.isdigit():
            raise ValueError(f"a Google Ads account id is digits only: {account_id!r}")
        with self._lock:
            self._accounts.setdefault(account_id, set()).update(managers)

    def add_list(
        self,
        account_id: str,
        list_id: str | None = None,
        *,
        display_name: str | None = None,
        description: str = "",
        membership_days: int = MAX_MEMBERSHIP_DAYS,
    ) -> str:
        """A Customer Match list of ``account_id``; returns its id."""
        with self._lock:
            if account_id not in self._accounts:
                raise ValueError(f"no account {account_id}: add_account first")
            if list_id is None:
                list_id = self._new_list_id()
            if not list_id.isdigit():
                raise ValueError(f"a user list id is digits only: {list_id!r}")
            if list_id in self._lists:
                raise ValueError(f"list {list_id} exists")
            name = display_name or f"Customer Match list {list_id}"
            if self._name_taken(account_id, name):
                raise ValueError(f"display name {name!r} is taken in account {account_id}")
            self._lists[list_id] = CustomerList(
                account_id, list_id, name, description, membership_days
            )
        return list_id

    def oauth_client(self) -> tuple[str, str, str]:
        """A registered OAuth client: (client_id, client_secret, refresh_token)."""
        return self.tokens.register()

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token (and the access tokens it issued)."""
        self.tokens.revoke(refresh_token)

    # -- control and inspection

    def fail_next(self, *failures: Failure) -> None:
        with self._lock:
            self._failures.extend(failures)

    def chaos(self, seed: int, rate: float = 0.3, sleep: float = 2.0) -> None:
        """Fail about ``rate`` of requests at random (seeded); ``rate=0`` stops."""
        with self._lock:
            self._chaos = _Chaos(random.Random(seed), rate, sleep) if rate > 0 else None

    def members(self, list_id: str) -> set[Member]:
        """The entries the list holds, each one ingested member's sorted identifier codes."""
        with self._lock:
            held = self._lists.get(list_id)
            return set(held.entries) if held is not None else set()

    def list_size(self, list_id: str) -> int:
        with self._lock:
            return len(self._lists[list_id].entries)

    def list_sizes(self) -> dict[str, int]:
        with self._lock:
            return {list_id: len(held.entries) for list_id, held in self._lists.items()}

    def requests(self, method: str | None = None) -> Iterator[Any]:
        for r in list(self.received):
            if method is None or r.method == method:
                yield r.request

    # -- the gate every call passes

    def _method(
        self,
        name: str,
        group: str,
        message: Any,
        handler: Callable[[Any, dict[str, str]], tuple[Any, str | None]],
    ) -> grpc.RpcMethodHandler:
        def rpc(request: Any, context: grpc.ServicerContext) -> Any:
            if self.latency:
                time.sleep(self.latency)
            metadata = {k: str(v) for k, v in context.invocation_metadata()}
            try:
                if self.require_auth:
                    problem = self.tokens.check(metadata.get("authorization"))
                    if problem is not None:
                        raise unauthenticated(problem, f"{name}")
                self.quota.charge(group)
                failure = self._next_failure()
                if failure is not None:
                    if failure.sleep:
                        time.sleep(failure.sleep)
                    if failure.code is not None or failure.quota is not None:
                        raise failure.refusal(self.quota, group)
                response, request_id = handler(request, metadata)
            except Refusal as refused:
                self.received.append(Received(name, request, refused.code.name))
                abort(context, refused)
                raise  # abort raises; this keeps the type checker honest
            self.received.append(Received(name, request, "OK", request_id))
            return response

        return grpc.unary_unary_rpc_method_handler(
            rpc,
            request_deserializer=message.pb().FromString,
            response_serializer=lambda response: response.SerializeToString(),
        )

    def _next_failure(self) -> Failure | None:
        with self._lock:
            if self._failures:
                return self._failures.popleft()
            chaos = self._chaos
            if chaos is None or chaos.rng.random() >= chaos.rate:
                return None
            pick = chaos.rng.random()
        if pick < 0.4:
            return Failure(grpc.StatusCode.UNAVAILABLE, "chaos: unavailable")
        if pick < 0.7:
            return Failure(quota="minute", retry_delay=0.01)
        return Failure(None, sleep=chaos.sleep)

    # -- IngestionService

    def _ingest(self, request: Any, metadata: dict[str, str]) -> tuple[Any, str | None]:
        keys = member_keys(request)
        request_id = self._audience(request, ingest=True, keys=keys)
        answer = svc.IngestAudienceMembersResponse.pb()(request_id=request_id)
        answer.field_warnings.extend(field_warnings(request, self.warn, keys))
        return answer, request_id

    def _remove(self, request: Any, metadata: dict[str, str]) -> tuple[Any, str | None]:
        request_id = self._audience(request, ingest=False)
        return svc.RemoveAudienceMembersResponse.pb()(request_id=request_id), request_id

    def _audience(self, request: Any, ingest: bool, keys: list[Member] | None = None) -> str:
        problems = destination_problems(request)
        if problems:
            raise invalid_argument(problems)
        with self._lock:
            targets = [self._destination_list(i, d) for i, d in enumerate(request.destinations)]
        problems = request_problems(request, ingest)
        if problems:
            raise invalid_argument(problems)
        if keys is None:
            keys = member_keys(request)
        problems = member_problems(request, self.refuse, keys)
        if problems:
            raise invalid_argument(problems)
        request_id = uuid.uuid4().hex
        if not request.validate_only:
            with self._lock:
                upload = apply(
                    request, ingest, targets, self.refuse_later, self.refuse_later_reason, keys
                )
                self._uploads[request_id] = upload
        return request_id

    def _destination_list(self, index: int, destination: Any) -> CustomerList:
        """The list a destination names, if the caller may write to it (lock held)."""
        account = destination.operating_account.account_id
        at = path("destinations", index)
        if account not in self._accounts:
            raise permission_denied(
                f"{at}.operating_account", account, f"no access to account {account}"
            )
        if destination.HasField("login_account"):
            login = destination.login_account.account_id
            if login != account and login not in self._accounts[account]:
                raise permission_denied(
                    f"{at}.login_account",
                    login,
                    f"account {login} is not {account} nor one of its managers",
                )
        held = self._lists.get(destination.product_destination_id)
        if held is None or held.account_id != account:
            raise invalid_argument(
                [
                    Violation(
                        f"{at}.product_destination_id",
                        "INVALID_USER_LIST_ID",
                        f"no user list {destination.product_destination_id} in account {account}",
                    )
                ]
            )
        return held

    def _request_status(self, request: Any, metadata: dict[str, str]) -> tuple[Any, str | None]:
        with self._lock:
            upload = self._uploads.get(request.request_id)
            if upload is None:
                raise invalid_argument(
                    [
                        Violation(
                            "request_id",
                            "INVALID_REQUEST_ID",
                            "no successful, non-validate-only request has this id",
                        )
                    ]
                )
            upload.polls += 1
            processing = upload.polls <= self.processing_polls
            return upload.status_pb(processing), None

    # -- UserListService

    def _create_list(self, request: Any, metadata: dict[str, str]) -> tuple[Any, str | None]:
        account = self._parent_account(request.parent, metadata)
        wanted = request.user_list
        problems = []
        name = wanted.display_name.strip()
        if not name:
            problems.append(Violation("user_list.display_name", "REQUIRED_FIELD_MISSING"))
        seconds = (
            wanted.membership_duration.seconds if wanted.HasField("membership_duration") else 0
        )
        days = seconds // DAY if seconds else MAX_MEMBERSHIP_DAYS
        if seconds % DAY or wanted.membership_duration.nanos:
            problems.append(
                Violation(
                    "user_list.membership_duration",
                    "INVALID_ARGUMENT",
                    "a membership duration is a whole number of days",
                )
            )
        elif days > MAX_MEMBERSHIP_DAYS:
            problems.append(
                Violation(
                    "user_list.membership_duration",
                    "MEMBERSHIP_DURATION_TOO_LONG",
                    f"{days} days; at most {MAX_MEMBERSHIP_DAYS}",
                )
            )
        with self._lock:
            if name and self._name_taken(account, name):
                problems.append(
                    Violation(
                        "user_list.display_name",
                        "DISPLAY_NAME_ALREADY_USED",
                        f"account {account} has a user list named {name!r}",
                    )
                )
            if problems:
                raise invalid_argument(problems)
            created = CustomerList(account, self._new_list_id(), name, wanted.description, days)
            if not request.validate_only:
                self._lists[created.list_id] = created
            return created.as_pb(), None

    def _get_list(self, request: Any, metadata: dict[str, str]) -> tuple[Any, str | None]:
        match = _LIST_NAME.fullmatch(request.name)
        if match is None:
            raise invalid_argument([Violation("name", "INVALID_RESOURCE_NAME", request.name)])
        account, list_id = match.groups()
        with self._lock:
            self._check_access(account, metadata, "name")
            held = self._lists.get(list_id)
            if held is None or held.account_id != account:
                raise not_found("name", user_list_name(account, list_id))
            return held.as_pb(), None

    def _list_lists(self, request: Any, metadata: dict[str, str]) -> tuple[Any, str | None]:
        account = self._parent_account(request.parent, metadata)
        if request.page_size < 0:
            raise invalid_argument([Violation("page_size", "INVALID_ARGUMENT", "negative")])
        size = min(request.page_size or 50, 1000)
        offset = 0
        if request.page_token:
            token = re.fullmatch(r"offset-(\d+)", request.page_token)
            if token is None:
                raise invalid_argument([Violation("page_token", "INVALID_PAGE_TOKEN")])
            offset = int(token.group(1))
        keep = self._list_filter(request.filter)
        with self._lock:
            owned = sorted(
                (held for held in self._lists.values() if held.account_id == account),
                key=lambda held: int(held.list_id),
            )
            chosen = [held for held in owned if keep(held)]
            response = uls.ListUserListsResponse.pb()()
            for held in chosen[offset : offset + size]:
                response.user_lists.append(held.as_pb())
            if offset + size < len(chosen):
                response.next_page_token = f"offset-{offset + size}"
            return response, None

    @staticmethod
    def _list_filter(text: str) -> Callable[[CustomerList], bool]:
        if not text.strip():
            return lambda held: True
        match = _FILTER.fullmatch(text)
        if match is None:
            raise invalid_argument(
                [
                    Violation(
                        "filter",
                        "INVALID_FILTER",
                        'the fake understands `display_name = "..."` and `id = N`',
                    )
                ]
            )
        key, value = match.groups()
        if key == "id":
            return lambda held: held.list_id == value
        return lambda held: held.display_name == value

    def _parent_account(self, parent: str, metadata: dict[str, str]) -> str:
        match = _ACCOUNT_NAME.fullmatch(parent)
        if match is None:
            raise invalid_argument([Violation("parent", "INVALID_RESOURCE_NAME", parent)])
        account = match.group(1)
        with self._lock:
            self._check_access(account, metadata, "parent")
        return account

    def _check_access(self, account: str, metadata: dict[str, str], where: str) -> None:
        """The ``login-account`` header must be the account or one of its managers (lock held)."""
        if account not in self._accounts:
            raise permission_denied(where, account, f"no access to account {account}")
        header = metadata.get("login-account")
        if header is None:
            return
        match = _ACCOUNT_NAME.fullmatch(header)
        login = match.group(1) if match else header
        if login != account and login not in self._accounts[account]:
            raise permission_denied(
                "login-account", login, f"account {login} is not {account} nor one of its managers"
            )

    def _name_taken(self, account: str, name: str) -> bool:
        return any(
            held.account_id == account and held.display_name == name
            for held in self._lists.values()
        )

    def _new_list_id(self) -> str:
        while str(self._next_list_id) in self._lists:
            self._next_list_id += 1
        list_id = str(self._next_list_id)
        self._next_list_id += 1
        return list_id
