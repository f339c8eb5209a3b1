"""TikTok customer-file audiences as a :class:`~segflow.activation.platform.Platform`.

Before a destination is stored its token and advertiser are tried by
reading the audience named by ``audience_id`` (or, for ``audience_name``,
the advertiser's audiences: a name already there is refused, since adopting
that audience would mix its people with the segment's).
TikTok makes a customer-file audience only from uploaded ids, so a new
audience is created by the link's first add, and its id stored then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from segflow.activation import tokens
from segflow.activation.identifiers import Capped, Mapping, Skipped
from segflow.activation.platform import Platform, Prepare
from segflow.activation.tiktok import normalise
from segflow.activation.tiktok.client import TikTokClient
from segflow.activation.tiktok.config import EMAIL, TIKTOK, check_secret
from segflow.activation.tiktok.sender import (
    MAX_LIST_PAGES,
    MAX_MEMBERS_PER_REQUEST,
    TikTokSender,
    find_audience,
)
from segflow.activation.transport import LinkBroken, RequestRejected, Sender, TransientError
from segflow.config import Settings
from segflow.errors import InvalidInput

BUSINESS_API = "https://business-api.tiktok.com"


class TikTokEncoder:
    """The codes of the audience's one kind: ``e:`` for an email audience, ``p:`` for phones.

    A member without that kind has no codes, so it is refused with the
    reason instead of being counted as sent.
    """

    columns: Sequence[str] = ()

    def __init__(self, config: dict[str, Any], names: Sequence[str], mapping: Mapping) -> None:
        self.mapping = mapping
        email = config.get("id_type", EMAIL) == EMAIL
        self.prefix = normalise.EMAIL_CODE if email else normalise.PHONE_CODE
        kind = "email" if email else "phone number"
        #: Why a member has no codes, when its record has none of this kind.
        self.missing = f"no valid {kind}: this TikTok audience holds {kind}s only"

    def codes(
        self, record: dict[str, str | None], key: str, skipped: Skipped, capped: Capped
    ) -> list[str]:
        return [
            c
            for c in normalise.codes_for(record, self.mapping, skipped)
            if c.startswith(self.prefix)
        ]


def _url(settings: Settings) -> str:
    return settings.tiktok_endpoint or BUSINESS_API


def _sender(
    destination: Any, secret: dict[str, Any] | None, settings: Settings, connections: Any = None
) -> Sender:
    token = tokens.token_to_send(check_secret, secret)
    return TikTokSender(
        destination.config, token, _url(settings), timeout=float(settings.sync_timeout)
    )


def preparer(settings: Settings, **_: Any) -> Prepare:
    def prepare(config: dict[str, Any], secret: dict[str, Any] | None) -> dict[str, Any]:
        token = check_secret(secret)
        out = dict(config)
        try:
            with TikTokClient(_url(settings), token, timeout=float(settings.sync_timeout)) as c:
                if out.get("audience_id"):
                    found = c.get_audiences(out["advertiser_id"], [out["audience_id"]])
                    if not found:
                        raise InvalidInput(
                            f"TikTok has no audience {out['audience_id']} for advertiser "
                            f"{out['advertiser_id']}"
                        )
                else:
                    existing = find_audience(c, out["advertiser_id"], out["audience_name"])
                    if existing is not None:
                        # Adopting it could mix its people with the segment's,
                        # and two destinations named alike would share it.
                        raise InvalidInput(
                            f"advertiser {out['advertiser_id']} already has an audience named "
                            f"{out['audience_name']!r} (id {existing}): give audience_id "
                            f"{existing} to keep that one in sync, or choose another name"
                        )
        except (LinkBroken, RequestRejected, TransientError) as exc:
            raise InvalidInput(f"the destination was not added: {exc}") from None
        return out

    return prepare


PLATFORM = Platform(
    kind=TIKTOK,
    name="TikTok",
    title="TikTok audience",
    normalisation_version=normalise.NORMALISATION_VERSION,
    batch_size=MAX_MEMBERS_PER_REQUEST,
    # The audience looked for (MAX_LIST_PAGES), the file, the update.
    requests_per_send=MAX_LIST_PAGES + 2,
    sends_consent=False,
    encoder=TikTokEncoder,
    sender=_sender,
    preparer=preparer,
)
