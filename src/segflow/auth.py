"""Team mode's people: users, workspaces, memberships, sessions, API tokens.

Passwords are kept as argon2id hashes; sessions and API tokens as SHA-256
hashes of random secrets (high-entropy, so a fast hash is enough), which are
shown once and never stored. Sign-ins are throttled per name, whoever tries
it, so guessing costs the same for names that exist and names that do not;
and per client address, so one address cannot try a password on many names
(the limits, and the bound on concurrent hashing, are in ``segflow.passwords``).

Every function takes the current time; nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import passwords
from segflow.db.engine import DEFAULT_WORKSPACE, Database
from segflow.db.schema import (
    login_failures,
    sessions,
    tokens,
    users,
    workspace_members,
    workspaces,
)
from segflow.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
)
from segflow.passwords import MAX_CLIENT_FAILURES, MAX_FAILURES, Key

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
TOKEN_PREFIX = "sf_"

# fullmatch: "$" would also accept a trailing newline.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
# Verified against when a name is unknown, so that a wrong name takes as long
# as a wrong password.
_DUMMY_HASH = passwords.hash_password("segflow-no-such-user")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, and in which workspace."""

    user_id: int | None
    user: str | None
    workspace_id: int
    workspace: str
    via: Literal["local", "session", "token"]
    #: The session's CSRF token (sessions only).
    csrf_token: str | None = None


LOCAL = Principal(None, None, DEFAULT_WORKSPACE, "default", "local")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _valid_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{kind} name {name!r} is not valid: use 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def _user_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(users.c.id).where(users.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"no user named {name!r}")
    return int(found)


def _workspace_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(workspaces.c.id).where(workspaces.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"no workspace named {name!r}")
    return int(found)


def workspace_id(db: Database, name: str) -> int:
    with db.read() as conn:
        return _workspace_id(conn, name)


# ---------------------------------------------------------------- users


def add_user(
    db: Database, name: str, password: str, now: dt.datetime, *, member_of: Sequence[str] = ()
) -> None:
    """Create a user, member of the named workspaces."""
    _valid_name("user", name)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    hashed = passwords.hash_password(password)
    with db.write() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
            raise Conflict(f"a user named {name!r} already exists")
        ws_ids = [_workspace_id(conn, w) for w in member_of]
        user_id = conn.execute(
            sa.insert(users)
            .values(name=name, password_hash=hashed, created_at=now)
            .returning(users.c.id)
        ).scalar_one()
        for ws in ws_ids:
            conn.execute(sa.insert(workspace_members).values(workspace_id=ws, user_id=user_id))


def set_password(db: Database, name: str, password: str, now: dt.datetime) -> None:
    """An operator's password reset: ends the user's sessions and API tokens."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    hashed = passwords.hash_password(password)
    with db.write() as conn:
        user_id = _user_id(conn, name)
        conn.execute(sa.update(users).where(users.c.id == user_id).values(password_hash=hashed))
        _end_credentials(conn, user_id, now)


def _end_credentials(conn: Connection, user_id: int, now: dt.datetime, keep: str = "") -> None:
    # A new password ends every sign-in made with the old one, and the API
    # tokens too: a password is changed because it may be known to someone,
    # who may have used it to create a token.
    conn.execute(
        sa.delete(sessions).where(sessions.c.user_id == user_id, sessions.c.token_hash != keep)
    )
    conn.execute(
        sa.update(tokens)
        .where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def change_password(
    db: Database, name: str, current: str, new: str, keep_session: str, now: dt.datetime
) -> None:
    """A signed-in user's own password change: the current password first.

    A wrong current password counts as a failed sign-in (so it is throttled
    the same way); a change ends the user's API tokens and other sessions,
    not this one.
    """
    if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise InvalidInput(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    keys = [Key(name, MAX_FAILURES, f"for {name!r}")]
    passwords.count_attempt(db, keys, now)
    with db.read() as conn:
        row = _password_row(conn, name)
    if row is None or not passwords.check_password(db, keys, row.password_hash, current):
        raise Forbidden("the current password is wrong")
    hashed = passwords.hash_password(new)
    with db.write() as conn:
        conn.execute(sa.update(users).where(users.c.id == row.id).values(password_hash=hashed))
        _end_credentials(conn, int(row.id), now, keep=_digest(keep_session))
        conn.execute(sa.delete(login_failures).where(login_failures.c.name == name))


def list_users(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(sa.select(users.c.id, users.c.name, users.c.created_at)).all()
        member = conn.execute(
            sa.select(workspace_members.c.user_id, workspaces.c.name)
            .join(workspaces, workspaces.c.id == workspace_members.c.workspace_id)
            .order_by(workspaces.c.name)
        ).all()
    by_user: dict[int, list[str]] = {}
    for user_id, ws in member:
        by_user.setdefault(int(user_id), []).append(ws)
    return [
        {
            "name": r.name,
            "workspaces": by_user.get(int(r.id), []),
            "created_at": r.created_at.isoformat(),
        }
        for r in sorted(rows, key=lambda r: r.name)
    ]


def remove_user(db: Database, name: str) -> None:
    """Delete a user with their sessions, tokens and memberships (their data stays
    with the workspaces)."""
    with db.write() as conn:
        user_id = _user_id(conn, name)
        for table in (sessions, tokens, workspace_members):
            conn.execute(sa.delete(table).where(table.c.user_id == user_id))
        conn.execute(sa.delete(users).where(users.c.id == user_id))


# ---------------------------------------------------------------- workspaces


def add_workspace(db: Database, name: str, now: dt.datetime) -> int:
    _valid_name("workspace", name)
    with db.write() as conn:
        if conn.execute(sa.select(workspaces.c.id).where(workspaces.c.name == name)).first():
            raise Conflict(f"a workspace named {name!r} already exists")
        return int(
            conn.execute(
                sa.insert(workspaces).values(name=name, created_at=now).returning(workspaces.c.id)
            ).scalar_one()
        )


def list_workspaces(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(workspaces.c.id, workspaces.c.name, workspaces.c.created_at).order_by(
                workspaces.c.name
            )
        ).all()
        member = conn.execute(
            sa.select(workspace_members.c.workspace_id, users.c.name)
            .join(users, users.c.id == workspace_members.c.user_id)
            .order_by(users.c.name)
        ).all()
    by_ws: dict[int, list[str]] = {}
    for ws, user in member:
        by_ws.setdefault(int(ws), []).append(user)
    return [
        {"name": r.name, "users": by_ws.get(int(r.id), []), "created_at": r.created_at.isoformat()}
        for r in rows
    ]


def grant(db: Database, workspace: str, user: str) -> bool:
    """Make a user a member of a workspace; False if they already were."""
    with db.write() as conn:
        ws, user_id = _workspace_id(conn, workspace), _user_id(conn, user)
        exists = conn.execute(
            sa.select(workspace_members.c.user_id).where(
                workspace_members.c.workspace_id == ws, workspace_members.c.user_id == user_id
            )
        ).first()
        if exists:
            return False
        conn.execute(sa.insert(workspace_members).values(workspace_id=ws, user_id=user_id))
        return True


def revoke_membership(db: Database, workspace: str, user: str) -> None:
    """Take a user out of a workspace, ending their sessions and tokens there."""
    with db.write() as conn:
        ws, user_id = _workspace_id(conn, workspace), _user_id(conn, user)
        for table in (sessions, tokens, workspace_members):
            conn.execute(
                sa.delete(table).where(table.c.user_id == user_id, table.c.workspace_id == ws)
            )


def _memberships(conn: Connection, user_id: int) -> list[tuple[int, str]]:
    rows = conn.execute(
        sa.select(workspaces.c.id, workspaces.c.name)
        .join(workspace_members, workspace_members.c.workspace_id == workspaces.c.id)
        .where(workspace_members.c.user_id == user_id)
        .order_by(workspaces.c.name)
    ).all()
    return [(int(i), str(n)) for i, n in rows]


def user_workspaces(db: Database, user_id: int) -> list[str]:
    with db.read() as conn:
        return [name for _, name in _memberships(conn, user_id)]


# ---------------------------------------------------------------- sign-in


def _client_key(client: str) -> str:
    # A ":" never occurs in a user name, so the two kinds of key never meet.
    return f"client:{client}"


def _password_row(conn: Connection, name: str) -> sa.Row[Any] | None:
    return conn.execute(
        sa.select(users.c.id, users.c.password_hash).where(users.c.name == name)
    ).first()


def login(
    db: Database,
    name: str,
    password: str,
    now: dt.datetime,
    *,
    hours: int,
    workspace: str | None = None,
    client: str | None = None,
) -> tuple[Principal, str]:
    """Check a name and password; return the signed-in principal and the session
    secret (for the cookie). Raises NotAuthenticated or Throttled.

    ``client`` is the address the attempt came from: besides each name, each
    address is throttled, so one address cannot try a password on many names.
    """
    by_client = (
        [Key(_client_key(client), MAX_CLIENT_FAILURES, "from this address")] if client else []
    )
    # A name no user can have is not counted under that name: it could be
    # another throttle's key.
    by_name = [Key(name, MAX_FAILURES, f"for {name!r}")] if _NAME.fullmatch(name) else []
    keys = by_client + by_name
    passwords.count_attempt(db, keys, now)
    with db.read() as conn:
        row = _password_row(conn, name)
    # An unknown name is checked against a dummy hash, so that a wrong name
    # takes as long as a wrong password.
    hashed = row.password_hash if row else _DUMMY_HASH
    if not passwords.check_password(db, keys, hashed, password) or row is None:
        raise NotAuthenticated("wrong name or password")
    with db.write() as conn:
        passwords.refund(conn, by_client)  # a right password is no failure
        conn.execute(sa.delete(login_failures).where(login_failures.c.name == name))
        member = _memberships(conn, int(row.id))
        if not member:
            raise NotAuthenticated(f"user {name!r} belongs to no workspace; ask an operator")
        chosen = member[0]
        if workspace is not None:
            matches = [m for m in member if m[1] == workspace]
            if not matches:
                raise NotFound(f"you are not a member of a workspace named {workspace!r}")
            chosen = matches[0]
        secret = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        conn.execute(
            sa.insert(sessions).values(
                token_hash=_digest(secret),
                user_id=row.id,
                workspace_id=chosen[0],
                csrf_token=csrf,
                created_at=now,
                expires_at=now + dt.timedelta(hours=hours),
            )
        )
        conn.execute(sa.delete(sessions).where(sessions.c.expires_at <= now))
    return Principal(int(row.id), name, chosen[0], chosen[1], "session", csrf), secret


def session_principal(db: Database, secret: str, now: dt.datetime) -> Principal | None:
    """The principal of a live session, or None."""
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                sessions.c.user_id,
                sessions.c.workspace_id,
                sessions.c.csrf_token,
                sessions.c.expires_at,
                users.c.name.label("user"),
                workspaces.c.name.label("workspace"),
            )
            .join(users, users.c.id == sessions.c.user_id)
            .join(workspaces, workspaces.c.id == sessions.c.workspace_id)
            .where(sessions.c.token_hash == _digest(secret))
        ).first()
    if row is None or row.expires_at <= now:
        return None
    return Principal(
        int(row.user_id), row.user, int(row.workspace_id), row.workspace, "session", row.csrf_token
    )


def switch_workspace(db: Database, secret: str, workspace: str, now: dt.datetime) -> Principal:
    current = session_principal(db, secret, now)
    if current is None or current.user_id is None:
        raise NotAuthenticated("sign in first")
    with db.write() as conn:
        matches = [m for m in _memberships(conn, current.user_id) if m[1] == workspace]
        if not matches:
            raise NotFound(f"you are not a member of a workspace named {workspace!r}")
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.token_hash == _digest(secret))
            .values(workspace_id=matches[0][0])
        )
    return Principal(
        current.user_id, current.user, matches[0][0], workspace, "session", current.csrf_token
    )


def logout(db: Database, secret: str) -> None:
    with db.write() as conn:
        conn.execute(sa.delete(sessions).where(sessions.c.token_hash == _digest(secret)))


def csrf_matches(principal: Principal, presented: str | None) -> bool:
    expected = principal.csrf_token
    return bool(expected and presented and hmac.compare_digest(expected, presented))


# ---------------------------------------------------------------- API tokens


def create_token(
    db: Database, user: str, workspace: str, name: str, now: dt.datetime
) -> tuple[int, str]:
    """A new API token for a user in one workspace: (id, secret). The secret is
    shown this once; only its hash is kept."""
    if not name or len(name) > 100 or not name.isprintable():
        raise InvalidInput("a token name needs 1-100 printable characters")
    with db.write() as conn:
        user_id, ws = _user_id(conn, user), _workspace_id(conn, workspace)
        if ws not in [i for i, _ in _memberships(conn, user_id)]:
            raise InvalidInput(
                f"user {user!r} is not a member of workspace {workspace!r} "
                f"(segflow workspaces grant {workspace} {user})"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = conn.execute(
            sa.insert(tokens)
            .values(
                user_id=user_id,
                workspace_id=ws,
                name=name,
                token_hash=_digest(secret),
                created_at=now,
            )
            .returning(tokens.c.id)
        ).scalar_one()
    return int(token_id), secret


def list_tokens(db: Database, user: str | None = None) -> list[dict[str, Any]]:
    query = (
        sa.select(
            tokens.c.id,
            tokens.c.name,
            users.c.name.label("user"),
            workspaces.c.name.label("workspace"),
            tokens.c.created_at,
            tokens.c.last_used_at,
            tokens.c.revoked_at,
        )
        .join(users, users.c.id == tokens.c.user_id)
        .join(workspaces, workspaces.c.id == tokens.c.workspace_id)
        .order_by(tokens.c.id)
    )
    if user is not None:
        query = query.where(users.c.name == user)

    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    with db.read() as conn:
        return [
            {
                "id": r.id,
                "name": r.name,
                "user": r.user,
                "workspace": r.workspace,
                "created_at": iso(r.created_at),
                "last_used_at": iso(r.last_used_at),
                "revoked_at": iso(r.revoked_at),
            }
            for r in conn.execute(query)
        ]


def revoke_token(db: Database, token_id: int, now: dt.datetime) -> None:
    with db.write() as conn:
        done = conn.execute(
            sa.update(tokens)
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        if not done.rowcount:
            exists = conn.execute(sa.select(tokens.c.id).where(tokens.c.id == token_id)).first()
            raise NotFound(
                f"token {token_id} is already revoked" if exists else f"no token with id {token_id}"
            )


#: last_used_at is written at most this often per token, not on every request.
_USE_GRANULARITY = dt.timedelta(minutes=1)


def token_principal(db: Database, secret: str, now: dt.datetime) -> Principal | None:
    """The principal of a live (not revoked) API token whose user is still a member."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    with db.read() as conn:
        row = conn.execute(
            sa.select(
                tokens.c.id,
                tokens.c.user_id,
                tokens.c.workspace_id,
                tokens.c.last_used_at,
                users.c.name.label("user"),
                workspaces.c.name.label("workspace"),
            )
            .join(users, users.c.id == tokens.c.user_id)
            .join(workspaces, workspaces.c.id == tokens.c.workspace_id)
            .join(
                workspace_members,
                sa.and_(
                    workspace_members.c.user_id == tokens.c.user_id,
                    workspace_members.c.workspace_id == tokens.c.workspace_id,
                ),
            )
            .where(tokens.c.token_hash == _digest(secret), tokens.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at > _USE_GRANULARITY:
        # At most once a minute per token (on SQLite this write may wait for
        # an import's commit, so not on every request).
        with db.write() as conn:
            conn.execute(sa.update(tokens).where(tokens.c.id == row.id).values(last_used_at=now))
    return Principal(int(row.user_id), row.user, int(row.workspace_id), row.workspace, "token")
