"""Customer Match lists at Google: create one, read one, list an account's (``UserListService``).

A Google Ads destination names its list by id (``product_destination_id``).
This module creates such a list (display name, description, membership
duration of at most 540 days), reads one for its size and match rate
(``size_info``, ``ingested_user_list_info``), and pages through an account's
lists so a person can pick one. Calls go through a
:class:`~segflow.activation.google.client.GoogleConnection` with the
client's retry off and our timeout; failures come back as the kinds of
:mod:`segflow.activation.transport`, their messages free of credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.ads.datamanager_v1.types import user_list as ul
from google.ads.datamanager_v1.types import user_list_service as uls

from segflow.activation import credentials, destinations
from segflow.activation.google.client import GoogleConnection
from segflow.activation.google.errors import classify
from segflow.activation.transport import (
    LinkBroken,
    MembersRejected,
    RequestRejected,
    TransientError,
)
from segflow.config import Settings
from segflow.db.engine import Database
from segflow.errors import InvalidInput

#: Google's longest membership duration for a Customer Match list.
MAX_MEMBERSHIP_DAYS = 540
_DAY_SECONDS = 86_400
#: Lists asked for per page (Google's maximum is 1000, its default 50).
PAGE_SIZE = 200


@dataclass(frozen=True)
class UserListInfo:
    """What segflow shows of one user list."""

    list_id: str
    display_name: str
    description: str
    membership_days: int | None
    #: Google's estimated members per network; None when Google gave no size.
    display_members: int | None
    search_members: int | None
    youtube_members: int | None
    gmail_members: int | None
    #: Share of uploaded contacts Google matched, in percent, when known.
    match_rate_percentage: int | None
    membership_status: str
    read_only: bool

    @property
    def size(self) -> int | None:
        """The list's size as Google Ads shows it first: its Display Network members."""
        return self.display_members

    def as_dict(self) -> dict[str, Any]:
        return {
            "list_id": self.list_id,
            "display_name": self.display_name,
            "description": self.description,
            "membership_days": self.membership_days,
            "size": self.size,
            "display_members": self.display_members,
            "search_members": self.search_members,
            "youtube_members": self.youtube_members,
            "gmail_members": self.gmail_members,
            "match_rate_percentage": self.match_rate_percentage,
            "membership_status": self.membership_status,
            "read_only": self.read_only,
        }


def account_name(account_id: str) -> str:
    return f"accountTypes/GOOGLE_ADS/accounts/{account_id}"


def list_name(account_id: str, list_id: str) -> str:
    return f"{account_name(account_id)}/userLists/{list_id}"


def _metadata(
    connection: GoogleConnection, login_account_id: str | None
) -> tuple[tuple[str, str], ...]:
    """The call's metadata: a fresh token when we fetch tokens, and the login account.

    Refreshing before the call raises a refused refresh as such (classified),
    not as the UNAVAILABLE gRPC's token plugin would report.
    """
    token = tuple(connection.authorize())
    # Without the header Google authorises against the list's own account.
    if not login_account_id:
        return token
    return (*token, ("login-account", account_name(login_account_id)))


def info_of(user_list: Any) -> UserListInfo:
    """A ``UserList`` (proto-plus or raw) as a :class:`UserListInfo`."""
    pb = user_list._pb if hasattr(user_list, "_pb") else user_list
    has_size = pb.HasField("size_info")
    size = pb.size_info
    match_rate = None
    if pb.HasField("ingested_user_list_info"):
        contact = pb.ingested_user_list_info.contact_id_info
        if pb.ingested_user_list_info.HasField("contact_id_info"):
            match_rate = int(contact.match_rate_percentage)
    days = None
    if pb.HasField("membership_duration"):
        days = int(pb.membership_duration.seconds) // _DAY_SECONDS
    status = ul.UserList.MembershipStatus(pb.membership_status).name
    return UserListInfo(
        list_id=str(pb.id),
        display_name=pb.display_name,
        description=pb.description,
        membership_days=days,
        display_members=int(size.display_network_members_count) if has_size else None,
        search_members=int(size.search_network_members_count) if has_size else None,
        youtube_members=int(size.youtube_members_count) if has_size else None,
        gmail_members=int(size.gmail_members_count) if has_size else None,
        match_rate_percentage=match_rate,
        membership_status=status,
        read_only=bool(pb.read_only),
    )


def check_new_list(display_name: str, description: str, membership_days: int | None) -> None:
    """Refuse, before asking Google, what Google would refuse."""
    if not display_name.strip():
        raise InvalidInput("a new list needs a display name")
    if len(display_name) > 250:
        raise InvalidInput("a list's display name has at most 250 characters")
    if membership_days is not None and not 1 <= membership_days <= MAX_MEMBERSHIP_DAYS:
        raise InvalidInput(
            f"membership duration must be 1 to {MAX_MEMBERSHIP_DAYS} days, got {membership_days}"
        )


def create_list(
    connection: GoogleConnection,
    account_id: str,
    display_name: str,
    *,
    description: str = "",
    membership_days: int | None = None,
    login_account_id: str | None = None,
    timeout: float = 60.0,
) -> UserListInfo:
    """Create a Customer Match list (populated by uploaded contact data) in the account."""
    check_new_list(display_name, description, membership_days)
    user_list = ul.UserList.pb()(display_name=display_name.strip())
    if description:
        user_list.description = description
    user_list.membership_status = ul.UserList.MembershipStatus.OPEN
    if membership_days is not None:
        user_list.membership_duration.seconds = membership_days * _DAY_SECONDS
    info = user_list.ingested_user_list_info
    info.upload_key_types.append(ul.IngestedUserListInfo.UploadKeyType.CONTACT_ID)
    info.contact_id_info.data_source_type = ul.DataSourceType.DATA_SOURCE_TYPE_FIRST_PARTY
    request = uls.CreateUserListRequest.pb()(parent=account_name(account_id))
    request.user_list.CopyFrom(user_list)
    metadata = _metadata(connection, login_account_id)
    try:
        created = connection.user_lists().create_user_list(
            request=uls.CreateUserListRequest.wrap(request),
            retry=None,
            timeout=timeout,
            metadata=metadata,
        )
    except Exception as exc:
        raise classify(exc, connection.secret) from None
    return info_of(created)


def get(
    connection: GoogleConnection,
    account_id: str,
    list_id: str,
    *,
    login_account_id: str | None = None,
    timeout: float = 60.0,
) -> UserListInfo:
    """One list of the account, with Google's size and match rate."""
    metadata = _metadata(connection, login_account_id)
    try:
        found = connection.user_lists().get_user_list(
            request=uls.GetUserListRequest(name=list_name(account_id, list_id)),
            retry=None,
            timeout=timeout,
            metadata=metadata,
        )
    except Exception as exc:
        raise classify(exc, connection.secret) from None
    return info_of(found)


def page(
    connection: GoogleConnection,
    account_id: str,
    *,
    page_token: str = "",
    page_size: int = PAGE_SIZE,
    login_account_id: str | None = None,
    timeout: float = 60.0,
) -> tuple[list[UserListInfo], str]:
    """One page of the account's lists and the token of the next ('' after the last)."""
    request = uls.ListUserListsRequest(
        parent=account_name(account_id), page_size=page_size, page_token=page_token
    )
    metadata = _metadata(connection, login_account_id)
    try:
        # One page per call: the pager's own iteration would fetch the next
        # pages inside a loop we could not bound or time.
        response = connection.user_lists().list_user_lists(
            request=request, retry=None, timeout=timeout, metadata=metadata
        )
        items = [info_of(u) for u in response.user_lists]
        token = str(response.next_page_token)
    except Exception as exc:
        raise classify(exc, connection.secret) from None
    return items, token


def all_lists(
    connection: GoogleConnection,
    account_id: str,
    *,
    login_account_id: str | None = None,
    timeout: float = 60.0,
    limit: int = 5000,
) -> Iterator[UserListInfo]:
    """Every list of the account (at most ``limit``), page by page."""
    token = ""
    given = 0
    seen: set[str] = set()
    # Bounded whatever Google answers: pages without items, or a token that
    # comes back, must not keep a request asking for ever.
    for _ in range(limit // PAGE_SIZE + 2):
        items, token = page(
            connection,
            account_id,
            page_token=token,
            login_account_id=login_account_id,
            timeout=timeout,
        )
        for item in items:
            if given >= limit:
                return
            given += 1
            yield item
        if not token or token in seen:
            return
        seen.add(token)


# ---------------------------------------------------------------- for people


def _refused(what: str, exc: Exception) -> InvalidInput:
    return InvalidInput(f"Google refused to {what}: {exc}")


def creator(
    settings: Settings,
    display_name: str,
    description: str = "",
    membership_days: int | None = None,
    *,
    connections: Callable[[dict[str, Any] | None, Settings], GoogleConnection] = GoogleConnection,
) -> destinations.ListCreator:
    """The step :func:`~segflow.activation.destinations.add_destination` runs to create
    a new destination's list; a refusal from Google becomes InvalidInput."""
    check_new_list(display_name, description, membership_days)

    def create(config: dict[str, Any], secret: dict[str, Any] | None) -> str:
        connection = connections(secret, settings)
        try:
            made = create_list(
                connection,
                config["operating_account_id"],
                display_name,
                description=description,
                membership_days=membership_days,
                login_account_id=config.get("login_account_id"),
                timeout=float(settings.sync_timeout),
            )
        except (TransientError, LinkBroken, RequestRejected, MembersRejected) as exc:
            raise _refused("create the list", exc) from None
        finally:
            connection.close()
        return made.list_id

    return create


def destination_lists(
    db: Database, settings: Settings, ref: int | str
) -> tuple[destinations.Destination, list[UserListInfo]]:
    """A google_ads destination (by id or name) and its account's lists, read from Google."""
    found = destinations.get_destination(db, ref)
    if found.kind != destinations.GOOGLE_ADS:
        raise InvalidInput(f"destination {found.name!r} is not a google_ads destination")
    with db.read() as conn:
        stored = destinations.stored_secret(conn, found.id)
    items = account_lists(
        settings,
        found.config["operating_account_id"],
        found.config.get("login_account_id"),
        destinations.open_secret(stored, settings.cipher),
    )
    return found, items


def account_lists(
    settings: Settings,
    account_id: str,
    login_account_id: str | None,
    secret: dict[str, Any] | None,
) -> list[UserListInfo]:
    """An account's lists, read from Google with these credentials (None: the
    application's default), for a person choosing a list before a destination exists.
    Bad account ids and Google's refusals become InvalidInput."""
    account = destinations.account_id("operating_account_id", account_id)
    login = (
        destinations.account_id("login_account_id", login_account_id) if login_account_id else None
    )
    if secret is not None:
        credentials.load(secret)  # a key that cannot be loaded is named as such
    connection = GoogleConnection(secret, settings)
    try:
        return list(
            all_lists(
                connection,
                account,
                login_account_id=login,
                timeout=float(settings.sync_timeout),
            )
        )
    except (TransientError, LinkBroken, RequestRejected, MembersRejected) as exc:
        raise _refused("list the account's user lists", exc) from None
    finally:
        connection.close()
