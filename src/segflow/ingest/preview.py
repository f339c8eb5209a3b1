"""What a dry run tells beyond an import's counts: the file as it was read.

For the import step of the pages and for ``segflow import --dry-run``: the
columns that could be the key (with whether they are unique and filled),
each column's type with a few example values, and the empty-like tokens
(``N/A``, ``NULL``, ...) each column holds. All of it is computed in SQL from
the staged rows, whatever parsed the file, and only for dry runs: a real
import pays nothing for it.

Also the quick look: :func:`sample` cuts a stream's first bytes at a row
boundary, so that a preview reads the first N MB of a large file.
"""

from __future__ import annotations

import codecs
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from segflow import colformats, coltypes
from segflow.db import records
from segflow.db.records import ident
from segflow.errors import ImportFailed, InvalidInput
from segflow.ingest.options import DEFAULT_KEYS, MB, normalise_name
from segflow.ingest.staging import RejectLog, Staging

#: The largest sample (``ImportOptions.sample_bytes``), which is held in memory.
MAX_SAMPLE_BYTES = 256 * MB


def sample_bytes_of(megabytes: float) -> int:
    """A sample's size in bytes, given in MB (the CLI's ``--sample-mb``, the API's
    ``sample_mb``): more than 0 and at most ``MAX_SAMPLE_BYTES``."""
    if not math.isfinite(megabytes) or not 0 < megabytes <= MAX_SAMPLE_BYTES // MB:
        raise InvalidInput(
            f"a sample is more than 0 and at most {MAX_SAMPLE_BYTES // MB:,} MB, got {megabytes}"
        )
    return max(1, int(megabytes * MB))


#: Example values shown for each column.
EXAMPLES = 3
#: Rows looked at, in file order, for a column's examples.
_EXAMPLE_ROWS = 200
#: Rows in which a column not named like a key must have no repeat to be
#: counted in full: a repeat there already rules it out, at far less cost.
_FIRST_ROWS = 1_000
#: Columns asked about in one statement (a statement's columns are limited).
_CHUNK = 100
_KEY_NAMES = {normalise_name(k) for k in DEFAULT_KEYS}
# "Order ID", "order_id", "OrderId", "ORDER-ID": a name ending in an id word.
_ID_NAME = re.compile(r"(?:^|[ _\-])(?i:id)$|[a-z](?:Id|ID)$")


def named_like_key(name: str) -> bool:
    """Whether a column's name makes it look like a key (an email, an id)."""
    return normalise_name(name) in _KEY_NAMES or bool(_ID_NAME.search(name.strip()))


@dataclass
class _Counts:
    filled: int = 0
    distinct: int | None = None


def describe(
    staging: Staging, header: Sequence[str], types: Sequence[str], rejects: RejectLog
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The key candidates, and per column name its examples and empty-like tokens.

    ``types``: the file's column types as the checks found them (or their
    format states, ``segflow.colformats``).

    To be called before duplicate keys are removed, so that the staged rows
    are all the file's accepted rows. Rows rejected for an empty key were
    never staged: the reject log counts them for the key column.
    """
    conn, table = staging.conn, ident(staging.rows)
    rows = int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one())  # noqa: S608
    tokens: list[dict[str, int]] = [{} for _ in header]
    for i, token, times in _empty_like_tokens(staging, len(header)):
        tokens[i][token] = times
    counts = [_Counts() for _ in header]
    for chunk in _chunks(range(len(header))):
        # Not blank, less the empty-like cells just counted: one LOWER a cell saved.
        present = ", ".join(f"COUNT(NULLIF(TRIM(s{i}), ''))" for i in chunk)
        found = conn.exec_driver_sql(f"SELECT {present} FROM {table}").one()  # noqa: S608
        for i, value in zip(chunk, found, strict=True):
            counts[i].filled = int(value) - sum(tokens[i].values())
    named = {i for i, name in enumerate(header) if named_like_key(name) or i == staging.key_index}
    # Other columns are candidates only when unique: full of text or whole
    # numbers (see ``may_be_key``) without a repeat among the first rows.
    others = [
        i
        for i in range(len(header))
        if i not in named
        and rows
        and counts[i].filled == rows
        and coltypes.column_type(colformats.resolve(types[i]).kind)
        in (coltypes.TEXT, coltypes.INTEGER)
    ]
    wanted = sorted(named | set(_unique_at_first(staging, others)))
    # Distinct values where they can make a candidate: a full count each.
    for chunk in _chunks(wanted):
        distinct = ", ".join(f"COUNT(DISTINCT CASE WHEN {_holds(i)} THEN s{i} END)" for i in chunk)
        found = conn.exec_driver_sql(f"SELECT {distinct} FROM {table}").one()  # noqa: S608
        for i, value in zip(chunk, found, strict=True):
            counts[i].distinct = int(value)
    empty_keys = rejects.empty_keys
    candidates = []
    for i in wanted:
        name, count = header[i], counts[i]
        assert count.distinct is not None
        empty = rows - count.filled + (empty_keys if i == staging.key_index else 0)
        duplicates = count.filled - count.distinct
        if not (named_like_key(name) or i == staging.key_index or duplicates == 0):
            continue
        candidates.append(
            {
                "column": name,
                "chosen": i == staging.key_index,
                "named_like_key": named_like_key(name),
                "unique": rows > 0 and empty == 0 and duplicates == 0,
                "empty": empty,
                "duplicates": duplicates,
            }
        )
    columns = {
        name: {
            "examples": _examples(staging, i),
            "empty": rows - counts[i].filled,
            "empty_like": tokens[i],
        }
        for i, name in enumerate(header)
    }
    return candidates, columns


def guess_key(header: Sequence[str]) -> int:
    """The column a preview takes for the key when none was given or found:
    the first named like one (``Order ID``), else the first."""
    return next((i for i, name in enumerate(header) if named_like_key(name)), 0)


def may_be_key(candidate: dict[str, Any], kind: str) -> bool:
    """Whether a candidate stays one once its column's type is known: a unique
    column of numbers with decimals, dates or flags is unique by chance."""
    return (
        candidate["chosen"]
        or candidate["named_like_key"]
        or kind in (coltypes.TEXT, coltypes.INTEGER)
    )


def _holds(index: int) -> str:
    """SQL true where a staged cell holds a value: not blank, not empty-like."""
    return f"NOT ({records.is_empty_like_sql(f's{int(index)}')})"


def _unique_at_first(staging: Staging, columns: Sequence[int]) -> list[int]:
    """The columns without a repeated value among the first ``_FIRST_ROWS`` rows."""
    out: list[int] = []
    for chunk in _chunks(columns):
        # Empty cells are no repeats (Arrow stages them as NULL, segflow's reader as '').
        repeats = ", ".join(
            f"COUNT(NULLIF(s{i}, '')) - COUNT(DISTINCT NULLIF(s{i}, ''))" for i in chunk
        )
        found = staging.conn.exec_driver_sql(
            f"SELECT {repeats} FROM (SELECT * FROM {ident(staging.rows)} "  # noqa: S608
            f"ORDER BY n LIMIT {_FIRST_ROWS}) first_rows"
        ).one()
        out.extend(i for i, value in zip(chunk, found, strict=True) if not value)
    return out


def _chunks(items: Sequence[int]) -> list[Sequence[int]]:
    return [items[at : at + _CHUNK] for at in range(0, len(items), _CHUNK)]


def _examples(staging: Staging, index: int) -> list[str]:
    """The first distinct values of a column that hold something, in file order."""
    cell = f"s{int(index)}"
    found = staging.conn.exec_driver_sql(
        f"SELECT {cell} FROM {ident(staging.rows)} "  # noqa: S608 - generated
        f"WHERE NOT ({records.is_empty_like_sql(cell)}) ORDER BY n LIMIT {_EXAMPLE_ROWS}"
    ).scalars()
    return list(dict.fromkeys(str(v) for v in found))[:EXAMPLES]


def _empty_like_tokens(staging: Staging, ncols: int) -> list[tuple[int, str, int]]:
    """(column, token as written, count) for every empty-like token found, most frequent first."""
    words = records.empty_like_list()
    out: list[tuple[int, str, int]] = []
    for chunk in _chunks(range(ncols)):
        parts = [
            f"SELECT {i} AS c, TRIM(s{i}) AS token, COUNT(*) AS n "  # noqa: S608 - generated
            f"FROM {ident(staging.rows)} WHERE LOWER(TRIM(s{i})) IN ({words}) "
            f"GROUP BY TRIM(s{i})"
            for i in chunk
        ]
        found = staging.conn.exec_driver_sql(" UNION ALL ".join(parts)).all()
        out.extend((int(c), str(token), int(n)) for c, token, n in found)
    return sorted(out, key=lambda t: (t[0], -t[2], t[1]))


# ---------------------------------------------------------------- the quick look


@dataclass(frozen=True)
class Sample:
    """How much of a file a preview read."""

    bytes: int
    #: Whether that was the whole stream (it ended within the sample's size).
    whole: bool

    def as_dict(self, rows: int) -> dict[str, Any]:
        return {"bytes": self.bytes, "rows": rows, "whole_file": self.whole}


def sample(
    stream: BinaryIO, size: int, encoding: str, source: str, total: int | None = None
) -> tuple[BinaryIO, Sample] | None:
    """The stream's first ``size`` bytes, cut after the last whole record in them;
    None where the stream's ``total`` size (if known) is no more than ``size``.

    A line end counts as a record's end only outside quotes: where the
    quotes before it are even in number (a quote inside a quoted field is
    doubled). The sample is held in memory, hence ``MAX_SAMPLE_BYTES``; the
    stream is read no further than ``size`` bytes and one byte.
    """
    if not 1 <= size <= MAX_SAMPLE_BYTES:
        raise InvalidInput(
            f"a sample is from 1 byte to {MAX_SAMPLE_BYTES // MB:,} MB, got {size:,} bytes "
            "(without one, a dry run reads the whole file)"
        )
    if total is not None and total <= size:
        return None
    data = stream.read(size + 1)
    if len(data) <= size:
        return io.BytesIO(data), Sample(len(data), True)
    data = data[:size]
    cut = _record_end(data, encoding)
    if cut is None:
        raise ImportFailed(
            f"the first {size:,} bytes hold no whole line; read more of the file "
            "(a larger sample, or the whole file)",
            file=source,
        )
    return io.BytesIO(data[:cut]), Sample(cut, False)


def _units(data: bytes, encoding: str) -> tuple[bytes, bytes, bytes, int]:
    """How LF, CR and '"' are written in the file's encoding, and where text starts."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        name = "utf-8"  # the reader names the unknown encoding
    start = 0
    if name in ("utf-8", "utf-16") and data.startswith(codecs.BOM_UTF16_BE):
        name, start = "utf-16-be", 2
    elif name in ("utf-8", "utf-16") and data.startswith(codecs.BOM_UTF16_LE):
        name, start = "utf-16-le", 2
    elif name == "utf-16":
        name = "utf-16-le"  # no byte order mark: Python reads it little-endian
    try:
        return "\n".encode(name), "\r".encode(name), '"'.encode(name), start
    except (LookupError, UnicodeError):
        return b"\n", b"\r", b'"', start


def _record_end(data: bytes, encoding: str) -> int | None:
    """Where the last whole record in ``data`` ends (after its line end), else None."""
    lf, cr, quote, start = _units(data, encoding)
    end = lf if lf in data else cr  # old Mac files end lines with CR alone
    width = len(end)
    at = len(data)
    quotes, counted_to = 0, start  # the quotes in data[start:counted_to]
    while True:
        found = data.rfind(end, start, at)
        if found < 0:
            return None
        at = found + width - 1  # the next search looks before this one
        if (found - start) % width:
            continue  # not on a character's start
        if counted_to == start:
            quotes, counted_to = data.count(quote, start, found), found
        else:
            quotes, counted_to = quotes - data.count(quote, found, counted_to), found
        if quotes % 2 == 0:
            return found + width
