"""``python -m segflow.activation.fake``: serve a fake Data Manager API until SIGTERM or Ctrl-C.

Prints its address on the first line, then one JSON line with the accounts
and lists it holds (and the OAuth client, with ``--require-auth``); on exit
one JSON line with the requests served and each list's size.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from segflow.activation.fake.server import FakeDataManager

DEFAULT_ACCOUNT = "1234567890"
DEFAULT_LIST = "7001"


def _account(text: str) -> tuple[str, list[str]]:
    account, _, managers = text.partition(":")
    if not account.isdigit() or not all(m.isdigit() for m in managers.split(",") if m):
        raise argparse.ArgumentTypeError(f"expected ACCOUNT[:MANAGER,...] in digits: {text!r}")
    return account, [m for m in managers.split(",") if m]


def _list(text: str) -> tuple[str, str]:
    account, sep, list_id = text.partition(":")
    if not sep or not account.isdigit() or not list_id.isdigit():
        raise argparse.ArgumentTypeError(f"expected ACCOUNT:LIST_ID in digits: {text!r}")
    return account, list_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segflow.activation.fake",
        description="A local fake of Google's Data Manager API (Customer Match).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument(
        "--account",
        type=_account,
        action="append",
        default=[],
        metavar="ACCOUNT[:MANAGER,...]",
        help="an operating account and its manager accounts (repeatable)",
    )
    parser.add_argument(
        "--list",
        type=_list,
        action="append",
        default=[],
        metavar="ACCOUNT:LIST_ID",
        help="a Customer Match list of an account (repeatable; creates the account if needed). "
        f"Without --account or --list: account {DEFAULT_ACCOUNT} with list {DEFAULT_LIST}",
    )
    parser.add_argument("--per-minute", type=int, default=300, help="requests a minute (300)")
    parser.add_argument("--per-day", type=int, default=100_000, help="requests a day (100,000)")
    parser.add_argument(
        "--processing-polls",
        type=int,
        default=1,
        help="RetrieveRequestStatus answers PROCESSING this many times per request (1)",
    )
    parser.add_argument(
        "--require-auth",
        action="store_true",
        help="every call needs a Bearer token from the fake's OAuth endpoint",
    )
    args = parser.parse_args(argv)
    accounts = args.account
    lists = args.list
    if not accounts and not lists:
        lists = [(DEFAULT_ACCOUNT, DEFAULT_LIST)]
    fake = FakeDataManager(
        port=args.port,
        per_minute=args.per_minute,
        per_day=args.per_day,
        processing_polls=args.processing_polls,
        require_auth=args.require_auth,
    )
    for account, managers in accounts:
        fake.add_account(account, managers)
    for account, list_id in lists:
        fake.add_account(account)
        fake.add_list(account, list_id)
    # Before the address is out: a SIGTERM right after it must still report.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fake.start()
    print(f"fake Data Manager API listening on {fake.address}", flush=True)
    setup: dict[str, object] = {
        "accounts": sorted({a for a, _ in accounts} | {a for a, _ in lists}),
        "lists": {list_id: account for account, list_id in lists},
    }
    if args.require_auth:
        client_id, client_secret, refresh_token = fake.oauth_client()
        setup["oauth"] = {
            "token_uri": fake.token_uri,
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
    print(json.dumps(setup), flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sizes = fake.list_sizes()
    fake.stop()
    print(json.dumps({"requests": len(fake.received), "lists": sizes}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
