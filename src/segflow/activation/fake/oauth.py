"""The fake's OAuth 2.0 token endpoint, answering as ``oauth2.googleapis.com/token`` does.

An HTTP server on 127.0.0.1 (stdlib, in a thread) that takes the
``refresh_token`` grant google-auth sends and answers with JSON:
``{"access_token", "expires_in", "scope", "token_type"}``, or Google's
errors: an unknown or revoked refresh token is HTTP 400
``{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}``,
a wrong client HTTP 401 ``invalid_client``. Revoking a refresh token also
ends the access tokens it issued, as Google's revocation does.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

SCOPE = "https://www.googleapis.com/auth/datamanager"


@dataclass
class _Client:
    client_id: str
    client_secret: str
    refresh_token: str
    revoked: bool = False
    access_tokens: set[str] = field(default_factory=set)


class TokenServer:
    """Issues access tokens for registered clients; :meth:`check` validates one."""

    def __init__(self, clock: Callable[[], float], lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._clients: dict[str, _Client] = {}  # by refresh token
        self._tokens: dict[str, tuple[_Client, float]] = {}  # access token -> (client, expiry)
        self._server: ThreadingHTTPServer | None = None
        #: Refresh attempts answered, as (refresh token, HTTP status).
        self.refreshes: list[tuple[str, int]] = []

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("utf-8"))
                status, body = owner.grant({k: v[0] for k, v in form.items()})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # tokens must not reach a log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def uri(self) -> str:
        assert self._server is not None, "the token server is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    def register(self) -> tuple[str, str, str]:
        client = _Client(
            client_id=f"{secrets.token_hex(6)}.apps.googleusercontent.com",
            client_secret=f"GOCSPX-{secrets.token_urlsafe(18)}",
            refresh_token=f"1//{secrets.token_urlsafe(32)}",
        )
        with self._lock:
            self._clients[client.refresh_token] = client
        return client.client_id, client.client_secret, client.refresh_token

    def revoke(self, refresh_token: str) -> None:
        with self._lock:
            client = self._clients.get(refresh_token)
            if client is None:
                raise KeyError("unknown refresh token")
            client.revoked = True
            for token in client.access_tokens:
                self._tokens.pop(token, None)

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        """The token endpoint's answer to one POST: (HTTP status, JSON body)."""
        refresh_token = form.get("refresh_token", "")
        status, body = self._grant(form, refresh_token)
        with self._lock:
            self.refreshes.append((refresh_token, status))
        return status, body

    def _grant(self, form: dict[str, str], refresh_token: str) -> tuple[int, dict[str, object]]:
        if form.get("grant_type") != "refresh_token":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type: " + form.get("grant_type", ""),
            }
        with self._lock:
            client = self._clients.get(refresh_token)
            if client is not None and form.get("client_id") != client.client_id:
                return 401, {
                    "error": "invalid_client",
                    "error_description": "The OAuth client was not found.",
                }
            if client is not None and form.get("client_secret") != client.client_secret:
                return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
            if client is None or client.revoked:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            token = f"ya29.fake-{secrets.token_urlsafe(24)}"
            client.access_tokens.add(token)
            self._tokens[token] = (client, self.clock() + self.lifetime)
        return 200, {
            "access_token": token,
            "expires_in": int(self.lifetime) - 1,
            "scope": form.get("scope", SCOPE),
            "token_type": "Bearer",
        }

    def check(self, authorization: str | None) -> str | None:
        """None if the ``authorization`` header carries a valid token, else Google's reason."""
        if not authorization:
            return "CREDENTIALS_MISSING"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "ACCESS_TOKEN_TYPE_UNSUPPORTED"
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            # Never issued, or ended by a revocation.
            return "ACCESS_TOKEN_EXPIRED"
        if self.clock() >= issued[1]:
            return "ACCESS_TOKEN_EXPIRED"
        return None
