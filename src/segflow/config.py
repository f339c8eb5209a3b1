"""Settings read from the environment, in one place.

Nothing else in segflow reads ``os.environ``: the CLI and the server build a
:class:`Settings` once and pass the values down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from segflow import coltypes
from segflow.errors import InvalidInput
from segflow.secrets import Cipher

DEFAULT_DATABASE_URL = "sqlite:///segflow.db"
#: Where Google's OAuth tokens are refreshed.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    #: Largest single CSV field accepted, in characters.
    max_field_chars: int = 1_048_576
    #: How many rejected rows an import keeps in detail (all are counted).
    max_reject_details: int = 100_000
    #: Percent of a dataset's records (or of a linked destination's members)
    #: above which a replace import's deletes must be confirmed.
    replace_delete_limit: int = 20
    #: Cells that mean "no value" (``coltypes.EMPTY_LIKE``); None: the built-in
    #: ones. One list for every process of a deployment (see the README).
    empty_like: tuple[str, ...] | None = None
    #: Seconds between the worker's safety-net ticks.
    tick_seconds: int = 60
    #: ``HOST:PORT`` of a local Data Manager API double (loopback only,
    #: plain gRPC); empty means Google's real endpoint over TLS.
    datamanager_endpoint: str = ""
    #: ``http://127.0.0.1:PORT/...`` of a local OAuth token server (a fake's)
    #: that replaces Google's for OAuth credentials; empty: Google's.
    oauth_token_uri: str = ""
    #: ``http://127.0.0.1:PORT`` of a local Graph API double (a fake's) that
    #: replaces Meta's ``https://graph.facebook.com``; empty: Meta's.
    meta_graph_url: str = ""
    #: ``http://127.0.0.1:PORT`` of a local TikTok Business API double that
    #: replaces ``https://business-api.tiktok.com``; empty: TikTok's.
    tiktok_endpoint: str = ""
    #: Whether adding a destination with credentials refreshes them once to
    #: check them. Off for Settings built in code (tests, embedding: nothing
    #: reaches Google unasked); the CLI and the server read
    #: SEGFLOW_CHECK_CREDENTIALS, on unless set to off.
    check_credentials: bool = False
    #: Requests a minute segflow sends to Google per Cloud project, across
    #: all links and workers (Google's limit is 300).
    google_requests_per_minute: int = 300
    #: Seconds one request to a destination may take before it is retried.
    sync_timeout: int = 60
    #: Members acknowledged this many days ago are sent again, so that they
    #: never reach Customer Match's 540-day membership limit.
    resend_days: int = 500
    #: Members per request (Google accepts at most 10,000).
    sync_batch: int = 10_000
    #: Key(s) that encrypt stored credentials; empty: read ``secret_key_file``.
    secret_key: str = ""
    secret_key_file: str = "segflow.key"
    #: Largest request body (CSV upload) the web app accepts.
    max_upload_bytes: int = 2 * 1024**3
    #: Largest body of any other request (JSON): a rule, a sign-in, a destination.
    max_json_bytes: int = 1024**2
    #: Event streams one principal (a user; the local mode's one user) may hold open.
    max_streams: int = 20
    #: Seconds a sync worker owns a list before another may take it over
    #: (0: twice the timeout plus 30 s). Must outlast one batch.
    sync_lease: int = 0
    #: Team mode: people sign in, every object belongs to a workspace.
    auth: bool = False
    #: Session cookies only over HTTPS (turn off only behind plain-HTTP tests).
    cookie_secure: bool = True
    #: Hours a sign-in lasts.
    session_hours: int = 12
    #: The workspace the CLI works in when it works on the database directly.
    workspace: str = "default"
    #: A segflow server the CLI works through instead of the database, and
    #: the API token it sends there.
    server: str = ""
    token: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("SEGFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL,
            max_field_chars=_int(env, "SEGFLOW_MAX_FIELD_CHARS", cls.max_field_chars),
            max_reject_details=_int(env, "SEGFLOW_MAX_REJECT_DETAILS", cls.max_reject_details),
            replace_delete_limit=_percent(
                env, "SEGFLOW_REPLACE_DELETE_LIMIT", cls.replace_delete_limit
            ),
            empty_like=_words(env.get("SEGFLOW_EMPTY_LIKE") or ""),
            tick_seconds=_int(env, "SEGFLOW_TICK_SECONDS", cls.tick_seconds),
            datamanager_endpoint=_endpoint(env.get("SEGFLOW_DATAMANAGER_ENDPOINT") or ""),
            oauth_token_uri=_token_uri(env.get("SEGFLOW_OAUTH_TOKEN_URI") or ""),
            meta_graph_url=_local_url("SEGFLOW_META_GRAPH_URL", env.get("SEGFLOW_META_GRAPH_URL")),
            tiktok_endpoint=_local_url(
                "SEGFLOW_TIKTOK_ENDPOINT", env.get("SEGFLOW_TIKTOK_ENDPOINT")
            ),
            check_credentials=_switch(env, "SEGFLOW_CHECK_CREDENTIALS", True),
            google_requests_per_minute=_int(
                env, "SEGFLOW_GOOGLE_REQUESTS_PER_MINUTE", cls.google_requests_per_minute
            ),
            sync_timeout=_int(env, "SEGFLOW_SYNC_TIMEOUT", cls.sync_timeout),
            resend_days=_int(env, "SEGFLOW_RESEND_DAYS", cls.resend_days),
            sync_batch=min(_int(env, "SEGFLOW_SYNC_BATCH", cls.sync_batch), 10_000),
            secret_key=env.get("SEGFLOW_SECRET_KEY") or "",
            secret_key_file=env.get("SEGFLOW_SECRET_KEY_FILE") or cls.secret_key_file,
            max_upload_bytes=_int(env, "SEGFLOW_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_json_bytes=_int(env, "SEGFLOW_MAX_JSON_BYTES", cls.max_json_bytes),
            max_streams=_int(env, "SEGFLOW_MAX_STREAMS", cls.max_streams),
            sync_lease=_int(env, "SEGFLOW_SYNC_LEASE", 0) if env.get("SEGFLOW_SYNC_LEASE") else 0,
            auth=_switch(env, "SEGFLOW_AUTH", cls.auth),
            cookie_secure=_switch(env, "SEGFLOW_COOKIE_SECURE", cls.cookie_secure),
            session_hours=_int(env, "SEGFLOW_SESSION_HOURS", cls.session_hours),
            workspace=env.get("SEGFLOW_WORKSPACE") or cls.workspace,
            server=env.get("SEGFLOW_SERVER") or "",
            token=env.get("SEGFLOW_TOKEN") or "",
        )

    @property
    def cipher(self) -> Cipher:
        return Cipher.from_values(self.secret_key, self.secret_key_file)

    @property
    def token_uri(self) -> str | None:
        """Where OAuth tokens are refreshed; None when no token may be fetched.

        With a local Data Manager endpoint (a test, a trial) tokens come only
        from a local token server: a real one must not be fetched from Google
        to be sent in clear text to a double.
        """
        if self.datamanager_endpoint:
            return check_token_uri(self.oauth_token_uri) if self.oauth_token_uri else None
        # Talking to Google: a real refresh token goes to Google's token
        # server only, never in clear text to a local one.
        return GOOGLE_TOKEN_URI

    @property
    def lease_seconds(self) -> int:
        """How long a sync worker owns a list before another may take over."""
        return self.sync_lease or self.sync_timeout * 2 + 30


def _words(raw: str) -> tuple[str, ...] | None:
    """SEGFLOW_EMPTY_LIKE: comma-separated words, each checked; unset or blank: None."""
    if not raw.strip():
        return None
    return tuple(sorted(coltypes.empty_like_words(raw.split(","))))


def _endpoint(raw: str) -> str:
    if not raw:
        return ""
    return check_endpoint(raw.strip())


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


def _local_url(name: str, raw: str | None) -> str:
    if not raw or not raw.strip():
        return ""
    return check_local_url(name, raw.strip())


def check_local_url(name: str, url: str) -> str:
    """A platform's stand-in: plain HTTP, so only on this machine, with a port and no path."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if (
        parts.scheme != "http"
        or parts.hostname not in _LOOPBACK
        or port is None
        or parts.path not in ("", "/")
    ):
        raise InvalidInput(
            f"{name} replaces the platform's API for tests and trials, so it may only be an "
            f"http:// URL on a loopback address with a port (http://127.0.0.1:PORT), got {url!r}"
        )
    return url.rstrip("/")


def _token_uri(raw: str) -> str:
    if not raw:
        return ""
    return check_token_uri(raw.strip())


def check_token_uri(uri: str) -> str:
    """``SEGFLOW_OAUTH_TOKEN_URI`` must be a plain-HTTP URL on this machine."""
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK or port is None:
        raise InvalidInput(
            "SEGFLOW_OAUTH_TOKEN_URI replaces Google's token server for tests and trials, so it "
            "may only be an http:// URL on a loopback address with a port "
            f"(http://127.0.0.1:PORT/token), got {uri!r}"
        )
    return uri


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise InvalidInput(f"{name} must be on or off, got {raw!r}")


def _percent(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole percent from 0 to 100 (0 is meaningful here, unlike for ``_int``)."""
    raw = (env.get(name) or "").strip().rstrip("%")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole percent from 0 to 100, got {raw!r}") from None
    if not 0 <= value <= 100:
        raise InvalidInput(f"{name} must be a whole percent from 0 to 100, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise InvalidInput(f"{name} must be positive, got {value}")
    return value
