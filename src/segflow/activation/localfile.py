"""The simplest destination: every batch appended to a local file as one JSON line.

A dry run a user can read, and the demo's destination. Members are written
in Google's form (its codes and consent), so a file shows what a Customer
Match list would receive. What every sender shares (the batch, the failure
kinds) is in :mod:`segflow.activation.transport`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segflow.activation import identifiers as ids
from segflow.activation.destinations import FILE, Destination
from segflow.activation.google.platform import GoogleEncoder
from segflow.activation.platform import Platform
from segflow.activation.transport import (
    INGEST,
    MAX_MEMBERS_PER_REQUEST,
    OutMember,
    Sender,
    TransientError,
)
from segflow.config import Settings


def _sender(
    destination: Destination,
    secret: dict[str, Any] | None,
    settings: Settings,
    connections: Any = None,
) -> Sender:
    return FileSender(destination)


PLATFORM = Platform(
    kind=FILE,
    name="the file",
    title="local file",
    normalisation_version=ids.NORMALISATION_VERSION,
    batch_size=MAX_MEMBERS_PER_REQUEST,
    requests_per_send=1,
    sends_consent=True,
    encoder=GoogleEncoder,
    sender=_sender,
)


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
