"""ASGI middleware refusing a request before any route reads it: an oversized body,
a NUL character in the address. (Who is asking is ``auth.Authenticate``.)"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segflow.web.errors import error_response


class UploadLimit:
    """Refuses request bodies over the limit with 413, before reading them whole.

    A declared Content-Length over the limit is refused at once; a body sent
    without one is counted as it arrives and cut off when it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        response = error_response(
            413,
            "too_large",
            f"the request body is larger than the limit of {self.limit:,} bytes "
            "(SEGFLOW_MAX_UPLOAD_BYTES)",
        )
        await response({"type": "http"}, _no_receive, send)


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


class _TooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
