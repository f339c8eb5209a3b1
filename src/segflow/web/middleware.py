"""ASGI middleware refusing a request before any route reads it: an oversized body,
a NUL character in the address, and in the local mode another web page's request.
(Who is asking is ``auth.Authenticate``; the headers every answer carries are
``headers.SecurityHeaders``.)"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segflow.web.errors import error_response

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The names a browser on this machine reaches a loopback server by.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class BodyLimit:
    """Refuses request bodies over their limit with 413, before reading them whole.

    A multipart upload to an upload route may be ``upload_limit`` bytes (it is
    spooled to disk); every other body, which the routes read into memory as
    JSON, ``json_limit``. A declared Content-Length over the limit is refused at
    once; a body sent without one is counted as it arrives and cut off when it
    passes the limit.
    """

    def __init__(
        self, app: ASGIApp, *, upload_limit: int, json_limit: int, upload_paths: re.Pattern[str]
    ) -> None:
        self.app = app
        self.upload_limit = upload_limit
        self.json_limit = json_limit
        self.upload_paths = upload_paths

    def _limit(self, scope: Scope, headers: Headers) -> tuple[int, str]:
        content_type = headers.get("content-type", "").lower()
        if content_type.startswith("multipart/form-data") and self.upload_paths.fullmatch(
            scope["path"]
        ):
            return self.upload_limit, "SEGFLOW_MAX_UPLOAD_BYTES"
        return self.json_limit, "SEGFLOW_MAX_JSON_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, setting = self._limit(scope, headers)
        message = (
            f"the request body is larger than the limit of {limit:,} bytes ({setting})"
            if setting == "SEGFLOW_MAX_UPLOAD_BYTES"
            else f"the request body is larger than the limit of {limit:,} bytes for a request "
            f"that is not a file upload ({setting})"
        )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, "too_large", message)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > limit:
                    # An HTTPException: FastAPI passes it through its body
                    # parsing (any other error there becomes a 400).
                    raise HTTPException(413, message)
            return received

        try:
            await self.app(scope, counted, send)
        except HTTPException as exc:
            # Raised where no handler answers it (outside a route's body parsing).
            if exc.status_code != 413:
                raise
            await error_response(413, "too_large", str(exc.detail))(scope, _no_receive, send)


def local_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` values a server bound to ``host:port`` answers in the local mode."""
    bound = f"[{host}]" if ":" in host else host
    names = {bound.lower(), *LOOPBACK_NAMES}
    hosts = {f"{name}:{port}" for name in names}
    if port in (80, 443):  # browsers leave the scheme's own port out
        hosts |= names
    return frozenset(hosts)


class LocalGuard:
    """The local mode's defence against other web pages the user opens.

    Nobody signs in there, so a browser's request carries no credential to
    tell the app's own pages from another site's. Two things are refused:

    - any request whose ``Host`` is not one of ``hosts`` (421): a page of
      ``rebind.example`` whose name was re-pointed at 127.0.0.1 (DNS
      rebinding) reaches the server as the same origin, but names its host;
    - a request that changes something (not GET, HEAD, OPTIONS) that a
      browser says comes from another origin (403): its ``Origin`` differs
      from ``Host`` (or is ``null``), ``Sec-Fetch-Site`` is ``cross-site`` or
      ``same-site`` (another port of localhost is the same site), or, with
      neither, its ``Referer`` names another origin. The pages' own requests
      are same-origin; the CLI and curl send none of these headers.

    ``hosts`` None checks no ``Host``: an app not served on a socket of its own
    (an in-process test client) does not know the name it is reached by.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            await error_response(
                421,
                "wrong_host",
                f"this server answers only requests addressed to {allowed}, not {host!r} "
                "(a page of another name pointed at this machine is refused)",
            )(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS and not _same_origin(headers, host):
            await error_response(
                403,
                "cross_origin",
                "a request from another web site cannot change anything here: this server "
                "runs without sign-in (local mode) and accepts changes only from its own pages, "
                "the CLI and other programs",
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _same_origin(headers: Headers, host: str) -> bool:
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is not None:
        return origin != "null" and _netloc(origin) == host
    referer = headers.get("referer")
    return not referer or _netloc(referer) == host


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:  # a malformed URL names no origin of ours
        return ""


class RefuseNul:
    """Refuses NUL characters in the path or query: no stored value can hold one,
    and PostgreSQL refuses them in text parameters."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"").lower()
        ):
            response = error_response(
                400, "invalid_input", "the address contains a NUL character, which segflow refuses"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
