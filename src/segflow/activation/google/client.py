"""Connections to Google's Data Manager API: credentials, tokens, channel and service clients.

With ``SEGFLOW_DATAMANAGER_ENDPOINT`` set (a local fake), the clients talk
over a plain gRPC channel to that loopback address, and each call carries
``authorization: Bearer <token>`` when the destination has OAuth credentials
and a local token server is set (``SEGFLOW_OAUTH_TOKEN_URI``); a real token
is never fetched to be sent to a double. Otherwise the official client
builds its own TLS channel to Google with the destination's credentials (or
Application Default Credentials when it has none).

Credentials are refreshed before a call, with google-auth's ``Request``, only
when their token has expired (``credentials.valid``): a failed refresh is
classified here (revoked: the link pauses; the token server down: retried)
instead of reaching segflow as gRPC's ``UNAVAILABLE`` from inside the call.

:class:`Connections` keeps one :class:`GoogleConnection` per destination
and credentials for as long as its owner (a worker, a sync pass) runs, so
channels and tokens are reused across link runs; its owner closes it.
The client's own retry is never used: the sync pass owns retries.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import grpc
from google.ads import datamanager_v1
from google.ads.datamanager_v1.services.ingestion_service.transports import (
    IngestionServiceGrpcTransport,
)
from google.ads.datamanager_v1.services.user_list_service.transports import (
    UserListServiceGrpcTransport,
)

from segflow.activation import credentials
from segflow.activation.google.errors import classify
from segflow.activation.transport import LinkBroken
from segflow.config import GOOGLE_TOKEN_URI, Settings, check_endpoint
from segflow.errors import InvalidInput

#: A full 10,000-member request is several MB; gRPC's default limit is 4 MB.
_MESSAGE_LIMIT = 64 * 1024 * 1024


class GoogleConnection:
    """Credentials and a channel for one destination, with the clients built on them."""

    def __init__(self, secret: dict[str, Any] | None, settings: Settings) -> None:
        self.secret = secret
        self.endpoint = settings.datamanager_endpoint
        self.token_uri = settings.token_uri
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._auth_request: credentials.TokenRequest | None = None
        self.timeout = float(settings.sync_timeout)
        self._channel: grpc.Channel | None = None
        self._ingestion: Any = None
        self._user_lists: Any = None
        #: Token refreshes done (a token is reused until it expires).
        self.refreshes = 0

    def credentials(self) -> Any:
        """google-auth credentials, or None for Application Default Credentials."""
        if self.secret is None:
            return None
        if self._credentials is None:
            try:
                self._credentials = credentials.load(
                    self.secret, self.token_uri or GOOGLE_TOKEN_URI
                )
            except InvalidInput as exc:
                raise LinkBroken(f"invalid credentials: {exc}") from None
        return self._credentials

    def _fetches_tokens(self) -> bool:
        if self.secret is None:
            return False
        if not self.endpoint:
            return True
        # A local double: only OAuth, only from a local token server (a
        # service-account key names Google's token server itself).
        return self.token_uri is not None and self.secret.get("type") == "oauth"

    def authorize(self) -> Sequence[tuple[str, str]]:
        """Refresh an expired token before a call; the metadata the call must carry.

        Raises the classified refresh failure (LinkBroken or TransientError).
        """
        if not self._fetches_tokens():
            return ()
        with self._lock:
            loaded = self.credentials()
            if not loaded.valid:
                if self._auth_request is None:
                    self._auth_request = credentials.TokenRequest(self.timeout)
                try:
                    loaded.refresh(self._auth_request)
                except Exception as exc:
                    raise classify(exc, self.secret) from None
                self.refreshes += 1
            token = loaded.token
        if self.endpoint:
            return (("authorization", f"Bearer {token}"),)
        # Google's client sends the token itself, from the same credentials.
        return ()

    def forget_token(self) -> None:
        """Google refused the access token: fetch a new one before the next call."""
        with self._lock:
            if self._credentials is not None:
                self._credentials.token = None

    def _local_channel(self) -> grpc.Channel:
        if self._channel is None:
            options = [
                ("grpc.max_send_message_length", _MESSAGE_LIMIT),
                ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
            ]
            self._channel = grpc.insecure_channel(check_endpoint(self.endpoint), options=options)
        return self._channel

    def ingestion(self) -> Any:
        """The ``IngestionServiceClient``."""
        with self._lock:
            if self._ingestion is None:
                if self.endpoint:
                    transport = IngestionServiceGrpcTransport(channel=self._local_channel())
                    self._ingestion = datamanager_v1.IngestionServiceClient(transport=transport)
                else:
                    self._ingestion = datamanager_v1.IngestionServiceClient(
                        credentials=self.credentials()
                    )
            return self._ingestion

    def user_lists(self) -> Any:
        """The ``UserListServiceClient``."""
        with self._lock:
            if self._user_lists is None:
                if self.endpoint:
                    transport = UserListServiceGrpcTransport(channel=self._local_channel())
                    self._user_lists = datamanager_v1.UserListServiceClient(transport=transport)
                else:
                    self._user_lists = datamanager_v1.UserListServiceClient(
                        credentials=self.credentials()
                    )
            return self._user_lists

    def close(self) -> None:
        with self._lock:
            for client in (self._ingestion, self._user_lists):
                if client is not None and not self.endpoint:
                    client.transport.close()
            if self._channel is not None:
                self._channel.close()
            if self._auth_request is not None:
                self._auth_request.session.close()
            self._channel = self._ingestion = self._user_lists = None
            self._auth_request = None


class Connections:
    """One process's open connections: one per destination and credentials.

    A destination whose credentials changed gets a new connection (the
    fingerprint is part of the key) and its old one is closed. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[int, str, str, str | None], GoogleConnection] = {}

    def get(
        self, destination_id: int, secret: dict[str, Any] | None, settings: Settings
    ) -> GoogleConnection:
        key = (
            destination_id,
            credentials.fingerprint(secret),
            settings.datamanager_endpoint,
            settings.token_uri,
        )
        stale: list[GoogleConnection] = []
        with self._lock:
            found = self._open.get(key)
            if found is None:
                for other in [k for k in self._open if k[0] == destination_id]:
                    stale.append(self._open.pop(other))
                found = self._open[key] = GoogleConnection(secret, settings)
        for old in stale:
            old.close()
        return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        with self._lock:
            closing = list(self._open.values())
            self._open.clear()
        for connection in closing:
            connection.close()
