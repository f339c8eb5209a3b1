"""CLI commands for team mode: users, workspaces and API tokens.

They work directly on the database, as the operator of the server.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from segflow import auth
from segflow.cli.output import emit_json
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.errors import InvalidInput


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise InvalidInput("the two passwords differ")
    else:
        raise InvalidInput("give the password on standard input with --password-stdin")
    return password


def cmd_users_add(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    member_of = args.member_of or []
    auth.add_user(db, args.name, _read_password(args), utcnow(), member_of=member_of)
    where = f", member of {', '.join(member_of)}" if member_of else " (in no workspace yet)"
    print(f"Added user {args.name!r}{where}.")
    return 0


def cmd_users_password(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    auth.set_password(db, args.name, _read_password(args), utcnow())
    print(f"Changed the password of {args.name!r}; their sessions and API tokens have ended.")
    return 0


def cmd_users_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    found = auth.list_users(db)
    if args.json:
        emit_json(found)
        return 0
    if not found:
        print("No users yet: segflow users add NAME --member-of WORKSPACE")
    for user in found:
        print(f"{user['name']}\t{', '.join(user['workspaces']) or '(no workspace)'}")
    return 0


def cmd_users_remove(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    auth.remove_user(db, args.name)
    print(f"Removed user {args.name!r} with their sessions and tokens.")
    return 0


def cmd_workspaces_add(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    auth.add_workspace(db, args.name, utcnow())
    print(f"Added workspace {args.name!r}.")
    return 0


def cmd_workspaces_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    found = auth.list_workspaces(db)
    if args.json:
        emit_json(found)
        return 0
    for ws in found:
        print(f"{ws['name']}\t{', '.join(ws['users']) or '(no users)'}")
    return 0


def cmd_workspaces_grant(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    added = auth.grant(db, args.name, args.user)
    state = "is now" if added else "already was"
    print(f"{args.user!r} {state} a member of workspace {args.name!r}.")
    return 0


def cmd_workspaces_revoke(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    auth.revoke_membership(db, args.name, args.user)
    print(
        f"{args.user!r} is no longer a member of {args.name!r}; "
        "their sessions and tokens there have ended."
    )
    return 0


def cmd_tokens_create(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    workspace = args.workspace or settings.workspace
    token_id, secret = auth.create_token(db, args.user, workspace, args.name, utcnow())
    if args.json:
        emit_json({"id": token_id, "token": secret, "user": args.user, "workspace": workspace})
        return 0
    print(f"Token {token_id} for {args.user!r} in workspace {workspace!r} (shown only now):")
    print(secret)
    return 0


def cmd_tokens_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    found = auth.list_tokens(db, args.user)
    if args.json:
        emit_json(found)
        return 0
    for t in found:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        used = t["last_used_at"] or "never used"
        print(f"{t['id']}\t{t['name']}\t{t['user']}@{t['workspace']}\t{state}\t{used}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    auth.revoke_token(db, args.id, utcnow())
    print(f"Revoked token {args.id}: it stops working at once.")
    return 0


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
    password = argparse.ArgumentParser(add_help=False)
    password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (default: ask on the terminal)",
    )

    us = sub.add_parser("users", help="team mode: add, list or remove people who sign in")
    us_sub = us.add_subparsers(dest="action", required=True, metavar="ACTION")
    ua = us_sub.add_parser("add", parents=[common, password], help="add a user")
    ua.add_argument("name", metavar="NAME")
    ua.add_argument(
        "--member-of",
        action="append",
        metavar="WORKSPACE",
        help="a workspace the user belongs to (repeat for several)",
    )
    ua.set_defaults(func=cmd_users_add)
    up = us_sub.add_parser(
        "password", parents=[common, password], help="set a user's password (ends their sessions)"
    )
    up.add_argument("name", metavar="NAME")
    up.set_defaults(func=cmd_users_password)
    ul = us_sub.add_parser("list", parents=[common, as_json], help="list users and workspaces")
    ul.set_defaults(func=cmd_users_list)
    ur = us_sub.add_parser("remove", parents=[common], help="remove a user, sessions and tokens")
    ur.add_argument("name", metavar="NAME")
    ur.set_defaults(func=cmd_users_remove)

    ws = sub.add_parser("workspaces", help="team mode: add or list workspaces, grant membership")
    ws_sub = ws.add_subparsers(dest="action", required=True, metavar="ACTION")
    wa = ws_sub.add_parser("add", parents=[common], help="add a workspace")
    wa.add_argument("name", metavar="NAME")
    wa.set_defaults(func=cmd_workspaces_add)
    wl = ws_sub.add_parser("list", parents=[common, as_json], help="list workspaces and members")
    wl.set_defaults(func=cmd_workspaces_list)
    wg = ws_sub.add_parser("grant", parents=[common], help="make a user a member of a workspace")
    wg.add_argument("name", metavar="WORKSPACE")
    wg.add_argument("user", metavar="USER")
    wg.set_defaults(func=cmd_workspaces_grant)
    wr = ws_sub.add_parser("revoke", parents=[common], help="take a user out of a workspace")
    wr.add_argument("name", metavar="WORKSPACE")
    wr.add_argument("user", metavar="USER")
    wr.set_defaults(func=cmd_workspaces_revoke)

    tk = sub.add_parser("tokens", help="team mode: API tokens (Authorization: Bearer)")
    tk_sub = tk.add_subparsers(dest="action", required=True, metavar="ACTION")
    tc = tk_sub.add_parser(
        "create",
        parents=[common, as_json],
        help="create a token for a user in --workspace (shown once)",
    )
    tc.add_argument("--user", required=True, metavar="USER")
    tc.add_argument("--name", required=True, metavar="NAME", help="what the token is for")
    tc.set_defaults(func=cmd_tokens_create)
    tl = tk_sub.add_parser("list", parents=[common, as_json], help="list tokens (never secrets)")
    tl.add_argument("--user", metavar="USER", help="only this user's")
    tl.set_defaults(func=cmd_tokens_list)
    tr = tk_sub.add_parser("revoke", parents=[common], help="revoke a token")
    tr.add_argument("id", type=int, metavar="ID")
    tr.set_defaults(func=cmd_tokens_revoke)
