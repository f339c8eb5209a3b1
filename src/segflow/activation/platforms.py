"""Every platform segflow sends to, by destination kind, and the sender a destination needs.

Adding a platform is one entry here (and its config check in
:mod:`.destinations`); the sync pass asks only :func:`platform_for` and
:func:`build_sender`.
"""

from __future__ import annotations

from typing import Any

from segflow.activation import localfile
from segflow.activation.destinations import Destination
from segflow.activation.google import platform as google
from segflow.activation.google.client import Connections
from segflow.activation.meta import platform as meta
from segflow.activation.platform import Platform
from segflow.activation.tiktok import platform as tiktok
from segflow.activation.transport import Sender
from segflow.config import Settings
from segflow.errors import InvalidInput

PLATFORMS: dict[str, Platform] = {
    p.kind: p for p in (google.PLATFORM, meta.PLATFORM, tiktok.PLATFORM, localfile.PLATFORM)
}


def platform_for(kind: str) -> Platform:
    try:
        return PLATFORMS[kind]
    except KeyError:
        raise InvalidInput(f"unknown destination kind {kind!r}") from None


def build_sender(
    destination: Destination,
    secret: dict[str, Any] | None,
    settings: Settings,
    connections: Connections | None = None,
) -> Sender:
    """The sender for this destination's kind; ``secret`` is its opened credentials.

    With ``connections``, a Google sender uses (and leaves open) the pooled
    connection for this destination; without, it opens and closes its own.
    """
    return platform_for(destination.kind).sender(destination, secret, settings, connections)
