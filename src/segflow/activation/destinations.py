"""Destinations: where a segment's members go, and how a batch is sent there.

Two kinds:

* ``google_ads``: a Customer Match user list, written through Google's Data
  Manager API (``IngestAudienceMembers`` / ``RemoveAudienceMembers``) with
  the official ``google-ads-datamanager`` client;
* ``file``: every batch that would be sent, appended as one JSON line to a
  local file. A dry run a user can read, and the demo's destination.

A destination's ``config`` is shown freely; its credentials (``secret``) are
stored apart and never leave this module except to build a client. Senders
turn the platform's failures into three kinds the sync worker acts on:
:class:`TransientError` (retry later), :class:`RequestRejected` (the request
is invalid; split it to find the bad members) and :class:`LinkBroken`
(credentials or permissions: pause the link until a person fixes it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.config import Settings
from segflow.db.engine import Database
from segflow.db.schema import destinations, link_members, links
from segflow.db.scope import owned, workspace_of
from segflow.errors import Conflict, InvalidInput, NotFound
from segflow.secrets import Cipher

GOOGLE_ADS = "google_ads"
FILE = "file"
KINDS = (GOOGLE_ADS, FILE)

INGEST = "ingest"
REMOVE = "remove"

GRANTED = "granted"
DENIED = "denied"

#: Google's limits per request.
MAX_MEMBERS_PER_REQUEST = 10_000
MAX_IDENTIFIERS_PER_MEMBER = 10

_ACCOUNT_ID = re.compile(r"^\d{1,20}$")
_NAME = re.compile(r"^[\w.@+ -]{1,100}$")


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
class Destination:
    id: int
    name: str
    kind: str
    config: dict[str, Any]
    has_credentials: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    def public(self) -> dict[str, Any]:
        """What may be shown anywhere: never the credentials themselves."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "config": dict(self.config),
            "has_credentials": self.has_credentials,
            "created_at": self.created_at.isoformat(),
        }

    @property
    def consent(self) -> tuple[str, str]:
        return (
            str(self.config.get("ad_user_data", GRANTED)),
            str(self.config.get("ad_personalization", GRANTED)),
        )

    @property
    def terms_accepted(self) -> bool:
        return bool(self.config.get("terms_accepted", False))

    @property
    def validate_only(self) -> bool:
        return bool(self.config.get("validate_only", False))


@dataclass(frozen=True)
class OutMember:
    """One audience member as it will be sent: identifier codes and consent."""

    rid: int
    codes: tuple[str, ...]
    #: (ad_user_data, ad_personalization) from the record, each None for
    #: "the destination's default".
    consent: tuple[str | None, str | None] = (None, None)


# ---------------------------------------------------------------- validation


def _consent_value(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in (GRANTED, DENIED):
        raise InvalidInput(f"{name} must be 'granted' or 'denied', got {value!r}")
    return text


def _account_id(name: str, value: Any) -> str:
    # Google Ads shows customer ids as 123-456-7890; the API wants digits.
    text = str(value).strip().replace("-", "")
    if not _ACCOUNT_ID.match(text):
        raise InvalidInput(f"{name} must be a numeric id such as 123-456-7890, got {value!r}")
    return text


def _google_ads_config(raw: dict[str, Any]) -> dict[str, Any]:
    known = {
        "operating_account_id",
        "login_account_id",
        "product_destination_id",
        "ad_user_data",
        "ad_personalization",
        "terms_accepted",
        "validate_only",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown google_ads setting(s): {', '.join(unknown)}")
    for required in ("operating_account_id", "product_destination_id"):
        if not raw.get(required):
            raise InvalidInput(f"a google_ads destination needs {required}")
    config: dict[str, Any] = {
        "operating_account_id": _account_id("operating_account_id", raw["operating_account_id"]),
        "product_destination_id": _account_id(
            "product_destination_id", raw["product_destination_id"]
        ),
        "ad_user_data": _consent_value("ad_user_data", raw.get("ad_user_data", GRANTED)),
        "ad_personalization": _consent_value(
            "ad_personalization", raw.get("ad_personalization", GRANTED)
        ),
        "terms_accepted": bool(raw.get("terms_accepted", False)),
        "validate_only": bool(raw.get("validate_only", False)),
    }
    if raw.get("login_account_id"):
        config["login_account_id"] = _account_id("login_account_id", raw["login_account_id"])
    return config


def _file_config(raw: dict[str, Any]) -> dict[str, Any]:
    known = {"path", "ad_user_data", "ad_personalization"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown file setting(s): {', '.join(unknown)}")
    given = raw.get("path")
    if isinstance(given, os.PathLike):
        given = os.fspath(given)
    if not given or not isinstance(given, str):
        raise InvalidInput("a file destination needs a path")
    if "\x00" in given:
        raise InvalidInput("the path contains a NUL character")
    path = Path(given).expanduser().resolve()
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot write {path}: directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise InvalidInput(f"cannot write {path}: it is not a regular file")
    return {
        "path": str(path),
        "ad_user_data": _consent_value("ad_user_data", raw.get("ad_user_data", GRANTED)),
        "ad_personalization": _consent_value(
            "ad_personalization", raw.get("ad_personalization", GRANTED)
        ),
        # A file records what would be sent; there are no terms to accept.
        "terms_accepted": True,
    }


def check_credentials(secret: dict[str, Any]) -> str:
    """Load credentials with google-auth; return a short description.

    Raises InvalidInput naming what is wrong, never echoing a secret value.
    """
    from google.oauth2 import credentials as oauth2
    from google.oauth2 import service_account

    kind = secret.get("type")
    if kind == "service_account":
        info = secret.get("info")
        if not isinstance(info, dict):
            raise InvalidInput("the service-account key must be a JSON object")
        try:
            sa_creds = service_account.Credentials.from_service_account_info(info, scopes=[_SCOPE])
        except (ValueError, KeyError) as exc:
            raise InvalidInput(
                f"the service-account key cannot be loaded: {_scrub(str(exc), secret)}"
            ) from None
        return f"service account {sa_creds.service_account_email}"
    if kind == "oauth":
        missing = [k for k in ("client_id", "client_secret", "refresh_token") if not secret.get(k)]
        if missing:
            raise InvalidInput(f"OAuth credentials need {', '.join(missing)}")
        oauth2.Credentials(
            token=None,
            refresh_token=secret["refresh_token"],
            client_id=secret["client_id"],
            client_secret=secret["client_secret"],
            token_uri=_TOKEN_URI,
            scopes=[_SCOPE],
        )
        return "OAuth refresh token"
    raise InvalidInput("credentials must be a service-account key or OAuth client and token")


_SCOPE = "https://www.googleapis.com/auth/datamanager"
_TOKEN_URI = "https://oauth2.googleapis.com/token"


def _secret_values(secret: Any) -> Iterable[str]:
    if isinstance(secret, dict):
        for value in secret.values():
            yield from _secret_values(value)
    elif isinstance(secret, list):
        for value in secret:
            yield from _secret_values(value)
    elif isinstance(secret, str) and len(secret) >= 6:
        yield secret


def _scrub(message: str, secret: Any) -> str:
    """Remove any credential value that an error message might have echoed."""
    for value in sorted(_secret_values(secret), key=len, reverse=True):
        message = message.replace(value, "[redacted]")
    return message


# ---------------------------------------------------------------- storage


def _from_row(row: sa.Row[Any]) -> Destination:
    return Destination(
        id=row.id,
        name=row.name,
        kind=row.kind,
        config=dict(row.config),
        has_credentials=row.secret is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def add_destination(
    db: Database,
    name: str,
    kind: str,
    config: dict[str, Any],
    now: dt.datetime,
    secret: dict[str, Any] | None = None,
    cipher: Cipher | None = None,
) -> Destination:
    """Store a destination; credentials (``secret``) are encrypted with ``cipher``."""
    if not _NAME.match(name):
        raise InvalidInput(
            f"destination name {name!r} must be 1-100 letters, digits, spaces or . @ + - _"
        )
    if kind == GOOGLE_ADS:
        clean = _google_ads_config(config)
        if secret is not None:
            clean["credentials"] = check_credentials(secret)
    elif kind == FILE:
        if secret is not None:
            raise InvalidInput("a file destination takes no credentials")
        clean = _file_config(config)
    else:
        raise InvalidInput(f"unknown destination kind {kind!r} (choose {' or '.join(KINDS)})")
    stored = None
    if secret is not None:
        if cipher is None:
            raise ValueError("credentials are only stored encrypted: pass a cipher")
        stored = cipher.encrypt(json.dumps(secret))
    with db.write() as conn:
        taken = conn.execute(
            sa.select(destinations.c.id).where(
                destinations.c.name == name, owned(conn, destinations)
            )
        ).first()
        if taken is not None:
            raise Conflict(f"a destination named {name!r} already exists")
        new_id = conn.execute(
            sa.insert(destinations)
            .values(
                workspace_id=workspace_of(conn),
                name=name,
                kind=kind,
                config=clean,
                secret=stored,
                created_at=now,
                updated_at=now,
            )
            .returning(destinations.c.id)
        ).scalar_one()
        row = conn.execute(sa.select(destinations).where(destinations.c.id == new_id)).one()
    return _from_row(row)


def update_destination(
    db: Database, name: str, changes: dict[str, Any], now: dt.datetime
) -> Destination:
    """Change settings of a destination (not its kind or credentials).

    Turning ``validate_only`` off makes every member of its link due again:
    nothing sent while validating was applied at Google.
    """
    with db.write() as conn:
        current = _load(conn, name)
        merged = {k: v for k, v in current.config.items() if k != "credentials"}
        merged.update(changes)
        clean = _google_ads_config(merged) if current.kind == GOOGLE_ADS else _file_config(merged)
        if "credentials" in current.config:
            clean["credentials"] = current.config["credentials"]
        conn.execute(
            sa.update(destinations)
            .where(destinations.c.id == current.id)
            .values(config=clean, updated_at=now)
        )
        if current.validate_only and not clean.get("validate_only", False):
            _resend_everything(conn, current.id)
        row = conn.execute(sa.select(destinations).where(destinations.c.id == current.id)).one()
    return _from_row(row)


def _resend_everything(conn: Connection, destination_id: int) -> None:
    link_ids = sa.select(links.c.id).where(links.c.destination_id == destination_id)
    conn.execute(
        sa.delete(link_members).where(
            link_members.c.link_id.in_(link_ids), link_members.c.want == 0
        )
    )
    conn.execute(
        sa.update(link_members)
        .where(link_members.c.link_id.in_(link_ids))
        .values(have=0, pending=1, sent=None, acked_at=None, rejected=None)
    )


def _load(conn: Connection, name: str) -> Destination:
    row = conn.execute(
        sa.select(destinations).where(destinations.c.name == name, owned(conn, destinations))
    ).first()
    if row is None:
        raise NotFound(f"no destination named {name!r}")
    return _from_row(row)


def get_destination(db: Database, name: str) -> Destination:
    with db.read() as conn:
        return _load(conn, name)


def list_destinations(db: Database) -> list[Destination]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(destinations).where(owned(conn, destinations)).order_by(destinations.c.name)
        ).all()
    return [_from_row(r) for r in rows]


def delete_destination(db: Database, name: str) -> Destination:
    with db.write() as conn:
        destination = _load(conn, name)
        linked = conn.execute(
            sa.select(links.c.id).where(links.c.destination_id == destination.id)
        ).first()
        if linked is not None:
            raise InvalidInput(
                f"destination {name!r} is linked to a segment; unlink it first (segflow unlink)"
            )
        conn.execute(sa.delete(destinations).where(destinations.c.id == destination.id))
    return destination


def stored_secret(conn: Connection, destination_id: int) -> str | None:
    """A destination's credentials as stored (encrypted); :func:`open_secret` reads them."""
    raw = conn.execute(
        sa.select(destinations.c.secret).where(destinations.c.id == destination_id)
    ).scalar()
    return str(raw) if raw else None


def open_secret(stored: str | None, cipher: Cipher) -> dict[str, Any] | None:
    if stored is None:
        return None
    data: dict[str, Any] = json.loads(cipher.decrypt(stored))
    return data


def rotate_key(db: Database, cipher: Cipher) -> tuple[int, Path | None, str]:
    """Re-encrypt every stored credential under a new key.

    Returns how many were re-encrypted, the key file now holding the new key
    (None when keys come from ``SEGFLOW_SECRET_KEY``), and the new key.
    """
    new_key = cipher.prepare_rotation()
    with db.write() as conn:
        rows = conn.execute(
            sa.select(destinations.c.id, destinations.c.secret).where(
                destinations.c.secret.is_not(None)
            )
        ).all()
        for row in rows:
            conn.execute(
                sa.update(destinations)
                .where(destinations.c.id == row.id)
                .values(secret=cipher.reencrypt(row.secret, new_key))
            )
    return len(rows), cipher.finish_rotation(new_key), new_key


# ---------------------------------------------------------------- senders


class Sender(Protocol):
    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        """Deliver one batch; return the platform's request id."""

    def close(self) -> None: ...


def build_sender(
    destination: Destination, secret: dict[str, Any] | None, settings: Settings
) -> Sender:
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


def check_endpoint(endpoint: str) -> str:
    """``SEGFLOW_DATAMANAGER_ENDPOINT`` must point at this machine."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(
            f"SEGFLOW_DATAMANAGER_ENDPOINT must be HOST:PORT on this machine, got {endpoint!r}"
        )
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise InvalidInput(
            "SEGFLOW_DATAMANAGER_ENDPOINT sends requests without TLS, so it may only name a "
            f"loopback address (127.0.0.1, [::1] or localhost), got {endpoint!r}"
        )
    return endpoint


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
                    secret["info"], scopes=[_SCOPE]
                )
            return oauth2.Credentials(
                token=None,
                refresh_token=secret["refresh_token"],
                client_id=secret["client_id"],
                client_secret=secret["client_secret"],
                token_uri=_TOKEN_URI,
                scopes=[_SCOPE],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LinkBroken(f"invalid credentials: {_scrub(str(exc), secret)}") from None

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

    message = _scrub(_describe(exc), secret)
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
    return int((time.monotonic() - start) * 1000)
