"""Synthetic customer data: the demo dataset and the benchmarks' input.

Deterministic for a seed, realistic enough to segment: US customers with
emails (a share on gmail.com), phones in several formats, names, state,
country, zip (with leading zeros), lifetime spend, signup date and a
subscriber flag. A few rows are deliberately imperfect (a missing email, a
malformed phone) so the identifier-quality summary has something to say.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections.abc import Iterator
from typing import TextIO

HEADER = (
    "id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "state",
    "country",
    "zip",
    "lifetime_spend",
    "signup_date",
    "is_subscriber",
)

_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Chloé José Zoë Ana Wei Priya"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee O'Brien Nguyen Müller"
).split()
_STATES = ("CA", "CA", "CA", "TX", "TX", "NY", "NY", "FL", "WA", "IL", "MA", "OR", "CO", "GA")
# Area codes phonenumbers calls valid with any 555 number, so that only the
# deliberately malformed share of the demo's phones is invalid.
_AREA_CODES = (
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219,
    224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267,
    269, 270, 276, 281, 301, 302, 303, 304, 305,
)  # fmt: skip
_DOMAINS = ("gmail.com", "gmail.com", "yahoo.com", "outlook.com", "example.com", "icloud.com")


def rows(count: int, *, seed: int = 7, start_id: int = 1) -> Iterator[tuple[str, ...]]:
    rng = random.Random(seed)
    epoch = dt.date(2019, 1, 1).toordinal()
    for n in range(start_id, start_id + count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last}{n}".lower().replace("'", "")
        email = "" if rng.random() < 0.01 else f"{local}@{rng.choice(_DOMAINS)}"
        area = _AREA_CODES[rng.randint(201, 989) % len(_AREA_CODES)]  # the draws of old
        digits = f"{area}555{rng.randint(0, 9999):04d}"
        style = rng.random()
        if style < 0.4:
            phone = f"+1{digits}"
        elif style < 0.8:
            phone = f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
        elif style < 0.98:
            phone = f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
        else:
            phone = digits[:5]
        yield (
            str(n),
            email,
            phone,
            first,
            last,
            rng.choice(_STATES),
            "US",
            f"{rng.randint(501, 99950):05d}",
            f"{rng.expovariate(1 / 120):.2f}",
            dt.date.fromordinal(epoch + rng.randint(0, 2500)).isoformat(),
            "true" if rng.random() < 0.35 else "false",
        )


def write_csv(out: TextIO, count: int, *, seed: int = 7) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows(count, seed=seed))


def csv_bytes(count: int, *, seed: int = 7) -> bytes:
    buffer = io.StringIO()
    write_csv(buffer, count, seed=seed)
    return buffer.getvalue().encode()
