"""One connection to Google's Data Manager API: credentials, channel and service clients.

With ``SEGFLOW_DATAMANAGER_ENDPOINT`` set (a local fake), the clients talk
over a plain gRPC channel to that loopback address; otherwise the official
client builds its own TLS channel to Google with the destination's
credentials (or Application Default Credentials when it has none).
The client's own retry is never used: the sync pass owns retries.
"""

from __future__ import annotations

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
from segflow.activation.transport import LinkBroken
from segflow.config import Settings, check_endpoint
from segflow.errors import InvalidInput

#: A full 10,000-member request is several MB; gRPC's default limit is 4 MB.
_MESSAGE_LIMIT = 64 * 1024 * 1024


class GoogleConnection:
    """Credentials and a channel for one destination, with the clients built on them."""

    def __init__(self, secret: dict[str, Any] | None, settings: Settings) -> None:
        self.secret = secret
        self.endpoint = settings.datamanager_endpoint
        self._credentials: Any = None
        self._channel: grpc.Channel | None = None
        self._ingestion: Any = None
        self._user_lists: Any = None

    def credentials(self) -> Any:
        """google-auth credentials, or None for Application Default Credentials."""
        if self.secret is None:
            return None
        if self._credentials is None:
            try:
                self._credentials = credentials.load(self.secret)
            except InvalidInput as exc:
                raise LinkBroken(f"invalid credentials: {exc}") from None
        return self._credentials

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
        for client in (self._ingestion, self._user_lists):
            if client is not None and not self.endpoint:
                client.transport.close()
        if self._channel is not None:
            self._channel.close()
        self._channel = self._ingestion = self._user_lists = None
