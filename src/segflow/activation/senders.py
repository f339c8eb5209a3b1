"""Transport: how a batch of members reaches a destination, and how it fails.

A :class:`Sender` delivers one batch (an ingest or a remove) and returns the
platform's request id. Two senders exist: :class:`FileSender` appends each
batch as a JSON line, :class:`GoogleAdsSender` calls Google's Data Manager API
(``IngestAudienceMembers`` / ``RemoveAudienceMembers``) with the official
``google-ads-datamanager`` client.

Senders turn the platform's failures into three kinds the sync worker acts
on: :class:`TransientError` (retry later), :class:`RequestRejected` (the
request is invalid; split it to find the bad members) and :class:`LinkBroken`
(credentials or permissions: pause the link until a person fixes it).
What a destination is, and its stored credentials, live in
:mod:`segflow.activation.destinations`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from segflow.activation.destinations import (
    DENIED,
    FILE,
    GRANTED,
    OAUTH_SCOPE,
    OAUTH_TOKEN_URI,
    Destination,
    scrub,
)
from segflow.config import Settings, check_endpoint

INGEST = "ingest"
REMOVE = "remove"

#: Google's limits per request.
MAX_MEMBERS_PER_REQUEST = 10_000
MAX_IDENTIFIERS_PER_MEMBER = 10


class TransientError(Exception):
    """Worth retrying later; ``retry_after`` is the server's requested delay."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestRejected(Exception):
    """The platform refused the request as invalid (some member in it, usually)."""


class LinkBroken(Exception):
    """Needs a person: credentials, permissions, terms or a missing list."""


@dataclass(frozen=True)
class OutMember:
    """One audience member as it will be sent: identifier codes and consent."""

    rid: int
    codes: tuple[str, ...]
    #: (ad_user_data, ad_personalization) from the record, each None for
    #: "the destination's default".
    consent: tuple[str | None, str | None] = (None, None)


class Sender(Protocol):
    """Delivers batches to one destination; the sync pass builds one per link turn."""

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        """Deliver one batch; return the platform's request id."""

    def close(self) -> None: ...


def build_sender(
    destination: Destination, secret: dict[str, Any] | None, settings: Settings
) -> Sender:
    """The sender for this destination's kind; ``secret`` is its opened credentials."""
    if destination.kind == FILE:
        return FileSender(destination)
    return GoogleAdsSender(destination, secret, settings)


class FileSender:
    """Appends each batch as one JSON line; the request id is a fresh UUID."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.path = Path(destination.config["path"])

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        request_id = uuid.uuid4().hex
        line: dict[str, Any] = {
            "request_id": request_id,
            "destination": self.destination.name,
            "operation": operation,
            "encoding": "HEX",
        }
        default_user_data, default_personalization = self.destination.consent
        if operation == INGEST:
            line["consent"] = {
                "ad_user_data": default_user_data,
                "ad_personalization": default_personalization,
            }
            line["terms_of_service"] = "accepted"
        line["members"] = [_member_json(m, operation == INGEST) for m in members]
        data = json.dumps(line, separators=(",", ":")) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise TransientError(f"cannot append to {self.path}: {exc.strerror}") from None
        return request_id

    def close(self) -> None:
        pass


def _member_json(member: OutMember, with_consent: bool) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = []
    for code in member.codes:
        kind, _, rest = code.partition(":")
        if kind == "e":
            identifiers.append({"email_address": rest})
        elif kind == "p":
            identifiers.append({"phone_number": rest})
        else:
            given, family, region, postal = rest.split(":", 3)
            identifiers.append(
                {
                    "address": {
                        "given_name": given,
                        "family_name": family,
                        "region_code": region,
                        "postal_code": postal,
                    }
                }
            )
    out: dict[str, Any] = {"user_identifiers": identifiers}
    if with_consent and member.consent != (None, None):
        out["consent"] = {
            k: v
            for k, v in zip(("ad_user_data", "ad_personalization"), member.consent, strict=True)
            if v is not None
        }
    return out


class GoogleAdsSender:
    """One Customer Match list through the Data Manager API.

    Requests are built as raw protobuf messages (the generated proto-plus
    wrappers cost several microseconds a field) and wrapped without a copy.
    The client's own retry is turned off: the sync worker owns retries, so
    that each one is recorded, honours the link's backoff and survives a
    restart; the timeout is ours too (the client's default waits 120 s).
    """

    def __init__(
        self, destination: Destination, secret: dict[str, Any] | None, settings: Settings
    ) -> None:
        self.destination = destination
        self.secret = secret
        self.timeout = float(settings.sync_timeout)
        self.endpoint = settings.datamanager_endpoint
        self._client: Any = None
        self._channel: Any = None

    def _credentials(self) -> Any:
        from google.oauth2 import credentials as oauth2
        from google.oauth2 import service_account

        secret = self.secret
        if secret is None:
            return None  # Application Default Credentials
        try:
            if secret.get("type") == "service_account":
                return service_account.Credentials.from_service_account_info(
                    secret["info"], scopes=[OAUTH_SCOPE]
                )
            return oauth2.Credentials(
                token=None,
                refresh_token=secret["refresh_token"],
                client_id=secret["client_id"],
                client_secret=secret["client_secret"],
                token_uri=OAUTH_TOKEN_URI,
                scopes=[OAUTH_SCOPE],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkBroken(f"invalid credentials: {scrub(str(exc), secret)}") from None

    def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        import grpc
        from google.ads import datamanager_v1
        from google.ads.datamanager_v1.services.ingestion_service.transports import (
            IngestionServiceGrpcTransport,
        )

        credentials = self._credentials()
        if self.endpoint:
            options = [
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ]
            self._channel = grpc.insecure_channel(check_endpoint(self.endpoint), options=options)
            transport = IngestionServiceGrpcTransport(channel=self._channel)
            self._client = datamanager_v1.IngestionServiceClient(transport=transport)
        else:
            self._client = datamanager_v1.IngestionServiceClient(credentials=credentials)
        return self._client

    def _destination_pb(self) -> Any:
        from google.ads.datamanager_v1.types import destination as d

        config = self.destination.config
        dest = d.Destination.pb()(product_destination_id=config["product_destination_id"])
        account_type = d.ProductAccount.AccountType.GOOGLE_ADS
        dest.operating_account.account_type = account_type
        dest.operating_account.account_id = config["operating_account_id"]
        if config.get("login_account_id"):
            dest.login_account.account_type = account_type
            dest.login_account.account_id = config["login_account_id"]
        return dest

    def build(self, operation: str, members: Sequence[OutMember]) -> Any:
        """The request for one batch, as a proto-plus message."""
        from google.ads.datamanager_v1.types import audience, consent, ingestion_service
        from google.ads.datamanager_v1.types import terms_of_service as tos
        from google.ads.datamanager_v1.types import user_data as ud

        member_pb = audience.AudienceMember.pb()
        identifier_pb = ud.UserIdentifier.pb()
        address_pb = ud.AddressInfo.pb()
        status = {
            GRANTED: consent.ConsentStatus.CONSENT_GRANTED,
            DENIED: consent.ConsentStatus.CONSENT_DENIED,
        }
        ingest = operation == INGEST
        built = []
        for m in members:
            ids = []
            for code in m.codes[:MAX_IDENTIFIERS_PER_MEMBER]:
                kind, _, rest = code.partition(":")
                if kind == "e":
                    ids.append(identifier_pb(email_address=rest))
                elif kind == "p":
                    ids.append(identifier_pb(phone_number=rest))
                else:
                    given, family, region, postal = rest.split(":", 3)
                    ids.append(
                        identifier_pb(
                            address=address_pb(
                                given_name=given,
                                family_name=family,
                                region_code=region,
                                postal_code=postal,
                            )
                        )
                    )
            member = member_pb()
            member.user_data.user_identifiers.extend(ids)
            if ingest and m.consent != (None, None):
                user_data, personalization = m.consent
                if user_data is not None:
                    member.consent.ad_user_data = status[user_data]
                if personalization is not None:
                    member.consent.ad_personalization = status[personalization]
            built.append(member)
        request_type = (
            ingestion_service.IngestAudienceMembersRequest
            if ingest
            else ingestion_service.RemoveAudienceMembersRequest
        )
        request = request_type.pb()(
            validate_only=self.destination.validate_only,
            encoding=ingestion_service.Encoding.HEX,
        )
        request.destinations.append(self._destination_pb())
        request.audience_members.extend(built)
        if ingest:
            default_user_data, default_personalization = self.destination.consent
            request.consent.ad_user_data = status[default_user_data]
            request.consent.ad_personalization = status[default_personalization]
            request.terms_of_service.customer_match_terms_of_service_status = (
                tos.TermsOfServiceStatus.ACCEPTED
            )
        return request_type.wrap(request)

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        if not self.destination.terms_accepted:
            raise LinkBroken(
                "the Customer Match terms of service are not accepted for this destination "
                "(segflow destinations update NAME --terms-accepted)"
            )
        client = self._get_client()
        request = self.build(operation, members)
        call = (
            client.ingest_audience_members
            if operation == INGEST
            else client.remove_audience_members
        )
        try:
            response = call(request=request, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise classify(exc, self.secret) from None
        return str(response.request_id)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._client = self._channel = None


def classify(exc: BaseException, secret: Any = None) -> Exception:
    """Map a client or auth failure to what the sync worker should do."""
    from google.api_core import exceptions as core
    from google.auth import exceptions as auth

    message = scrub(_describe(exc), secret)
    if isinstance(exc, auth.RefreshError | auth.DefaultCredentialsError):
        return LinkBroken(f"credentials rejected: {message}")
    if isinstance(exc, auth.TransportError):
        return TransientError(message)
    if isinstance(exc, core.InvalidArgument | core.BadRequest):
        return RequestRejected(message)
    if isinstance(
        exc,
        core.PermissionDenied
        | core.Forbidden
        | core.Unauthenticated
        | core.Unauthorized
        | core.NotFound
        | core.FailedPrecondition,
    ):
        return LinkBroken(message)
    if isinstance(exc, core.GoogleAPIError):
        return TransientError(message, _retry_delay(exc))
    # Anything else (a bug in a transport, a closed channel) is retried
    # rather than losing the batch; the log keeps the reason.
    return TransientError(message)


def _describe(exc: BaseException) -> str:
    from google.api_core import exceptions as core

    if isinstance(exc, core.GoogleAPIError) and hasattr(exc, "grpc_status_code"):
        code = getattr(exc, "grpc_status_code", None)
        name = code.name if code is not None else type(exc).__name__
        return f"{name}: {getattr(exc, 'message', str(exc))}"
    return f"{type(exc).__name__}: {exc}"


def _retry_delay(exc: Any) -> float | None:
    for detail in getattr(exc, "details", None) or []:
        delay = getattr(detail, "retry_delay", None)
        if delay is not None and hasattr(delay, "seconds"):
            return float(delay.seconds) + float(delay.nanos) / 1e9
    return None


def monotonic_ms(start: float) -> int:
    """Milliseconds since ``start``, a ``time.monotonic()`` reading."""
    return int((time.monotonic() - start) * 1000)
