"""Which identifier codes each member of a link holds (``sf_link_hashes``).

Members of one list may share an email or a phone, and Google removes every
user a removed identifier matches. So a remove leaves out the codes another
wanted member still holds, found here by code instead of by reading every
member's ``sent``.

A row says member ``rid`` of the link holds the code whose 64-bit key
(:func:`identifiers.code_key`) is ``h``. The sync pass writes a member's rows
in the transaction that writes its ``sent``, before the request leaves, so
the table never misses a code of a wanted member's current set, which is
everything the list may hold for it that it does not mean to remove itself
(its ``stale`` sets are on their way out). Rows are dropped when the remove
of their member is acknowledged or the member leaves without one, and with
their link by a trigger on ``sf_links`` (no foreign key: checking one for
each row inserted cost PostgreSQL as much again as the insert).

A row may outlive its member's set: a request refused whole, or a
destination leaving validate-only mode, clears ``sent`` without coming here.
Such rows never protect anything, since every member a key finds is checked
against its ``sent`` (which also makes two codes sharing a key harmless); a
later add of the member writes over them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow.activation.among import among
from segflow.activation.identifiers import code_keys
from segflow.db.schema import link_hashes, link_members

#: Keys looked up a query (under SQLite's limit of bound parameters).
_KEYS_PER_QUERY = 5_000

Change = tuple[int, Sequence[str] | None, Sequence[str]]


def replace(conn: Connection, link_id: int, changes: Iterable[Change]) -> None:
    """Members' rows follow their new sets: ``(rid, old codes or None, new codes)``.

    Only the difference is written: nothing for a member re-sent as it was,
    and no delete for a member sent the first time.
    """
    gone: list[tuple[int, int]] = []
    new: list[tuple[int, int]] = []
    first: list[str] = []
    first_rids: list[int] = []
    for rid, old, codes in changes:
        if not old:
            # A member's codes are distinct (identifiers.encode).
            first += codes
            first_rids += [rid] * len(codes)
            continue
        before, after = set(old), set(codes)
        if before != after:
            gone += [(key, rid) for key in code_keys(before - after)]
            new += [(key, rid) for key in code_keys(after - before)]
    new += zip(code_keys(first), first_rids, strict=True)
    _delete(conn, link_id, gone)
    _insert(conn, link_id, new)


def forget(conn: Connection, link_id: int, members: Iterable[tuple[int, Sequence[str]]]) -> None:
    """Drop the rows of members whose sets the list no longer holds: ``(rid, codes)``."""
    _delete(conn, link_id, [(key, rid) for rid, codes in members for key in code_keys(set(codes))])


def forget_sent(conn: Connection, link_id: int, rids: Sequence[int]) -> None:
    """:func:`forget` for these members' current ``sent`` sets."""
    if not rids:
        return
    lm = link_members
    rows = conn.execute(
        sa.select(lm.c.rid, lm.c.sent).where(
            lm.c.link_id == link_id, among(conn, lm.c.rid, rids), lm.c.sent.is_not(None)
        )
    )
    forget(conn, link_id, [(rid, json.loads(sent)) for rid, sent in rows])


def holders(conn: Connection, link_id: int, codes: Iterable[str]) -> dict[str, set[int]]:
    """The wanted members of the link whose current ``sent`` holds each code.

    Codes no wanted member holds are left out.
    """
    lh, lm = link_hashes, link_members
    by_key: dict[int, list[str]] = {}
    unique = list(set(codes))
    for code, key in zip(unique, code_keys(unique), strict=True):
        by_key.setdefault(key, []).append(code)
    keys = sorted(by_key)
    out: dict[str, set[int]] = {}
    sets: dict[int, frozenset[str]] = {}
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        found = conn.execute(
            sa.select(lh.c.h, lh.c.rid, lm.c.sent)
            .join(lm, sa.and_(lm.c.link_id == lh.c.link_id, lm.c.rid == lh.c.rid))
            .where(
                lh.c.link_id == link_id,
                lh.c.h.in_(keys[start : start + _KEYS_PER_QUERY]),
                lm.c.want == 1,
                lm.c.sent.is_not(None),
            )
        )
        for key, rid, sent in found:
            held = sets.get(rid)
            if held is None:
                held = sets[rid] = frozenset(json.loads(sent))
            for code in by_key[key]:
                if code in held:
                    out.setdefault(code, set()).add(rid)
    return out


def _insert(conn: Connection, link_id: int, rows: list[tuple[int, int]]) -> None:
    if not rows:
        return
    rows.sort()  # in key order: one pass along the B-tree, not a random insert each
    # A row left over from a set cleared elsewhere may already be there.
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                "INSERT INTO sf_link_hashes (link_id, h, rid)"
                " SELECT :l, h, rid FROM unnest(CAST(:h AS BIGINT[]), CAST(:r AS BIGINT[]))"
                " AS t (h, rid) ON CONFLICT DO NOTHING"
            ),
            {"l": link_id, "h": [h for h, _ in rows], "r": [r for _, r in rows]},
        )
    else:
        # The driver's own executemany: no per-row parameter processing.
        conn.exec_driver_sql(
            "INSERT OR IGNORE INTO sf_link_hashes (link_id, h, rid) VALUES (?, ?, ?)",
            [(link_id, h, rid) for h, rid in rows],
        )


def _delete(conn: Connection, link_id: int, rows: list[tuple[int, int]]) -> None:
    if not rows:
        return
    rows.sort()
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text(
                "DELETE FROM sf_link_hashes WHERE link_id = :l AND (h, rid) IN"
                " (SELECT * FROM unnest(CAST(:h AS BIGINT[]), CAST(:r AS BIGINT[])))"
            ),
            {"l": link_id, "h": [h for h, _ in rows], "r": [r for _, r in rows]},
        )
    else:
        conn.exec_driver_sql(
            "DELETE FROM sf_link_hashes WHERE link_id = ? AND h = ? AND rid = ?",
            [(link_id, h, rid) for h, rid in rows],
        )
