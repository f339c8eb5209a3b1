"""``python -m segflow.activation.fake_tiktok``: serve a fake TikTok until SIGTERM or Ctrl-C.

Prints its base URL on the first line, then one JSON line with the
advertiser, the access token and the audiences it holds; on exit one JSON
line with the requests served and each audience's size.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import threading

from segflow.activation.fake_tiktok.server import FakeTikTok
from segflow.activation.fake_tiktok.state import CALCULATE_TYPES, EMAIL_SHA256

DEFAULT_ADVERTISER = "7000000000000000001"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segflow.activation.fake_tiktok",
        description="A local fake of TikTok's Business API customer-file audiences.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    parser.add_argument(
        "--advertiser", default=DEFAULT_ADVERTISER, help=f"advertiser id ({DEFAULT_ADVERTISER})"
    )
    parser.add_argument(
        "--token", default=None, help="the access token to accept (default: a random one)"
    )
    parser.add_argument(
        "--audience",
        action="append",
        default=[],
        choices=sorted(CALCULATE_TYPES),
        metavar="CALCULATE_TYPE",
        help="create an empty audience of this type (repeatable; default one EMAIL_SHA256)",
    )
    parser.add_argument("--qps", type=int, default=10, help="requests a second per token (10)")
    parser.add_argument(
        "--min-audience-size",
        type=int,
        default=1000,
        help="fewest ids an audience may hold after an update (TikTok: 1000)",
    )
    args = parser.parse_args(argv)
    if not args.advertiser.isdigit():
        parser.error("--advertiser must be digits")
    token = args.token or secrets.token_hex(20)
    fake = FakeTikTok(port=args.port, qps=args.qps, min_audience_size=args.min_audience_size)
    fake.add_token(token, [args.advertiser])
    audiences = {
        fake.add_audience(args.advertiser, calculate_type=kind): kind
        for kind in (args.audience or [EMAIL_SHA256])
    }
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fake.start()
    print(f"fake TikTok Business API listening on {fake.base_url}", flush=True)
    print(
        json.dumps(
            {"advertiser_id": args.advertiser, "access_token": token, "audiences": audiences}
        ),
        flush=True,
    )
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    sizes = {a: len(fake.members(a)) for a in audiences}
    fake.stop()
    print(json.dumps({"requests": len(fake.received), "audiences": sizes}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
