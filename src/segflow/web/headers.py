"""The security headers every answer carries, and the middleware that adds them."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The pages run one script, ``/static/app.js``, and read their data from a
#: JSON block the browser never executes: no inline script or style, nothing
#: from another origin, and no page of another site may frame them.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # For browsers that predate frame-ancestors.
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Addresses name datasets and record keys: never tell another site.
    "Referrer-Policy": "same-origin",
}
#: Answers with a workspace's data are never kept by a browser or proxy cache.
NO_STORE = {"Cache-Control": "no-store"}


def headers_for(path: str) -> dict[str, str]:
    """The headers an answer to ``path`` carries (the static assets may be cached)."""
    return SECURITY_HEADERS if path.startswith("/static/") else SECURITY_HEADERS | NO_STORE


class SecurityHeaders:
    """Adds :func:`headers_for` to every answer, replacing a route's own values."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
