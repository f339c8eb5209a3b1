"""``python -m segflow.activation.fake_meta``: serve a fake Graph API until SIGTERM or Ctrl-C.

Prints the Graph root URL on the first line (for ``FacebookSession.GRAPH``),
then one JSON line with the token, accounts and audiences it holds; on exit
one JSON line with the requests served and each audience's size.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from segflow.activation.fake_meta.server import DEFAULT_CALLS_PER_HOUR, FakeMeta


def _digits(text: str) -> str:
    digits = text.removeprefix("act_")
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"expected an ad account id in digits: {text!r}")
    return digits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segflow.activation.fake_meta",
        description="A local fake of Meta's Graph API (Custom Audiences).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument("--token", default="fake-meta-token", help="the access token it accepts")
    parser.add_argument(
        "--account",
        type=_digits,
        action="append",
        default=[],
        help="an ad account the token may use (repeatable; default 123)",
    )
    parser.add_argument(
        "--audience",
        action="store_true",
        help="create one customer-file audience in each account",
    )
    parser.add_argument(
        "--no-tos",
        action="store_true",
        help="the accounts have not accepted the Custom Audience terms",
    )
    parser.add_argument(
        "--calls-per-hour",
        type=int,
        default=DEFAULT_CALLS_PER_HOUR,
        help=f"custom-audience calls per ad account per hour ({DEFAULT_CALLS_PER_HOUR})",
    )
    args = parser.parse_args(argv)
    accounts = args.account or ["123"]
    fake = FakeMeta(port=args.port, calls_per_hour=args.calls_per_hour)
    for account in accounts:
        fake.add_account(account, tos_accepted=not args.no_tos)
    fake.add_token(args.token, accounts=accounts)
    audiences = {account: fake.add_audience(account) for account in accounts if args.audience}
    # Before the URL is out: a SIGTERM right after it must still report.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fake.start()
    print(fake.url, flush=True)
    print(
        json.dumps(
            {
                "token": args.token,
                "accounts": [f"act_{a}" for a in accounts],
                "audiences": audiences,
            }
        ),
        flush=True,
    )
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sizes = {a: len(fake.entries(a)) for a in fake.audiences()}
    fake.stop()
    print(json.dumps({"requests": fake.request_count, "audiences": sizes}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
