"""Before a Meta destination is stored: its account, its terms and its audience, asked of Meta.

:func:`preparer` gives the step the catalog runs once a destination's
settings are checked and before anything is stored. It asks Meta, with the
destination's token, whether the ad account can be seen and has accepted
the Custom Audience terms, then either checks the audience named by
``audience_id`` (a customer-list audience of that account) or creates one
from ``audience_name`` and ``customer_file_source`` and keeps its id. A
refusal from Meta stores nothing and says why. Terms not accepted do not
refuse an existing audience (they can be accepted later): the destination
is stored with ``terms_accepted`` false and its links pause, with how to
accept them, until they are.
"""

from __future__ import annotations

from typing import Any

from segflow.activation.meta import client
from segflow.activation.meta.config import check_secret
from segflow.activation.meta.sender import terms_accepted, terms_url
from segflow.activation.platform import Prepare
from segflow.activation.transport import LinkBroken, RequestRejected, TransientError
from segflow.config import Settings
from segflow.errors import InvalidInput

_AUDIENCE_FIELDS = "id,name,account_id,subtype,customer_file_source"


def preparer(settings: Settings, **_: Any) -> Prepare:
    def prepare(config: dict[str, Any], secret: dict[str, Any] | None) -> dict[str, Any]:
        api = client.connect(check_secret(secret), settings)
        try:
            return _prepare(api, config)
        except (LinkBroken, RequestRejected, TransientError) as exc:
            raise InvalidInput(f"the destination was not added: {exc}") from None
        finally:
            api._session.requests.close()

    return prepare


def _prepare(api: Any, config: dict[str, Any]) -> dict[str, Any]:
    account = config["ad_account_id"]
    out = dict(config)
    out["terms_accepted"] = terms_accepted(api, account)
    # Kept beside the id it becomes, to be shown.
    name = out.get("audience_name")
    if name is not None:
        if not out["terms_accepted"]:
            raise InvalidInput(
                f"Meta creates no customer list for ad account act_{account} until it has "
                f"accepted the Custom Audience terms: accept them at {terms_url(account)}, "
                "then add the destination again"
            )
        made = client.call(
            api,
            "POST",
            (f"act_{account}", "customaudiences"),
            {
                "name": name,
                "subtype": "CUSTOM",
                "description": "Kept in sync by segflow",
                "customer_file_source": out["customer_file_source"],
            },
        )
        out["audience_id"] = str(made["id"])
        return out
    audience = client.call(api, "GET", (out["audience_id"],), {"fields": _AUDIENCE_FIELDS})
    if str(audience.get("account_id", account)) != account:
        raise InvalidInput(
            f"audience {out['audience_id']} belongs to ad account act_{audience['account_id']}, "
            f"not act_{account}"
        )
    subtype = audience.get("subtype")
    if subtype not in (None, "CUSTOM"):
        raise InvalidInput(
            f"audience {out['audience_id']} is a {subtype} audience; only a customer-list "
            "(CUSTOM) audience takes uploaded members"
        )
    if audience.get("customer_file_source") and "customer_file_source" not in out:
        out["customer_file_source"] = audience["customer_file_source"]
    return out
