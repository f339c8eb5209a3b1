"""Meta Custom Audiences as a :class:`~segflow.activation.platform.Platform`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segflow.activation import tokens
from segflow.activation.identifiers import Capped, Mapping, Skipped
from segflow.activation.meta import audiences, normalise
from segflow.activation.meta.config import META, check_secret
from segflow.activation.meta.sender import MAX_ROWS, MetaSender
from segflow.activation.platform import Platform
from segflow.activation.transport import Sender
from segflow.config import Settings


class MetaEncoder:
    """Meta's codes for one dataset: its mapping, its city and state columns, its key."""

    def __init__(self, config: dict[str, Any], names: Sequence[str], mapping: Mapping) -> None:
        self.mapping = mapping
        self.places = normalise.detect_columns(names)
        self.columns = self.places.columns()
        self.extern_id = bool(config.get("send_extern_id", False))

    def codes(
        self, record: dict[str, str | None], key: str, skipped: Skipped, capped: Capped
    ) -> list[str]:
        return normalise.member_codes(
            record,
            self.mapping,
            columns=self.places,
            key=key if self.extern_id else None,
            skipped=skipped,
        )


def _sender(
    destination: Any, secret: dict[str, Any] | None, settings: Settings, connections: Any = None
) -> Sender:
    token = tokens.token_to_send(check_secret, secret)
    return MetaSender(destination.config, token, settings)


PLATFORM = Platform(
    kind=META,
    name="Meta",
    title="Meta Custom Audience",
    normalisation_version=normalise.NORMALISATION_VERSION,
    batch_size=MAX_ROWS,
    requests_per_send=2,
    sends_consent=False,
    encoder=MetaEncoder,
    sender=_sender,
    preparer=audiences.preparer,
)
