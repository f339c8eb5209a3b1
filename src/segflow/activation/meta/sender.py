"""Sending batches to a Meta Custom Audience: its ``users`` edge, adds and removes.

Each batch is one request with the multi-key schema its members fill
(:func:`~.normalise.request_rows`), in one upload session per sender and
operation (``session_id`` random, ``batch_seq`` counting from 1;
``last_batch_flag`` on the first batch shorter than a full one, the last
a pass has). Limited Data Use destinations send
``data_processing_options: ["LDU"]`` with country and state 0, so that Meta
geolocates each person.

Before the first add, the ad account's Custom Audience terms are checked
(``tos_accepted.custom_audience_tos``): Meta refuses customer lists from an
account that has not accepted them, and the link pauses with how to accept
them. Meta's answer to an accepted batch (``num_received``,
``num_invalid_entries`` and the kinds of ``invalid_entry_samples``) becomes
the receipt's warnings, shown on the link.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from segflow.activation.meta import client
from segflow.activation.meta.normalise import request_rows
from segflow.activation.transport import INGEST, LinkBroken, OutMember, Receipt, RequestRejected
from segflow.config import Settings

#: Meta takes at most this many rows in one request to the users edge.
MAX_ROWS = 10_000


def terms_url(account_id: str) -> str:
    return f"https://business.facebook.com/ads/manage/customaudiences/tos/?act={account_id}"


def terms_accepted(api: Any, account_id: str) -> bool:
    account = client.call(api, "GET", (f"act_{account_id}",), {"fields": "tos_accepted"})
    accepted = account.get("tos_accepted")
    return isinstance(accepted, dict) and accepted.get("custom_audience_tos") == 1


class MetaSender:
    def __init__(
        self, config: dict[str, Any], token: str, settings: Settings, api: Any = None
    ) -> None:
        self.account_id = str(config["ad_account_id"])
        self.audience_id = str(config["audience_id"])
        self.limited_data_use = bool(config.get("limited_data_use", False))
        self.batch_size = min(settings.sync_batch, MAX_ROWS)
        self.api = api if api is not None else client.connect(token, settings)
        self._terms_checked = False
        #: Destination settings this sender learnt (the terms accepted since).
        self.learnt: dict[str, Any] = {}
        self._terms_were = bool(config.get("terms_accepted", False))

    def _check_terms(self) -> None:
        if self._terms_checked:
            return
        if not terms_accepted(self.api, self.account_id):
            raise LinkBroken(
                f"Meta: ad account act_{self.account_id} has not accepted the Custom Audience "
                f"terms, and Meta takes no customer list until it has: accept them at "
                f"{terms_url(self.account_id)}, then resume the link"
            )
        self._terms_checked = True
        if not self._terms_were:
            self.learnt["terms_accepted"] = True

    @staticmethod
    def _session() -> dict[str, Any]:
        # Each request is a session of one batch. A pass cannot know which of
        # its batches is the last (more members may become due while it runs),
        # and Meta refuses any batch after one flagged last: a session spanning
        # batches would turn every short batch (a retried rest, a probe, a
        # replaced set) into a refusal of the next.
        return {"session_id": secrets.randbits(62) + 1, "batch_seq": 1, "last_batch_flag": True}

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        if not members:
            raise RequestRejected("an empty batch")
        if len(members) > MAX_ROWS:
            raise RequestRejected(f"Meta takes at most {MAX_ROWS:,} rows a request")
        if operation == INGEST:
            self._check_terms()
        schema, rows = request_rows([m.codes for m in members])
        payload: dict[str, Any] = {"schema": schema, "data": rows}
        if self.limited_data_use:
            payload["data_processing_options"] = ["LDU"]
            payload["data_processing_options_country"] = 0
            payload["data_processing_options_state"] = 0
        session = self._session()
        method = "POST" if operation == INGEST else "DELETE"
        answer = client.call(
            self.api, method, (self.audience_id, "users"), {"payload": payload, "session": session}
        )
        received = answer.get("num_received")
        counted = f": received {received:,}" if isinstance(received, int) else ""
        learnt, self.learnt = self.learnt, {}
        return Receipt(
            f"session {session['session_id']}{counted}", answer_warnings(answer, len(rows)), learnt
        )

    def close(self) -> None:
        self.api._session.requests.close()


def answer_warnings(answer: dict[str, Any], sent: int) -> list[str]:
    """What Meta said it could not use, in words (no hashes: samples are counted by kind)."""
    invalid = answer.get("num_invalid_entries")
    if not isinstance(invalid, int) or invalid <= 0:
        received = answer.get("num_received")
        if isinstance(received, int) and received < sent:
            return [f"Meta received {received:,} of the {sent:,} rows sent"]
        return []
    out = [f"Meta could not use {invalid:,} of {sent:,} rows"]
    samples = answer.get("invalid_entry_samples")
    if isinstance(samples, dict) and samples:
        reasons = sorted({str(v) for v in samples.values() if isinstance(v, str)})
        if reasons:
            out.append("Meta's reasons: " + "; ".join(reasons[:5]))
    return out
