"""What a platform is to segflow: one object the sync pass and the catalog talk to.

A :class:`Platform` bundles what differs between Google, Meta, TikTok and a
local file, and nothing else:

* **config**: its ``config`` module checks a destination's settings (the
  catalog, :mod:`.destinations`, names each kind's check); once they are
  checked, ``preparer`` asks the platform what only it can answer before the
  destination is stored (the account exists, its terms are accepted, a list
  named by the user is created);
* **normaliser**: an :class:`Encoder` per (destination, dataset) that turns a
  record's raw values into the identifier codes sent and stored in
  ``sf_link_members.sent``; the codes' form is the platform's own, read back
  only by its sender;
* **sender**: delivers a batch of codes (:mod:`.transport` says how sending
  fails);
* **fake**: each platform's local stand-in lives beside it
  (``segflow.activation.fake``, ``fake_meta``, ``fake_tiktok``).

The sync pass, the outbox and the engine know only this interface; a new
platform is one package of its own, one entry in :mod:`.platforms` and its
config check named in :mod:`.destinations`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from segflow.activation.identifiers import Capped, Mapping, Skipped
from segflow.activation.transport import Sender


class Encoder(Protocol):
    """One destination's normaliser for one dataset's records."""

    @property
    def columns(self) -> Sequence[str]:
        """Dataset columns read beyond the mapping's (Meta's city and state)."""
        ...

    def codes(
        self,
        record: dict[str, str | None],
        key: str,
        skipped: Skipped,
        capped: Capped,
    ) -> list[str]:
        """The record's identifier codes, in a stable order; [] when it names no one.

        ``record`` holds raw values by column name (the mapping's and
        :attr:`columns`), ``key`` the record's dataset key. Values present but
        unusable are counted in ``skipped`` by kind, identifiers left out for
        the platform's per-member limit in ``capped``.
        """
        ...


#: (destination config, its opened credentials) -> the config to store.
Prepare = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]


@dataclass(frozen=True)
class Platform:
    kind: str
    #: Who answers, in messages: "Google", "Meta".
    name: str
    #: What the pages and messages call it: "Google Customer Match".
    title: str
    #: Stored beside every code sent, so a change to the rules can re-send.
    normalisation_version: int
    #: The platform's limit of members in one request.
    batch_size: int
    #: HTTP requests one batch may take at most (TikTok: list, upload, create
    #: or update), each within the sync timeout: the lease covers them all.
    requests_per_send: int
    #: True when each request carries the members' consent (Google). Elsewhere
    #: a member whose record denies consent to ad use is never sent.
    sends_consent: bool
    #: (destination config, dataset columns by name, mapping) -> its Encoder.
    encoder: Callable[[dict[str, Any], Sequence[str], Mapping], Encoder]
    #: (destination, opened credentials, settings, pooled connections) -> Sender.
    sender: Callable[..., Sender]
    #: Builds the check run before a destination is stored, from the settings
    #: and what the user asked for (e.g. a new audience's name); None: none.
    preparer: Callable[..., Prepare] | None = None
