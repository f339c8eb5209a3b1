"""Which sender a destination needs, and the simplest one: a file of JSON lines.

:func:`build_sender` picks the sender for a destination's kind:
:class:`FileSender` appends each batch to a local file (a dry run a user can
read), :class:`~segflow.activation.google.sender.GoogleAdsSender` calls
Google's Data Manager API. What every sender shares (the batch, the failure
kinds) is in :mod:`segflow.activation.transport`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segflow.activation.destinations import FILE, Destination
from segflow.activation.google.client import Connections
from segflow.activation.google.sender import GoogleAdsSender
from segflow.activation.transport import INGEST, OutMember, Sender, TransientError
from segflow.config import Settings


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
    if destination.kind == FILE:
        return FileSender(destination)
    connection = (
        connections.get(destination.id, secret, settings) if connections is not None else None
    )
    return GoogleAdsSender(destination, secret, settings, connection)


class FileSender:
    """Appends each batch as one JSON line; the request id is a fresh UUID."""

    def __init__(self, destination: Destination) -> None:
        self.destination = destination
        self.path = Path(destination.config["path"])

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        request_id = uuid.uuid4().hex
        line: dict[str, Any] = {
            "request_id": request_id,
            "destination": self.destination.name,
            "operation": operation,
            "encoding": "HEX",
        }
        default_user_data, default_personalization = self.destination.consent
        if operation == INGEST:
            line["consent"] = {
                "ad_user_data": default_user_data,
                "ad_personalization": default_personalization,
            }
            line["terms_of_service"] = "accepted"
        line["members"] = [_member_json(m, operation == INGEST) for m in members]
        data = json.dumps(line, separators=(",", ":")) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise TransientError(f"cannot append to {self.path}: {exc.strerror}") from None
        return request_id

    def close(self) -> None:
        pass


def _member_json(member: OutMember, with_consent: bool) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = []
    for code in member.codes:
        kind, _, rest = code.partition(":")
        if kind == "e":
            identifiers.append({"email_address": rest})
        elif kind == "p":
            identifiers.append({"phone_number": rest})
        else:
            given, family, region, postal = rest.split(":", 3)
            identifiers.append(
                {
                    "address": {
                        "given_name": given,
                        "family_name": family,
                        "region_code": region,
                        "postal_code": postal,
                    }
                }
            )
    out: dict[str, Any] = {"user_identifiers": identifiers}
    if with_consent and member.consent != (None, None):
        out["consent"] = {
            k: v
            for k, v in zip(("ad_user_data", "ad_personalization"), member.consent, strict=True)
            if v is not None
        }
    return out
