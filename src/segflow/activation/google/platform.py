"""Google Customer Match (Data Manager API) as a :class:`~segflow.activation.platform.Platform`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segflow.activation import identifiers as ids
from segflow.activation.destinations import GOOGLE_ADS, Destination
from segflow.activation.google.client import Connections
from segflow.activation.google.sender import GoogleAdsSender
from segflow.activation.platform import Platform
from segflow.activation.transport import MAX_MEMBERS_PER_REQUEST, Sender
from segflow.config import Settings


class GoogleEncoder:
    """Google's codes (:func:`segflow.activation.identifiers.encode`) for one dataset."""

    columns: Sequence[str] = ()

    def __init__(self, config: dict[str, Any], names: Sequence[str], mapping: ids.Mapping) -> None:
        self.mapping = mapping

    def codes(
        self, record: dict[str, str | None], key: str, skipped: ids.Skipped, capped: ids.Capped
    ) -> list[str]:
        return ids.encode(ids.identifiers_for(record, self.mapping, skipped, capped))


def _sender(
    destination: Destination,
    secret: dict[str, Any] | None,
    settings: Settings,
    connections: Connections | None = None,
) -> Sender:
    # With a pool, the sender uses (and leaves open) this destination's connection.
    connection = (
        connections.get(destination.id, secret, settings) if connections is not None else None
    )
    return GoogleAdsSender(destination, secret, settings, connection)


PLATFORM = Platform(
    kind=GOOGLE_ADS,
    name="Google",
    title="Google Customer Match",
    normalisation_version=ids.NORMALISATION_VERSION,
    batch_size=MAX_MEMBERS_PER_REQUEST,
    requests_per_send=1,
    sends_consent=True,
    encoder=GoogleEncoder,
    sender=_sender,
)
