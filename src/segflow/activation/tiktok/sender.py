"""Sends batches to a TikTok customer-file audience: upload the hashes, then update.

One :meth:`TikTokSender.send` is TikTok's two steps: the batch's hashes of
the audience's one identifier kind (see :mod:`.config`) go up as a file,
one lower-hex SHA-256 a line and no header, through
``/dmp/custom_audience/file/upload/``; then ``/dmp/custom_audience/update/``
applies that file to the audience with ``APPEND`` (an ingest) or ``REMOVE``
(a remove). TikTok's update definition says ``APPEND`` adds only ids not
already in the audience and ``REMOVE`` removes only those in it, so sending
a batch again after a lost answer changes nothing more: a retry is safe.

Members without an identifier of the audience's kind are left out of the
file and counted in the receipt's warnings; a batch with none at all sends
nothing and answers a local receipt (``local-...``).

Limits: a file of at most :data:`MAX_HASHES_PER_FILE` hashes (65 bytes a
line, 32.5 MB, under the 50 MB per file TikTok's partners document) and
batches of at most :data:`MAX_MEMBERS_PER_REQUEST` members; TikTok
recommends fewer than 50 files per create or update request.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from segflow.activation.tiktok.client import APPEND, REMOVE, TikTokClient
from segflow.activation.tiktok.config import EMAIL, calculate_type
from segflow.activation.tiktok.normalise import EMAIL_CODE, PHONE_CODE
from segflow.activation.transport import INGEST, LinkBroken, OutMember, Receipt, RequestRejected
from segflow.activation.transport import REMOVE as TRANSPORT_REMOVE
from segflow.errors import InvalidInput

#: Members per :meth:`TikTokSender.send`. segflow sends each member's every
#: email (or phone): with up to 10 each, a full batch stays in one file.
MAX_MEMBERS_PER_REQUEST = 50_000
#: Hashes per uploaded file (65 bytes a line with its newline: 32.5 MB).
MAX_HASHES_PER_FILE = 500_000

_ACTIONS = {INGEST: APPEND, TRANSPORT_REMOVE: REMOVE}


def _prefix(config: dict[str, Any]) -> str:
    return EMAIL_CODE if config.get("id_type", EMAIL) == EMAIL else PHONE_CODE


def _hashes(members: Sequence[OutMember], prefix: str) -> tuple[list[str], int]:
    """The distinct hashes of one kind, in order, and how many members had none."""
    seen: dict[str, None] = {}
    without = 0
    for member in members:
        found = False
        for code in member.codes:
            if code.startswith(prefix):
                seen[code[len(prefix) :]] = None
                found = True
        without += not found
    return list(seen), without


def _files(hashes: Sequence[str]) -> list[bytes]:
    return [
        ("\n".join(hashes[i : i + MAX_HASHES_PER_FILE]) + "\n").encode("ascii")
        for i in range(0, len(hashes), MAX_HASHES_PER_FILE)
    ]


def _upload(client: TikTokClient, config: dict[str, Any], hashes: Sequence[str]) -> list[str]:
    kind = calculate_type(config)
    paths = []
    for content in _files(hashes):
        answer = client.upload_file(config["advertiser_id"], kind, content)
        paths.append(str(answer.data["file_path"]))
    return paths


def _kind_name(config: dict[str, Any]) -> str:
    return "email" if config.get("id_type", EMAIL) == EMAIL else "phone number"


#: Pages of 100 audiences looked through for one made by a lost answer: the
#: lease covers a batch's requests (the platform's ``requests_per_send``).
MAX_LIST_PAGES = 3


def find_audience(
    client: TikTokClient, advertiser_id: str, name: str, kind: str | None = None
) -> str | None:
    """The id of the advertiser's audience named ``name`` (of ``kind``), when one exists.

    A destination made with a name creates its audience with its first add;
    were that answer lost, the audience exists at TikTok with the name, and
    is found here instead of made twice. (Adding a destination refuses a
    name the advertiser already has, so one found later is the one made.)
    """
    page = 1
    while page <= MAX_LIST_PAGES:
        answer = client.list_audiences(advertiser_id, page=page)
        for audience in answer.get("list") or []:
            if not isinstance(audience, dict) or audience.get("name") != name:
                continue
            if kind is None or audience.get("calculate_type") in (None, kind):
                return str(audience["audience_id"])
        info = answer.get("page_info") or {}
        if page >= int(info.get("total_page") or 0):
            return None
        page += 1
    return None


class TikTokSender:
    """A :class:`~segflow.activation.transport.Sender` for one TikTok audience."""

    def __init__(
        self, config: dict[str, Any], access_token: str, base_url: str, *, timeout: float = 30
    ) -> None:
        if not config.get("advertiser_id") or not (
            config.get("audience_id") or config.get("audience_name")
        ):
            raise InvalidInput("a tiktok sender needs advertiser_id and an audience id or name")
        self.config = dict(config)
        self.client = TikTokClient(base_url, access_token, timeout=timeout)

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        try:
            return self._send(operation, members)
        except RequestRejected as exc:
            # The files hold only well-formed hashes, so a refusal is about the
            # audience (TikTok keeps none under 1,000 people), the account or
            # the settings: no member can be at fault, and splitting the batch
            # to find one would only spend requests.
            raise LinkBroken(f"{exc}; TikTok refused the request as a whole") from None

    def _send(self, operation: str, members: Sequence[OutMember]) -> str:
        action = _ACTIONS.get(operation)
        if action is None:
            raise ValueError(f"unknown operation {operation!r}")
        if len(members) > MAX_MEMBERS_PER_REQUEST:
            raise ValueError(
                f"{len(members)} members in one batch; TikTok batches hold "
                f"at most {MAX_MEMBERS_PER_REQUEST}"
            )
        hashes, without = _hashes(members, _prefix(self.config))
        warnings = []
        if without:
            warnings.append(
                f"{without} member(s) have no {_kind_name(self.config)} and were left out: "
                "this TikTok audience holds "
                f"{calculate_type(self.config)} ids only"
            )
        if not hashes:
            return Receipt(f"local-{uuid.uuid4().hex}", warnings)
        learnt: dict[str, str] = {}
        if not self.config.get("audience_id"):
            name = str(self.config["audience_name"])
            found = find_audience(
                self.client, str(self.config["advertiser_id"]), name, calculate_type(self.config)
            )
            if found is None and action == REMOVE:
                # No audience yet, so nobody to remove.
                return Receipt(f"local-{uuid.uuid4().hex}", warnings)
            if found is None:
                paths = _upload(self.client, self.config, hashes)
                made = self.client.create_audience(
                    self.config["advertiser_id"], name, calculate_type(self.config), paths
                )
                self.config["audience_id"] = str(made.data["custom_audience_id"])
                return Receipt(
                    made.request_id,
                    [*warnings, *made.warnings],
                    {"audience_id": self.config["audience_id"]},
                )
            self.config["audience_id"] = found
            learnt = {"audience_id": found}
        paths = _upload(self.client, self.config, hashes)
        answer = self.client.update_audience(
            self.config["advertiser_id"], str(self.config["audience_id"]), action, paths
        )
        return Receipt(answer.request_id, [*warnings, *answer.warnings], learnt)

    def close(self) -> None:
        self.client.close()


def create_audience(
    config: dict[str, Any],
    access_token: str,
    base_url: str,
    name: str,
    members: Sequence[OutMember] = (),
    *,
    timeout: float = 30,
) -> str:
    """Create a customer-file audience named ``name`` holding ``members``; its id.

    TikTok creates such an audience only from uploaded files
    (``file_paths`` is required by ``/dmp/custom_audience/create/``), so an
    audience cannot be made empty: ``members`` must hold at least one
    identifier of the config's kind.
    """
    hashes, _ = _hashes(members, _prefix(config))
    if not hashes:
        raise InvalidInput(
            "TikTok creates a customer-file audience only from uploaded ids: "
            f"give at least one member with a(n) {_kind_name(config)}"
        )
    with TikTokClient(base_url, access_token, timeout=timeout) as client:
        paths = _upload(client, config, hashes)
        answer = client.create_audience(
            config["advertiser_id"], name, calculate_type(config), paths
        )
    return str(answer.data["custom_audience_id"])
