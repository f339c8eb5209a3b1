"""The destination catalog: where a segment's members go.

The kinds:

* ``google_ads``: a Customer Match user list, written through Google's Data
  Manager API;
* ``meta``: a customer-list Custom Audience of a Meta ad account, written
  through the Graph API (settings: :mod:`segflow.activation.meta.config`);
* ``tiktok``: a customer-file audience of a TikTok advertiser, written
  through the Business API (settings: :mod:`segflow.activation.tiktok.config`);
* ``file``: every batch that would be sent, appended as one JSON line to a
  local file. A dry run a user can read, and the demo's destination.

Consent (``ad_user_data``, ``ad_personalization``) is a choice a
google_ads destination is refused without: Google requires it for users in
the EEA, and a default would send data as granted that nobody agreed to. A
file destination records what would be sent and may leave it out (granted).

This module validates a destination's settings, stores, changes, finds and
deletes destinations, and keeps (and replaces) their credentials: a destination's
``config`` is shown freely, its credentials (``secret``) are stored apart,
encrypted, and leave this module only to build a client (see
:mod:`segflow.activation.platforms`, which builds senders).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.activation import credentials
from segflow.activation.meta import config as meta_config
from segflow.activation.platform import Prepare
from segflow.activation.tiktok import config as tiktok_config
from segflow.db.engine import Database
from segflow.db.schema import destinations, link_members, links
from segflow.db.scope import owned, workspace_of
from segflow.errors import Conflict, InvalidInput, NotFound
from segflow.secrets import Cipher

GOOGLE_ADS = "google_ads"
META = meta_config.META
TIKTOK = tiktok_config.TIKTOK
FILE = "file"
KINDS = (GOOGLE_ADS, META, TIKTOK, FILE)
#: Kinds whose credentials are one access token ({"access_token": ...}): the
#: module of each checks its settings and its token.
TOKEN_KINDS: dict[str, Any] = {META: meta_config, TIKTOK: tiktok_config}

GRANTED = "granted"
DENIED = "denied"

# Both fullmatch: "$" would also accept a trailing newline.
_ACCOUNT_ID = re.compile(r"\d{1,20}", re.ASCII)
_NAME = re.compile(r"[\w.@+ -]{1,100}")


@dataclass(frozen=True)
class Destination:
    id: int
    name: str
    kind: str
    config: dict[str, Any]
    has_credentials: bool
    created_at: dt.datetime
    updated_at: dt.datetime

    def public(self) -> dict[str, Any]:
        """What may be shown anywhere: never the credentials themselves."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "config": dict(self.config),
            "has_credentials": self.has_credentials,
            "created_at": self.created_at.isoformat(),
        }

    @property
    def consent(self) -> tuple[str, str]:
        """(ad_user_data, ad_personalization): what members without their own consent get."""
        # Every stored config holds both (validation, and migration 6 for
        # older ones); a config without them is never read as granted.
        return (
            str(self.config.get("ad_user_data", DENIED)),
            str(self.config.get("ad_personalization", DENIED)),
        )

    @property
    def terms_accepted(self) -> bool:
        return bool(self.config.get("terms_accepted", False))

    @property
    def validate_only(self) -> bool:
        return bool(self.config.get("validate_only", False))


# ---------------------------------------------------------------- validation


#: What each consent setting means, for errors and help.
CONSENT_MEANING = {
    "ad_user_data": "whether Google may use the members' data for advertising",
    "ad_personalization": "whether Google may use the members' data for personalised advertising",
}
#: A file destination records what would be sent; nothing leaves the machine,
#: so its consent may stay unchosen and is then this.
FILE_DEFAULT_CONSENT = GRANTED


def _consent_value(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in (GRANTED, DENIED):
        raise InvalidInput(f"{name} must be 'granted' or 'denied', got {value!r}")
    return text


def _chosen_consent(raw: dict[str, Any]) -> tuple[str, str]:
    """A google_ads destination's consent, which must be given: there is no default."""
    missing = [name for name in CONSENT_MEANING if raw.get(name) in (None, "")]
    if missing:
        meanings = "; ".join(f"{name}: {CONSENT_MEANING[name]}" for name in CONSENT_MEANING)
        raise InvalidInput(
            f"a google_ads destination needs its consent chosen: {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing ({meanings}). Each is 'granted' "
            "or 'denied', as the people in the list agreed; Google requires it for users in "
            "the EEA, and members with their own consent column keep theirs. Give it with "
            "--ad-user-data granted|denied --ad-personalization granted|denied (segflow "
            "destinations add) or config.ad_user_data and config.ad_personalization (API)"
        )
    return (
        _consent_value("ad_user_data", raw["ad_user_data"]),
        _consent_value("ad_personalization", raw["ad_personalization"]),
    )


def _account_id(name: str, value: Any) -> str:
    # Google Ads shows customer ids as 123-456-7890; the API wants digits.
    text = str(value).strip().replace("-", "")
    if not _ACCOUNT_ID.fullmatch(text):
        raise InvalidInput(f"{name} must be a numeric id such as 123-456-7890, got {value!r}")
    return text


def account_id(name: str, value: Any) -> str:
    """A Google Ads account id as the API wants it (digits); InvalidInput names ``name``."""
    return _account_id(name, value)


def _google_ads_config(raw: dict[str, Any]) -> dict[str, Any]:
    known = {
        "operating_account_id",
        "login_account_id",
        "product_destination_id",
        "ad_user_data",
        "ad_personalization",
        "terms_accepted",
        "validate_only",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown google_ads setting(s): {', '.join(unknown)}")
    for required in ("operating_account_id", "product_destination_id"):
        if not raw.get(required):
            raise InvalidInput(f"a google_ads destination needs {required}")
    config: dict[str, Any] = {
        "operating_account_id": _account_id("operating_account_id", raw["operating_account_id"]),
        "product_destination_id": _account_id(
            "product_destination_id", raw["product_destination_id"]
        ),
        "terms_accepted": bool(raw.get("terms_accepted", False)),
        "validate_only": bool(raw.get("validate_only", False)),
    }
    config["ad_user_data"], config["ad_personalization"] = _chosen_consent(raw)
    if raw.get("login_account_id"):
        config["login_account_id"] = _account_id("login_account_id", raw["login_account_id"])
    return config


def _file_config(raw: dict[str, Any]) -> dict[str, Any]:
    known = {"path", "ad_user_data", "ad_personalization"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown file setting(s): {', '.join(unknown)}")
    given = raw.get("path")
    if isinstance(given, os.PathLike):
        given = os.fspath(given)
    if not given or not isinstance(given, str):
        raise InvalidInput("a file destination needs a path")
    if "\x00" in given:
        raise InvalidInput("the path contains a NUL character")
    path = Path(given).expanduser().resolve()
    if not path.parent.is_dir():
        raise InvalidInput(f"cannot write {path}: directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise InvalidInput(f"cannot write {path}: it is not a regular file")
    return {
        "path": str(path),
        "ad_user_data": _consent_value(
            "ad_user_data", raw.get("ad_user_data") or FILE_DEFAULT_CONSENT
        ),
        "ad_personalization": _consent_value(
            "ad_personalization", raw.get("ad_personalization") or FILE_DEFAULT_CONSENT
        ),
        # A file records what would be sent; there are no terms to accept.
        "terms_accepted": True,
    }


# ---------------------------------------------------------------- storage

#: Creates a google_ads destination's list at Google from its checked config
#: and credentials; returns the new list's id. Given by the layer that talks
#: to Google (this module does not).
ListCreator = Callable[[dict[str, Any], dict[str, Any] | None], str]


def destination_from_row(row: sa.Row[Any]) -> Destination:
    """A :class:`Destination` from a full row of ``sf_destinations``."""
    return Destination(
        id=row.id,
        name=row.name,
        kind=row.kind,
        config=dict(row.config),
        has_credentials=row.secret is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def add_destination(
    db: Database,
    name: str,
    kind: str,
    config: dict[str, Any],
    now: dt.datetime,
    secret: dict[str, Any] | None = None,
    cipher: Cipher | None = None,
    *,
    create_list: ListCreator | None = None,
    check_credentials: bool = False,
    token_uri: str | None = None,
    prepare: Prepare | None = None,
) -> Destination:
    """Store a destination; credentials (``secret``) are encrypted with ``cipher``.

    ``prepare`` (a platform's, see :mod:`segflow.activation.platform`) runs on
    the checked settings before anything is stored: it asks the platform
    about the account and may create the audience; when it refuses, nothing
    is stored.

    With ``check_credentials`` (the CLI and the server, see
    ``Settings.check_credentials``) Google credentials are refreshed once at
    ``token_uri`` first (None: no token server may be asked, so they are not
    checked); credentials Google refuses for good are refused here.

    With ``create_list`` (google_ads, no ``product_destination_id`` given) the
    list is created at Google once everything else is checked, and the
    destination stored with its id; when creating fails nothing is stored.
    """
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"destination name {name!r} must be 1-100 letters, digits, spaces or . @ + - _"
        )
    if create_list is not None:
        if kind != GOOGLE_ADS or config.get("product_destination_id"):
            raise InvalidInput("creating a list is for google_ads destinations without a list id")
        # Checked with a stand-in id, so that no list is made for a bad config.
        _google_ads_config({**config, "product_destination_id": "0"})
        with db.read() as conn:
            _check_name_free(conn, name)
        config = {**config, "product_destination_id": create_list(config, secret)}
    if kind == GOOGLE_ADS:
        clean = _google_ads_config(config)
        if secret is not None:
            clean["credentials"] = credentials.describe(
                secret,
                check=check_credentials and token_uri is not None,
                token_uri=token_uri or credentials.OAUTH_TOKEN_URI,
            )
    elif kind in TOKEN_KINDS:
        rules = TOKEN_KINDS[kind]
        clean = rules.check_config(config)
        token = rules.check_secret(secret)
        with db.read() as conn:
            _check_audience_free(conn, kind, clean)
        if prepare is not None:
            with db.read() as conn:
                _check_name_free(conn, name)
            # Asks the platform; nothing is stored when it refuses.
            clean = prepare(clean, secret)
        clean["credentials"] = rules.describe_token(token)
    elif kind == FILE:
        if secret is not None:
            raise InvalidInput("a file destination takes no credentials")
        clean = _file_config(config)
    else:
        raise InvalidInput(f"unknown destination kind {kind!r} (choose {', '.join(KINDS)})")
    stored = None
    if secret is not None:
        if cipher is None:
            raise ValueError("credentials are only stored encrypted: pass a cipher")
        stored = cipher.encrypt(json.dumps(secret))
    with db.write() as conn:
        _check_name_free(conn, name)
        if kind in TOKEN_KINDS:
            _check_audience_free(conn, kind, clean)
        new_id = conn.execute(
            sa.insert(destinations)
            .values(
                workspace_id=workspace_of(conn),
                name=name,
                kind=kind,
                config=clean,
                secret=stored,
                created_at=now,
                updated_at=now,
            )
            .returning(destinations.c.id)
        ).scalar_one()
        row = conn.execute(sa.select(destinations).where(destinations.c.id == new_id)).one()
    return destination_from_row(row)


#: The settings that say which account's audience a token kind writes to.
_AUDIENCE_KEYS = ("ad_account_id", "advertiser_id", "audience_id", "audience_name")


def _check_audience_free(conn: Connection, kind: str, config: dict[str, Any]) -> None:
    """One destination an audience: two would undo each other's removes."""
    # Every workspace's: two teams writing one audience undo each other too.
    rows = conn.execute(
        sa.select(destinations.c.name, destinations.c.config, destinations.c.workspace_id).where(
            destinations.c.kind == kind
        )
    ).all()
    mine = workspace_of(conn)
    account = config.get("ad_account_id") or config.get("advertiser_id")
    for row in rows:
        other = dict(row.config)
        if (other.get("ad_account_id") or other.get("advertiser_id")) != account:
            continue
        same_id = config.get("audience_id") and other.get("audience_id") == config["audience_id"]
        same_name = (
            config.get("audience_name")
            and not other.get("audience_id")
            and other.get("audience_name") == config["audience_name"]
        )
        if same_id or same_name:
            # Another workspace's names are not this one's to see.
            who = (
                f"destination {row.name!r}"
                if row.workspace_id == mine
                else ("a destination of another workspace")
            )
            raise Conflict(
                f"{who} already writes to this {kind} audience; "
                "link its segment there, or add a destination for another audience"
            )


def _check_name_free(conn: Connection, name: str) -> None:
    taken = conn.execute(
        sa.select(destinations.c.id).where(destinations.c.name == name, owned(conn, destinations))
    ).first()
    if taken is not None:
        raise Conflict(f"a destination named {name!r} already exists")


def load_destination(conn: Connection, ref: int | str) -> Destination:
    """The destination with this id (int) or name (str), in the caller's workspace.

    Raises NotFound: ``no destination with id N`` or ``no destination named 'x'``.
    """
    if isinstance(ref, int):
        where = destinations.c.id == ref
    else:
        where = destinations.c.name == ref
    row = conn.execute(sa.select(destinations).where(where, owned(conn, destinations))).first()
    if row is None:
        if isinstance(ref, int):
            raise NotFound(f"no destination with id {ref}")
        raise NotFound(f"no destination named {ref!r}")
    return destination_from_row(row)


def update_destination(
    db: Database, ref: int | str, changes: dict[str, Any], now: dt.datetime
) -> Destination:
    """Change settings of a destination, by id or name (not its kind or credentials).

    Turning ``validate_only`` off makes every member of its link due again:
    nothing sent while validating was applied at Google. Changing its consent
    sends every wanted member again, so that Google holds the new choice.
    """
    with db.write() as conn:
        current = load_destination(conn, ref)
        merged = {k: v for k, v in current.config.items() if k != "credentials"}
        merged.update(changes)
        clean = _checked_change(current, merged, changes)
        if "credentials" in current.config:
            clean["credentials"] = current.config["credentials"]
        conn.execute(
            sa.update(destinations)
            .where(destinations.c.id == current.id)
            .values(config=clean, updated_at=now)
        )
        if current.validate_only and not clean.get("validate_only", False):
            _resend_everything(conn, current.id)
        elif current.kind in TOKEN_KINDS:
            if any(current.config.get(k) != clean.get(k) for k in _RESENT_ON_CHANGE):
                _resend_wanted(conn, current.id)
        elif current.consent != (clean["ad_user_data"], clean["ad_personalization"]):
            _resend_wanted(conn, current.id)
        row = conn.execute(sa.select(destinations).where(destinations.c.id == current.id)).one()
    return destination_from_row(row)


#: Settings of a token kind whose change alters what each member is sent as.
_RESENT_ON_CHANGE = ("limited_data_use", "send_extern_id")
#: Settings that name where members go: a new audience is a new destination.
_FIXED = ("ad_account_id", "audience_id", "advertiser_id", "id_type")


def _checked_change(
    current: Destination, merged: dict[str, Any], changes: dict[str, Any]
) -> dict[str, Any]:
    if current.kind == GOOGLE_ADS:
        return _google_ads_config(merged)
    if current.kind == FILE:
        return _file_config(merged)
    named = [
        k
        for k in ("audience_name", "customer_file_source")
        if k in changes and str(changes[k]).strip() != str(current.config.get(k, ""))
    ]
    made_from = None
    if merged.get("audience_id") and merged.get("audience_name"):
        # The name the audience was made from: the id is what counts, the
        # name stays to be shown.
        made_from = merged.pop("audience_name")
    checked: dict[str, Any] = TOKEN_KINDS[current.kind].check_config(merged)
    if made_from is not None:
        checked["audience_name"] = made_from
    # Compared as checked: "act_123" is the stored "123".
    fixed = [k for k in _FIXED if k in changes and checked.get(k) != current.config.get(k)]
    if fixed or named:
        raise InvalidInput(
            f"{', '.join([*fixed, *named])} of destination {current.name!r} cannot change: "
            "it names where members go; add a new destination for another audience"
        )
    return checked


def replace_credentials(
    db: Database,
    ref: int | str,
    secret: dict[str, Any],
    now: dt.datetime,
    cipher: Cipher,
    *,
    check_credentials: bool = False,
    token_uri: str | None = None,
) -> Destination:
    """Replace a destination's credentials (by id or name), checked as adding does.

    Google's are loaded, and with ``check_credentials`` refreshed once at
    ``token_uri``, before anything is stored: credentials Google refuses for
    good leave the old ones in place. A token kind's token is checked for
    its form. Only their description (``config["credentials"]``) is ever
    shown.
    """
    current = get_destination(db, ref)
    if current.kind in TOKEN_KINDS:
        rules = TOKEN_KINDS[current.kind]
        described: Any = rules.describe_token(rules.check_secret(secret))
    elif current.kind != GOOGLE_ADS:
        raise InvalidInput(
            f"destination {current.name!r} is a {current.kind} destination: it takes no credentials"
        )
    else:
        described = credentials.describe(
            secret,
            check=check_credentials and token_uri is not None,
            token_uri=token_uri or credentials.OAUTH_TOKEN_URI,
        )
    stored = cipher.encrypt(json.dumps(secret))
    with db.write() as conn:
        found = load_destination(conn, current.id)
        config = {**found.config, "credentials": described}
        conn.execute(
            sa.update(destinations)
            .where(destinations.c.id == found.id)
            .values(config=config, secret=stored, updated_at=now)
        )
        row = conn.execute(sa.select(destinations).where(destinations.c.id == found.id)).one()
    return destination_from_row(row)


def _resend_wanted(conn: Connection, destination_id: int) -> None:
    """Every wanted member of the destination's links is sent again, with its consent.

    Consent travels with each ingest, so a list's members keep the consent
    they were sent with until they are sent again: a changed choice (a
    withdrawal, above all) must reach Google for everyone already there.
    """
    link_ids = sa.select(links.c.id).where(links.c.destination_id == destination_id)
    conn.execute(
        sa.update(link_members)
        .where(link_members.c.link_id.in_(link_ids), link_members.c.want == 1)
        .values(pending=1, acked_at=None)
    )


def _resend_everything(conn: Connection, destination_id: int) -> None:
    """Every member of the destination's links is due again, as if never sent."""
    link_ids = sa.select(links.c.id).where(links.c.destination_id == destination_id)
    conn.execute(
        sa.delete(link_members).where(
            link_members.c.link_id.in_(link_ids), link_members.c.want == 0
        )
    )
    conn.execute(
        sa.update(link_members)
        .where(link_members.c.link_id.in_(link_ids))
        .values(have=0, pending=1, sent=None, acked_at=None, rejected=None)
    )


def get_destination(db: Database, ref: int | str) -> Destination:
    """The destination with this id (int) or name (str)."""
    with db.read() as conn:
        return load_destination(conn, ref)


def list_destinations(db: Database) -> list[Destination]:
    """The workspace's destinations, by name."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(destinations).where(owned(conn, destinations)).order_by(destinations.c.name)
        ).all()
    return [destination_from_row(r) for r in rows]


def delete_destination(db: Database, ref: int | str) -> Destination:
    """Delete a destination, by id or name; refused while a segment is linked to it."""
    with db.write() as conn:
        destination = load_destination(conn, ref)
        linked = conn.execute(
            sa.select(links.c.id).where(links.c.destination_id == destination.id)
        ).first()
        if linked is not None:
            raise InvalidInput(
                f"destination {destination.name!r} is linked to a segment; "
                "unlink it first (segflow unlink)"
            )
        conn.execute(sa.delete(destinations).where(destinations.c.id == destination.id))
    return destination


def stored_secret(conn: Connection, destination_id: int) -> str | None:
    """A destination's credentials as stored (encrypted); :func:`open_secret` reads them."""
    raw = conn.execute(
        sa.select(destinations.c.secret).where(destinations.c.id == destination_id)
    ).scalar()
    return str(raw) if raw else None


def open_secret(stored: str | None, cipher: Cipher) -> dict[str, Any] | None:
    """Decrypt credentials read by :func:`stored_secret` (None stays None)."""
    if stored is None:
        return None
    data: dict[str, Any] = json.loads(cipher.decrypt(stored))
    return data


def rotate_key(db: Database, cipher: Cipher) -> tuple[int, Path | None, str]:
    """Re-encrypt every stored credential under a new key.

    Returns how many were re-encrypted, the key file now holding the new key
    (None when keys come from ``SEGFLOW_SECRET_KEY``), and the new key.
    """
    new_key = cipher.prepare_rotation()
    with db.write() as conn:
        rows = conn.execute(
            sa.select(destinations.c.id, destinations.c.secret).where(
                destinations.c.secret.is_not(None)
            )
        ).all()
        for row in rows:
            conn.execute(
                sa.update(destinations)
                .where(destinations.c.id == row.id)
                .values(secret=cipher.reencrypt(row.secret, new_key))
            )
    return len(rows), cipher.finish_rotation(new_key), new_key
