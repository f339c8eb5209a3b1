"""A local stand-in for Google's Data Manager API, for tests, benchmarks and demos.

``FakeDataManager`` is a real gRPC server on 127.0.0.1 that registers
``google.ads.datamanager.v1.IngestionService`` with the client library's own
message classes, so the real ``google-ads-datamanager`` client talks to it
unchanged (point ``SEGFLOW_DATAMANAGER_ENDPOINT`` at :attr:`address`). It

* checks requests the way the real service documents: destinations, HEX
  encoding, hashes that look like hashes, at most 10,000 members and 10
  identifiers each, consent and accepted terms on ingest;
* keeps each list's members as a set (a member is its identifiers), and
  leaves lists alone for ``validate_only`` requests;
* records every request it receives (as decoded protobuf messages);
* fails on demand: queued failures (:meth:`fail_next`), members whose
  identifiers it refuses (:attr:`refuse`), and a seeded random mix
  (:meth:`chaos`) of UNAVAILABLE, RESOURCE_EXHAUSTED with a retry delay,
  responses slower than the caller's timeout, and refused members.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.ads.datamanager_v1.types import ingestion_service as svc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

SERVICE = "google.ads.datamanager.v1.IngestionService"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_ACCEPTED = 1  # TermsOfServiceStatus.ACCEPTED
_HEX = 1  # Encoding.HEX
_GOOGLE_ADS = 1  # ProductAccount.AccountType.GOOGLE_ADS

Member = tuple[str, ...]


@dataclass
class Failure:
    """One scripted failure: a gRPC status, optionally after a delay."""

    code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE
    message: str = "injected failure"
    retry_delay: float | None = None
    #: Seconds to wait before answering (past the caller's timeout, the
    #: request still takes effect afterwards, as a slow server's would).
    sleep: float = 0.0


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
    received: list[Received] = field(default_factory=list)
    #: Identifier codes (as :func:`member_key` gives them) that make a member invalid.
    refuse: set[str] = field(default_factory=set)
    #: Seconds every request takes before it is handled.
    latency: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: deque[Failure] = deque()
        self._lists: dict[str, set[Member]] = {}
        self._chaos: _Chaos | None = None
        self._server: grpc.Server | None = None

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
        handlers = {
            "IngestAudienceMembers": grpc.unary_unary_rpc_method_handler(
                self._ingest,
                request_deserializer=svc.IngestAudienceMembersRequest.pb().FromString,
                response_serializer=svc.IngestAudienceMembersResponse.serialize,
            ),
            "RemoveAudienceMembers": grpc.unary_unary_rpc_method_handler(
                self._remove,
                request_deserializer=svc.RemoveAudienceMembersRequest.pb().FromString,
                response_serializer=svc.RemoveAudienceMembersResponse.serialize,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> FakeDataManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- control

    def fail_next(self, *failures: Failure) -> None:
        with self._lock:
            self._failures.extend(failures)

    def chaos(self, seed: int, rate: float = 0.3, sleep: float = 2.0) -> None:
        """Fail about ``rate`` of requests at random (seeded); ``rate=0`` stops."""
        with self._lock:
            self._chaos = _Chaos(random.Random(seed), rate, sleep) if rate > 0 else None

    def members(self, product_destination_id: str) -> set[Member]:
        with self._lock:
            return set(self._lists.get(product_destination_id, set()))

    def requests(self, method: str | None = None) -> Iterator[Any]:
        for r in list(self.received):
            if method is None or r.method == method:
                yield r.request

    # -- service

    def _ingest(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("IngestAudienceMembers", request, context)

    def _remove(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("RemoveAudienceMembers", request, context)

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
            return Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "chaos: quota", retry_delay=0.01)
        return Failure(None, sleep=chaos.sleep)

    def _handle(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        ingest = method == "IngestAudienceMembers"
        if self.latency:
            time.sleep(self.latency)
        failure = self._next_failure()
        if failure is not None:
            if failure.sleep:
                time.sleep(failure.sleep)
            if failure.code is not None:
                self.received.append(Received(method, request, failure.code.name))
                _abort(context, failure.code, failure.message, failure.retry_delay)
        problem = _check(request, ingest) or self._refused(request)
        if problem is not None:
            self.received.append(Received(method, request, "INVALID_ARGUMENT"))
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        request_id = uuid.uuid4().hex
        if not request.validate_only:
            with self._lock:
                for destination in request.destinations:
                    target = self._lists.setdefault(destination.product_destination_id, set())
                    for member in request.audience_members:
                        key = member_key(member)
                        if ingest:
                            target.add(key)
                        else:
                            target.discard(key)
        self.received.append(Received(method, request, "OK", request_id))
        response = (
            svc.IngestAudienceMembersResponse(request_id=request_id)
            if ingest
            else svc.RemoveAudienceMembersResponse(request_id=request_id)
        )
        return response

    def _refused(self, request: Any) -> str | None:
        if not self.refuse:
            return None
        for index, member in enumerate(request.audience_members):
            if self.refuse.intersection(member_key(member)):
                return f"audience_members[{index}]: INVALID_FORMAT: identifier refused"
        return None


def member_key(member: Any) -> Member:
    """A member as the sorted identifier strings it carries."""
    parts = []
    for identifier in member.user_data.user_identifiers:
        which = identifier.WhichOneof("identifier")
        if which == "email_address":
            parts.append(f"e:{identifier.email_address}")
        elif which == "phone_number":
            parts.append(f"p:{identifier.phone_number}")
        elif which == "address":
            a = identifier.address
            parts.append(f"a:{a.given_name}:{a.family_name}:{a.region_code}:{a.postal_code}")
    return tuple(sorted(parts))


def _check(request: Any, ingest: bool) -> str | None:
    if len(request.destinations) != 1:
        return "destinations: exactly one destination expected"
    destination = request.destinations[0]
    if not destination.product_destination_id:
        return "destinations[0].product_destination_id: required"
    if (
        destination.operating_account.account_type != _GOOGLE_ADS
        or not destination.operating_account.account_id.isdigit()
    ):
        return "destinations[0].operating_account: a Google Ads account id is required"
    if request.encoding != _HEX:
        return "encoding: HEX expected"
    if not 0 < len(request.audience_members) <= 10_000:
        return "audience_members: between 1 and 10,000 members per request"
    if ingest:
        if request.terms_of_service.customer_match_terms_of_service_status != _ACCEPTED:
            return "terms_of_service: TERMS_AND_CONDITIONS_NOT_SIGNED"
        if not request.HasField("consent"):
            return "consent: required on ingest"
    for index, member in enumerate(request.audience_members):
        identifiers = member.user_data.user_identifiers
        if not identifiers:
            return f"audience_members[{index}]: NO_IDENTIFIERS_PROVIDED"
        if len(identifiers) > 10:
            return f"audience_members[{index}]: TOO_MANY_USER_IDENTIFIERS"
        for identifier in identifiers:
            which = identifier.WhichOneof("identifier")
            if which in ("email_address", "phone_number"):
                if not _HASH.match(getattr(identifier, which)):
                    return f"audience_members[{index}].{which}: INVALID_HEX_ENCODING"
            elif which == "address":
                a = identifier.address
                if not (_HASH.match(a.given_name) and _HASH.match(a.family_name)):
                    return f"audience_members[{index}].address: INVALID_HEX_ENCODING"
                if not re.match(r"^[A-Z]{2}$", a.region_code) or not a.postal_code:
                    return f"audience_members[{index}].address: INVALID_COUNTRY_CODE"
    return None


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    retry_delay: float | None = None,
) -> None:
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_delay is not None:
        detail = any_pb2.Any()
        seconds = int(retry_delay)
        detail.Pack(
            error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(
                    seconds=seconds, nanos=int((retry_delay - seconds) * 1e9)
                )
            )
        )
        status.details.append(detail)
    context.abort_with_status(rpc_status.to_status(status))


def main(argv: list[str] | None = None) -> int:
    """``python -m segflow.activation.fake``: serve until SIGTERM or Ctrl-C.

    Prints its address first; on exit prints each list's size as JSON.
    """
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser(description="A local fake of the Data Manager API.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    args = parser.parse_args(argv)
    fake = FakeDataManager(port=args.port).start()
    print(f"fake Data Manager API listening on {fake.address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    with fake._lock:
        sizes = {name: len(members) for name, members in fake._lists.items()}
    fake.stop()
    print(json.dumps({"requests": len(fake.received), "lists": sizes}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
