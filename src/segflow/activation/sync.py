"""The sync pass: send each link's pending adds and removes to its destination.

One pass claims every due link in turn. A claim is a lease on the link row
(``lease_owner``/``lease_until``, taken with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), so exactly one worker sends to a list at a time and a killed
worker's list is taken over once its lease runs out. For a claimed link:

1. members acknowledged more than ``resend_days`` ago become due again;
2. adds, then removes, in batches of at most 10,000 members: each batch's
   identifiers are computed from the current record values and written to
   ``sent`` in one transaction *before* the request leaves, then the request
   is sent with no transaction open, then the acknowledgement and a log row
   are written. A crash between sending and recording leaves the members
   pending, so they are sent again; list membership is a set, so that is
   harmless. Nothing is lost and nothing is held without being known;
3. a refused request is handled by what Google's answer names (see
   :func:`_LinkRun._deliver`): members it names are recorded as refused with
   Google's reason and the rest sent again in one request; an answer about
   the list, the accounts, terms, consent or credentials pauses the link
   with Google's reason; only a refusal that names nothing is split in
   halves, within a bound;
4. a transient failure ends the link's turn and schedules the next attempt
   with the retry policy; a used-up Google quota waits for the next minute
   or the next day (midnight Pacific time), as the answer says.

Before each request to Google the link takes a place in its Cloud project's
minute (:mod:`.pacing`); when the minute is full, the link's turn ends until
the next minute, which does not count as a failed attempt.

**Requests per batch.** A batch of n members costs one request when Google
takes it. A refusal naming members costs one more request for the rest, and
each further such answer removes at least one member: at most n + 1
requests, in practice 2. A refusal of a whole add batch naming nothing is
first told apart from a fault of the request: one member the list already
took is sent again alone (harmless: membership is a set). Refused too, the
answer is about the request and the link pauses after 2 requests. Taken, or
when the link has no such member yet, the batch is split breadth-first; with
no member to try, both halves of the first split refused with the same
answer pause the link after 3 requests. Otherwise splitting goes on while the
requests spent on the batch (named retries and the one member alone aside)
stay within ``2 * ceil(log2(n)) + 2`` (30 for 10,000: enough for one unnamed
bad member, 29 requests); past it the link pauses with Google's last answer.

Connections to Google are kept for the whole pass, or for as long as the
``connections`` the caller passes live (a worker's, across passes).
Time comes from the ``clock`` passed in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import outbox
from segflow.activation import held, outgoing, pacing
from segflow.activation.among import among
from segflow.activation.destinations import (
    Destination,
    destination_from_row,
    open_secret,
    stored_secret,
)
from segflow.activation.google.client import Connections
from segflow.activation.links import Link
from segflow.activation.mapping import mapping_for
from segflow.activation.platforms import build_sender, platform_for
from segflow.activation.retry import RetryPolicy
from segflow.activation.transport import (
    INGEST,
    REMOVE,
    LinkBroken,
    MembersRejected,
    OutMember,
    QuotaExhausted,
    RequestRejected,
    Sender,
    TransientError,
)
from segflow.config import Settings
from segflow.datasets import Dataset, load_dataset_by_id
from segflow.db.engine import Database
from segflow.db.schema import UTCDateTime, destinations, link_members, links, segments, sync_log
from segflow.errors import SegflowError

Clock = Callable[[], dt.datetime]
SenderFactory = Callable[[Destination, dict[str, Any] | None, Settings], Sender]


@dataclass
class LinkOutcome:
    link: Link
    added: int = 0
    removed: int = 0
    rejected: int = 0
    requests: int = 0
    #: Identifiers past Google's 10 a member, not sent (emails, phones, address kept in order).
    identifiers_left_out: int = 0
    error: str | None = None
    paused: str | None = None
    retry_at: dt.datetime | None = None
    #: Why the turn ended early without a failure (segflow's own request pace).
    deferred: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment": self.link.segment,
            "destination": self.link.destination,
            "added": self.added,
            "removed": self.removed,
            "rejected": self.rejected,
            "requests": self.requests,
            "identifiers_left_out": self.identifiers_left_out,
            "error": self.error,
            "paused": self.paused,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "deferred": self.deferred,
        }


@dataclass
class SyncReport:
    outcomes: list[LinkOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.error is None and o.paused is None for o in self.outcomes)


class _LeaseLost(Exception):
    pass


class _Paced(Exception):
    """The project's minute is full: wait until ``until``."""

    def __init__(self, until: dt.datetime, project: str) -> None:
        super().__init__(project)
        self.until = until
        self.project = project


@dataclass
class _Split:
    """How far splitting one batch on refusals that name nothing may go."""

    cap: int
    #: Who refused, for the messages: "Google", "Meta"...
    platform: str = "Google"
    spent: int = 0
    whole: str | None = None
    halves: list[str] = field(default_factory=list)
    last: str = ""

    def spend(self, size: int) -> None:
        if self.spent >= self.cap:
            raise LinkBroken(
                f"{self.platform} refused parts of a batch of {size} members without naming which, "
                f"{self.spent} requests in (the bound for this batch): {self.last}"
            )
        self.spent += 1

    def refund(self) -> None:
        self.spent -= 1

    def refused(self, depth: int, reason: str) -> None:
        self.last = reason
        if depth == 0:
            self.whole = reason
        elif depth == 1:
            self.halves.append(reason)
            if len(self.halves) == 2 and self.halves[0] == self.halves[1] == self.whole:
                # Both halves of the first split refused as the whole was:
                # the answer is about the request, whichever members it carries.
                raise LinkBroken(
                    f"{self.platform} refused the request whatever members it held: {reason}"
                )


def request_cap(members: int) -> int:
    """Requests one batch may spend on refusals that name nothing: ``2 * ceil(log2 n) + 2``."""
    return 2 * math.ceil(math.log2(max(members, 1))) + 2


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def sync(
    db: Database,
    settings: Settings,
    *,
    clock: Clock,
    owner: str | None = None,
    policy: RetryPolicy | None = None,
    rand: Callable[[], float] = random.random,
    senders: SenderFactory | None = None,
    link_ids: Sequence[int] | None = None,
    stop: Callable[[], bool] = lambda: False,
    connections: Connections | None = None,
) -> SyncReport:
    """One pass over every due link (or only ``link_ids``).

    ``stop`` is asked between batches; when it answers True the pass ends
    cleanly (what was not sent stays pending). ``connections``: the caller's
    pool of connections to Google, left open; without one the pass opens
    its own and closes it at the end. ``senders`` replaces the senders (the
    pool is then unused).
    """
    owner = owner or default_owner()
    policy = policy or RetryPolicy()
    report = SyncReport()
    seen: set[int] = set()
    own = Connections() if connections is None and senders is None else None
    if senders is None:
        pool = connections if connections is not None else own
        senders = functools.partial(build_sender, connections=pool)
    try:
        while not stop():
            claimed = _claim(db, clock(), owner, settings.lease_seconds, seen, link_ids)
            if claimed is None:
                return report
            seen.add(claimed.link.id)
            run = _LinkRun(db, settings, clock, owner, claimed, policy, rand, senders, stop)
            report.outcomes.append(run.run())
        return report
    finally:
        if own is not None:
            own.close()


@dataclass
class _Claim:
    link: Link
    destination: Destination
    #: Credentials as stored (encrypted); opened only by the run that uses them.
    secret: str | None
    dataset: Dataset
    attempts: int


def _claim(
    db: Database,
    now: dt.datetime,
    owner: str,
    lease_seconds: int,
    seen: set[int],
    only: Sequence[int] | None,
) -> _Claim | None:
    with db.write() as conn:
        query = (
            sa.select(links.c.id)
            .where(
                links.c.paused_reason.is_(None),
                sa.or_(links.c.next_attempt_at.is_(None), links.c.next_attempt_at <= now),
                sa.or_(links.c.lease_until.is_(None), links.c.lease_until < now),
            )
            .order_by(links.c.id)
            .limit(1)
        )
        if seen:
            query = query.where(links.c.id.not_in(seen))
        if only is not None:
            query = query.where(links.c.id.in_(list(only)))
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        link_id = conn.execute(query).scalar()
        if link_id is None:
            return None
        conn.execute(
            sa.update(links)
            .where(links.c.id == link_id)
            .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease_seconds))
        )
        row = conn.execute(
            sa.select(
                links,
                segments.c.name.label("segment_name"),
                segments.c.dataset_id,
                destinations.c.name.label("destination_name"),
            )
            .join(segments, segments.c.id == links.c.segment_id)
            .join(destinations, destinations.c.id == links.c.destination_id)
            .where(links.c.id == link_id)
        ).one()
        destination = destination_from_row(
            conn.execute(
                sa.select(destinations).where(destinations.c.id == row.destination_id)
            ).one()
        )
        dataset = load_dataset_by_id(conn, row.dataset_id)
        assert dataset is not None  # a segment's dataset cannot vanish under it
        return _Claim(
            link=Link(
                row.id, row.segment_id, row.segment_name, row.destination_id, row.destination_name
            ),
            destination=destination,
            secret=stored_secret(conn, row.destination_id),
            dataset=dataset,
            attempts=int(row.attempts),
        )


@dataclass
class _Batch:
    operation: str
    members: list[OutMember]
    #: Identifiers replaced by new ones: removed before ``members`` are added.
    stale: list[OutMember] = field(default_factory=list)


class _LinkRun:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock,
        owner: str,
        claim: _Claim,
        policy: RetryPolicy,
        rand: Callable[[], float],
        senders: SenderFactory,
        stop: Callable[[], bool],
    ) -> None:
        self.stop = stop
        self.db = db
        self.settings = settings
        self.clock = clock
        self.owner = owner
        self.claim = claim
        self.link_id = claim.link.id
        self.policy = policy
        self.rand = rand
        self.senders = senders
        self.outcome = LinkOutcome(claim.link)
        self.project: str | None = None
        self.platform = platform_for(claim.destination.kind)
        # Long enough for one batch's every request at the platform, each within
        # the timeout (a chosen SEGFLOW_SYNC_LEASE stands).
        self.lease_seconds = settings.sync_lease or max(
            settings.lease_seconds,
            settings.sync_timeout * (self.platform.requests_per_send + 1) + 30,
        )

    def run(self) -> LinkOutcome:
        sender: Sender | None = None
        try:
            try:
                secret = open_secret(self.claim.secret, self.settings.cipher)
            except SegflowError as exc:
                raise LinkBroken(str(exc)) from None
            sender = self.senders(self.claim.destination, secret, self.settings)
            # Senders to Google name the Cloud project they use; others are not paced.
            self.project = getattr(sender, "project", None)
            self._due_resends()
            for operation in (INGEST, REMOVE):
                while not self.stop():
                    batch = self._next_batch(operation)
                    if batch is None:
                        break
                    if batch.stale:
                        self._deliver(sender, _Batch(REMOVE, batch.stale), replaced=True)
                    if batch.members:
                        self._deliver(sender, batch)
            self._finish()
        except TransientError as exc:
            self._retry_later(exc)
        except LinkBroken as exc:
            self._pause(str(exc))
        except _Paced as exc:
            self._wait_for_pace(exc)
        except _LeaseLost:
            self.outcome.error = "another worker took over this link (lease expired)"
        finally:
            if sender is not None:
                sender.close()
        return self.outcome

    # -- leases and link state

    def _hold(self, conn: Connection, now: dt.datetime) -> None:
        """Renew our lease, or stop if it passed to another worker."""
        renewed = conn.execute(
            sa.update(links)
            .where(links.c.id == self.link_id, links.c.lease_owner == self.owner)
            .values(lease_until=now + dt.timedelta(seconds=self.lease_seconds))
        )
        if renewed.rowcount != 1:
            raise _LeaseLost

    def _release(self, conn: Connection, **values: Any) -> None:
        conn.execute(
            sa.update(links)
            .where(links.c.id == self.link_id, links.c.lease_owner == self.owner)
            .values(lease_owner=None, lease_until=None, **values)
        )

    def _finish(self) -> None:
        with self.db.write() as conn:
            self._release(conn, attempts=0, next_attempt_at=None)

    def _retry_later(self, exc: TransientError) -> None:
        now = self.clock()
        attempts = self.claim.attempts + 1
        server_delay = exc.retry_after
        if exc.unanswered:
            # The platform may still apply the request it did not answer; were
            # the batch sent again (its members' sets changed meanwhile) before
            # that, a late remove could take out what the new request added.
            server_delay = max(server_delay or 0.0, float(self.settings.sync_timeout))
        if isinstance(exc, QuotaExhausted):
            # Google's quota refills at the next minute or at midnight Pacific
            # time: trying sooner only spends more of it.
            refill = pacing.next_quota_day(now) if exc.window == "day" else pacing.next_minute(now)
            server_delay = max(server_delay or 0.0, (refill - now).total_seconds())
        delay = self.policy.delay(attempts, self.rand(), server_delay)
        retry_at = now + dt.timedelta(seconds=delay)
        message = str(exc)
        if isinstance(exc, QuotaExhausted):
            project = f" (Google Cloud project {self.project})" if self.project else ""
            message = (
                f"Google's per-{exc.window} request quota{project} is used up; "
                f"next attempt at {_shown(retry_at)}"
            )
        with self.db.write() as conn:
            self._release(
                conn,
                attempts=attempts,
                next_attempt_at=retry_at,
                last_error=message,
                last_error_at=now,
            )
        self.outcome.error = message
        self.outcome.retry_at = retry_at

    def _wait_for_pace(self, paced: _Paced) -> None:
        """segflow's own pace is reached: wait for the next minute, not a failed attempt."""
        with self.db.write() as conn:
            self._release(conn, next_attempt_at=paced.until)
        self.outcome.retry_at = paced.until
        self.outcome.deferred = (
            f"{self.settings.google_requests_per_minute} requests this minute for Google Cloud "
            f"project {paced.project} (SEGFLOW_GOOGLE_REQUESTS_PER_MINUTE); "
            f"next attempt at {_shown(paced.until)}"
        )

    def _pause(self, reason: str) -> None:
        now = self.clock()
        with self.db.write() as conn:
            self._release(conn, paused_reason=reason, last_error=reason, last_error_at=now)
        self.outcome.paused = reason

    def _log(
        self,
        conn: Connection,
        operation: str,
        count: int,
        outcome: str,
        started: float,
        request_id: str | None = None,
        error: str | None = None,
        warnings: Sequence[str] = (),
    ) -> None:
        conn.execute(
            sa.insert(sync_log).values(
                link_id=self.link_id,
                at=self.clock(),
                operation=operation,
                member_count=count,
                request_id=request_id,
                outcome=outcome,
                error=error,
                duration_ms=int((time.monotonic() - started) * 1000),
                warnings=json.dumps(list(warnings)) if warnings else None,
            )
        )

    # -- batches

    def _due_resends(self) -> None:
        now = self.clock()
        cutoff = now - dt.timedelta(days=self.settings.resend_days)
        lm = link_members
        with self.db.write() as conn:
            self._hold(conn, now)
            conn.execute(
                sa.update(lm)
                .where(
                    lm.c.link_id == self.link_id,
                    lm.c.have == 1,
                    lm.c.acked_at < cutoff,
                    lm.c.want == 1,
                    lm.c.pending == 0,
                )
                .values(pending=1)
            )

    def _next_batch(self, operation: str) -> _Batch | None:
        """Pick and prepare the next batch; None when nothing of this kind is due."""
        lm = link_members
        want = 1 if operation == INGEST else 0
        while True:
            with self.db.write() as conn:
                self._hold(conn, self.clock())
                query = (
                    sa.select(
                        lm.c.rid, lm.c.sent, lm.c.have, lm.c.acked_at, lm.c.stale, lm.c.sent_consent
                    )
                    .where(lm.c.link_id == self.link_id, lm.c.pending == 1, lm.c.want == want)
                    .order_by(lm.c.rid)
                    .limit(min(self.settings.sync_batch, self.platform.batch_size))
                )
                if self.db.is_postgres:
                    # Holds these rows against the engine until `sent` is
                    # written, so an exit cannot forget a member being added.
                    query = query.with_for_update()
                rows = conn.execute(query).all()
                if not rows:
                    return None
                stale: list[OutMember] = []
                if operation == INGEST:
                    members, stale = self._prepare_adds(conn, rows)
                else:
                    members = self._prepare_removes(conn, rows)
            if members or stale:
                return _Batch(operation, members, stale)
            # Every row was settled without a request (no identifiers, nothing
            # ever sent, or identifiers unchanged); look again.

    def _prepare_adds(
        self, conn: Connection, due: Sequence[sa.Row[Any]]
    ) -> tuple[list[OutMember], list[OutMember]]:
        """Identifiers for due members, written to ``sent`` before anything is sent.

        Returns the members to add and the identifiers to remove first: when
        a held member's identifiers changed, the old ones (kept in ``stale``
        until their remove is acknowledged) must go before the new ones come,
        or a remove that names a shared email would take the new entry too.
        """
        dataset = self.claim.dataset
        mapping, _ = mapping_for(conn, dataset)
        encoder = self.platform.encoder(
            self.claim.destination.config, [c.name for c in dataset.columns], mapping
        )
        mapped, by_rid = outgoing.read_records(
            conn, dataset, mapping, [d.rid for d in due], encoder.columns
        )
        recent = self.clock() - dt.timedelta(days=self.settings.resend_days)
        plan = outgoing.plan_adds(
            due, by_rid, mapped, mapping, recent, encoder, sends_consent=self.platform.sends_consent
        )
        lm = link_members
        if plan.sent:
            self._write_sent(conn, plan.sent, due)
        if plan.members:
            old = {d.rid: d.sent for d in due if d.sent}
            held.replace(
                conn,
                self.link_id,
                [
                    (m.rid, json.loads(old[m.rid]) if m.rid in old else None, m.codes)
                    for m in plan.members
                ],
            )
        if plan.withdrawn:
            # Still pending: refused for good once the remove of what the list
            # may hold is answered (the next look at them finds nothing held).
            held.forget_sent(conn, self.link_id, [w["r"] for w in plan.withdrawn])
            conn.execute(
                sa.update(lm)
                .where(lm.c.link_id == self.link_id, lm.c.rid == sa.bindparam("r"))
                .values(
                    sent=None, stale=sa.bindparam("g"), have=0, rejected=sa.bindparam("reason")
                ),
                plan.withdrawn,
            )
        stale = plan.stale
        if stale:
            stale = self._without_shared(conn, stale)
            emptied = {m.rid for m in plan.stale} - {m.rid for m in stale}
            if emptied:
                # Nothing of their old sets is left to remove.
                conn.execute(
                    sa.update(lm)
                    .where(lm.c.link_id == self.link_id, among(conn, lm.c.rid, emptied))
                    .values(stale=None)
                )
        self.outcome.identifiers_left_out += plan.capped.identifiers
        if plan.settled:
            conn.execute(
                sa.update(lm)
                .where(lm.c.link_id == self.link_id, among(conn, lm.c.rid, plan.settled))
                .values(pending=0)
            )
        if plan.refused:
            conn.execute(
                sa.update(lm)
                .where(lm.c.link_id == self.link_id, lm.c.rid == sa.bindparam("r"))
                .values(rejected=sa.bindparam("reason"), pending=0),
                plan.refused,
            )
            self.outcome.rejected += len(plan.refused)
        return plan.members, stale

    def _write_sent(
        self, conn: Connection, sent: Sequence[dict[str, Any]], due: Sequence[sa.Row[Any]]
    ) -> None:
        """Write ``sent``/``stale``/``have`` (keyed s, g, h) of members ``r``, as one batch.

        The driver's own batch (SQLite) or one statement over arrays
        (PostgreSQL): a statement per row through SQLAlchemy costs as much as
        hashing the identifiers. ``have`` is written only where it changes,
        since writing it moves the member in an index.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(
                sa.text(
                    "UPDATE sf_link_members AS m SET sent = t.s, stale = t.g, norm_version = :v,"
                    " sent_consent = t.c FROM unnest(CAST(:r AS BIGINT[]), CAST(:s AS TEXT[]),"
                    " CAST(:g AS TEXT[]), CAST(:c AS TEXT[])) AS t (r, s, g, c)"
                    # The ids again, as a condition on the key: without it the
                    # planner may hash the whole link's members to find these.
                    " WHERE m.link_id = :l AND m.rid = ANY(CAST(:r AS BIGINT[])) AND m.rid = t.r"
                ),
                {
                    "l": self.link_id,
                    "v": self.platform.normalisation_version,
                    **{k: [row[k] for row in sent] for k in ("r", "s", "g", "c")},
                },
            )
        else:
            conn.exec_driver_sql(
                "UPDATE sf_link_members SET sent = ?, stale = ?, norm_version = ?, sent_consent = ?"
                " WHERE link_id = ? AND rid = ?",
                [
                    (
                        row["s"],
                        row["g"],
                        self.platform.normalisation_version,
                        row["c"],
                        self.link_id,
                        row["r"],
                    )
                    for row in sent
                ],
            )
        had = {d.rid: d.have for d in due}
        changed = [row for row in sent if row["h"] != had[row["r"]]]
        if changed:
            lm = link_members
            conn.execute(
                sa.update(lm)
                .where(lm.c.link_id == self.link_id, lm.c.rid == sa.bindparam("r"))
                .values(have=sa.bindparam("h")),
                [{"r": row["r"], "h": row["h"]} for row in changed],
            )

    def _without_shared(self, conn: Connection, sets: Sequence[OutMember]) -> list[OutMember]:
        """``sets`` without the codes another wanted member of the link holds; emptied sets dropped.

        Google removes every user a removed identifier matches, so removing
        an email two members share would take the other one's match too. A
        member's own codes stay in its sets: a replaced set is removed whole
        just before the new one is added.
        """
        holders = held.holders(conn, self.link_id, (c for m in sets for c in m.codes))
        if not holders:
            return list(sets)
        out = []
        for member in sets:
            kept = tuple(c for c in member.codes if not holders.get(c, set()) - {member.rid})
            if kept:
                out.append(OutMember(member.rid, kept, member.consent))
        return out

    def _prepare_removes(self, conn: Connection, rows: Sequence[sa.Row[Any]]) -> list[OutMember]:
        lm = link_members
        never_sent = [r.rid for r in rows if not r.sent and not r.stale]
        out: list[OutMember] = []
        for r in rows:
            sets: list[list[str]] = json.loads(r.stale) if r.stale else []
            if r.sent:
                sets.append(json.loads(r.sent))
            out.extend(OutMember(r.rid, tuple(codes)) for codes in sets)
        if out:
            before = {m.rid for m in out}
            out = self._without_shared(conn, out)
            # Everything they hold is held by wanted members too: the list
            # keeps those, and these members leave without a request.
            never_sent.extend(before - {m.rid for m in out})
        if never_sent:
            held.forget_sent(conn, self.link_id, never_sent)
            conn.execute(
                sa.delete(lm).where(lm.c.link_id == self.link_id, among(conn, lm.c.rid, never_sent))
            )
        leaving = {m.rid for m in out}
        going = [r.rid for r in rows if r.have == 1 and r.rid in leaving]
        if going:
            # From the moment the remove may leave, the list may no longer hold
            # them: were its acknowledgement lost and the member to re-enter,
            # `have` = 1 would settle the re-entry without an add.
            conn.execute(
                sa.update(lm)
                .where(lm.c.link_id == self.link_id, among(conn, lm.c.rid, going))
                .values(have=0)
            )
        return out

    # -- delivery

    def _deliver(self, sender: Sender, batch: _Batch, *, replaced: bool = False) -> None:
        """Send one batch, handling refusals by what they name (bounds: module docstring)."""
        members = batch.members
        split = _Split(request_cap(len(members)), self.platform.name)
        # (part, splits deep); breadth-first, so both halves of the first
        # split are tried before either is split again.
        queue: deque[tuple[list[OutMember], int]] = deque([(members, 0)])
        first_split: list[tuple[list[OutMember], dict[int, str], str, float]] = []
        while queue:
            part, depth = queue.popleft()
            split.spend(len(members))
            self._take_pace()
            started = time.monotonic()
            try:
                self.outcome.requests += 1
                request_id = sender.send(batch.operation, part)
            except MembersRejected as exc:
                named = {i: r for i, r in exc.reasons.items() if 0 <= i < len(part)}
                if named:
                    self._rejected(batch.operation, part, named, str(exc), started, replaced)
                    rest = [m for i, m in enumerate(part) if i not in named]
                    if rest:
                        # Outside the bound: it has one member fewer at least.
                        split.refund()
                        queue.appendleft((rest, depth))
                    continue
                unnamed: Exception = exc
            except RequestRejected as exc:
                unnamed = exc
            except (TransientError, LinkBroken) as exc:
                outcome = "retry" if isinstance(exc, TransientError) else "paused"
                with self.db.write() as conn:
                    self._log(conn, batch.operation, len(part), outcome, started, error=str(exc))
                raise
            else:
                # A member leaving with several identifier sets (old ones and
                # its last) is done only once every set's remove is answered.
                queued = frozenset(m.rid for waiting, _ in queue for m in waiting)
                self._acknowledge(
                    batch.operation, part, request_id, started, replaced=replaced, queued=queued
                )
                continue
            reason = str(unnamed)
            alone = {0: reason} if len(part) == 1 else {}
            if depth == 0:
                self._rejected(batch.operation, part, {}, reason, started, replaced)
                split.refused(depth, reason)
                if batch.operation == INGEST and not replaced and self._probe(sender):
                    # A member Google took went through alone: the fault is in
                    # this batch's members, even if both halves fail alike.
                    split.whole = None
                if alone:
                    self._rejected(
                        batch.operation, part, alone, reason, started, replaced, log=False
                    )
            elif depth == 1:
                # Held until the other half has answered: were both refused
                # as the whole was, the fault is the request's, and a member
                # alone in a half must not be recorded as refused.
                first_split.append((part, alone, reason, started))
                split.refused(depth, reason)
            else:
                self._rejected(batch.operation, part, alone, reason, started, replaced)
                split.refused(depth, reason)
            if len(part) > 1:
                middle = len(part) // 2
                queue.extend(((part[:middle], depth + 1), (part[middle:], depth + 1)))
        for part, alone, reason, started in first_split:
            self._rejected(batch.operation, part, alone, reason, started, replaced)

    def _probe(self, sender: Sender) -> bool:
        """Send alone one member the list took before; True when Google takes it again.

        A whole batch refused naming nothing is either the request's fault
        or some members'. A member Google accepted, re-sent as it was (adding
        a member twice changes nothing), tells them apart in one request:
        refused too, the fault is the request's and the link pauses. False
        when the link has no such member yet (its first batches).
        """
        lm = link_members
        with self.db.read() as conn:
            known = conn.execute(
                sa.select(lm.c.rid, lm.c.sent, lm.c.sent_consent)
                .where(
                    lm.c.link_id == self.link_id,
                    lm.c.have == 1,
                    lm.c.want == 1,
                    lm.c.pending == 0,
                    lm.c.sent.is_not(None),
                    lm.c.stale.is_(None),
                    lm.c.rejected.is_(None),
                )
                .limit(1)
            ).first()
        if known is None:
            return False
        consent = outgoing.consent_of_text(known.sent_consent)
        member = OutMember(known.rid, tuple(json.loads(known.sent)), consent)
        self._take_pace()
        started = time.monotonic()
        self.outcome.requests += 1
        try:
            request_id = sender.send(INGEST, [member])
        except (MembersRejected, RequestRejected) as exc:
            with self.db.write() as conn:
                self._log(conn, INGEST, 1, "rejected", started, error=str(exc))
            raise LinkBroken(
                f"{self.platform.name} refused the request whatever members it held "
                "(a member it had "
                f"taken before was refused alone too): {exc}"
            ) from None
        except (TransientError, LinkBroken) as exc:
            outcome = "retry" if isinstance(exc, TransientError) else "paused"
            with self.db.write() as conn:
                self._log(conn, INGEST, 1, outcome, started, error=str(exc))
            raise
        with self.db.write() as conn:
            # Only logged: the member was taken as it was, and its own state
            # (a change the engine may have queued meanwhile, its `pending`)
            # is not this request's to settle.
            self._hold(conn, self.clock())
            self._log(
                conn,
                INGEST,
                1,
                "ok",
                started,
                request_id=str(request_id),
                warnings=getattr(request_id, "warnings", ()),
            )
        return True

    def _take_pace(self) -> None:
        if self.project is None:
            return
        until = pacing.take(
            self.db, self.project, self.clock(), self.settings.google_requests_per_minute
        )
        if until is not None:
            raise _Paced(until, self.project)

    def _acknowledge(
        self,
        operation: str,
        part: Sequence[OutMember],
        request_id: str,
        started: float,
        *,
        replaced: bool = False,
        queued: frozenset[int] = frozenset(),
    ) -> None:
        warnings: Sequence[str] = getattr(request_id, "warnings", ())
        lm = link_members
        now = self.clock()
        rids = [m.rid for m in part]
        with self.db.write() as conn:
            mine = sa.and_(lm.c.link_id == self.link_id, among(conn, lm.c.rid, rids))
            # Only while the list is still ours: had the lease run out (a long
            # database outage, say), another worker may have sent since, and
            # this older answer must not overwrite what it recorded.
            self._hold(conn, now)
            outbox.lock_in_order(conn, self.link_id, among(conn, lm.c.rid, rids))
            if replaced:
                # Old identifiers of members that stay: only they are settled.
                conn.execute(sa.update(lm).where(mine).values(stale=None))
            elif operation == INGEST:
                # The engine may have moved `want` while the request was out;
                # `pending` follows whatever it is now.
                conn.execute(
                    sa.update(lm)
                    .where(mine)
                    .values(
                        have=1,
                        acked_at=now,
                        rejected=None,
                        pending=sa.case((lm.c.want == 1, 0), else_=1),
                    )
                )
                self.outcome.added += len(part)
            else:
                done = [rid for rid in dict.fromkeys(rids) if rid not in queued]
                gone = sa.and_(lm.c.link_id == self.link_id, among(conn, lm.c.rid, done))
                held.forget_sent(conn, self.link_id, done)
                conn.execute(sa.delete(lm).where(gone, lm.c.want == 0))
                conn.execute(
                    sa.update(lm)
                    .where(gone)
                    .values(have=0, sent=None, stale=None, acked_at=None, rejected=None, pending=1)
                )
                self.outcome.removed += len(done)
            self._log(
                conn,
                operation,
                len(part),
                "ok",
                started,
                request_id=str(request_id),
                warnings=warnings,
            )
            conn.execute(
                sa.update(links).where(links.c.id == self.link_id).values(last_success_at=now)
            )
        learnt: dict[str, Any] = getattr(request_id, "settings", {})
        if learnt:
            # A transaction of its own, after the answer's: it locks the
            # destination row, which a person's change locks before the link's
            # members; taken with them it could deadlock. Lost to a crash, the
            # settings are learnt again (TikTok finds its audience by name).
            with self.db.write() as conn:
                self._hold(conn, now)
                self._store_learnt(conn, learnt, now)

    def _store_learnt(self, conn: Connection, learnt: dict[str, Any], now: dt.datetime) -> None:
        """Settings a request made known (an audience it created), with its answer.

        The row is read again, locked, and only these keys change: a person
        may have changed other settings, or the credentials, while the
        request was out.
        """
        query = sa.select(destinations.c.config).where(
            destinations.c.id == self.claim.destination.id
        )
        if self.db.is_postgres:
            query = query.with_for_update()
        current = conn.execute(query).scalar()
        if current is None:
            return
        config = {**dict(current), **learnt}
        conn.execute(
            sa.update(destinations)
            .where(destinations.c.id == self.claim.destination.id)
            .values(config=config, updated_at=now)
        )
        self.claim.destination = dataclasses.replace(self.claim.destination, config=config)

    def _rejected(
        self,
        operation: str,
        part: Sequence[OutMember],
        named: Mapping[int, str],
        message: str,
        started: float,
        replaced: bool,
        *,
        log: bool = True,
    ) -> None:
        """Log one refused request; record the members it named (by position) as refused."""
        lm = link_members
        withdrawn = 0
        with self.db.write() as conn:
            self._hold(conn, self.clock())
            if log:
                self._log(conn, operation, len(part), "rejected", started, error=message)
            if not named:
                return
            rows = [{"r": part[i].rid, "reason": reason} for i, reason in sorted(named.items())]
            mine = sa.and_(lm.c.link_id == self.link_id, lm.c.rid == sa.bindparam("r"))
            if replaced:
                withdrawn = conn.execute(
                    sa.select(sa.func.count()).where(
                        lm.c.link_id == self.link_id,
                        among(conn, lm.c.rid, [part[i].rid for i in named]),
                        lm.c.rejected == outgoing.DENIED_REASON,
                    )
                ).scalar_one()
                if not withdrawn:
                    # Old identifiers the platform will not take back: nothing
                    # more can be done with them, and the new ones still go out.
                    conn.execute(sa.update(lm).where(mine).values(stale=None), rows)
            else:
                values: dict[str, Any] = {"rejected": sa.bindparam("reason"), "pending": 0}
                if operation == INGEST:
                    # Refused with the request, so the list did not take it.
                    values["sent"] = sa.case((lm.c.have == 1, lm.c.sent), else_=None)
                conn.execute(sa.update(lm).where(mine).values(**values), rows)
                self.outcome.rejected += len({row["r"] for row in rows})
        if withdrawn:
            # People who withdrew consent must leave the audience: their sets
            # stay to be removed, and a person has to look.
            raise LinkBroken(
                f"{self.platform.name} refused to remove {withdrawn} member(s) whose records "
                f"withdrew consent, so its audience may still hold them: {message}"
            )


def _shown(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def next_due(db: Database) -> dt.datetime | None:
    """When the earliest scheduled retry falls, for a worker deciding how long to sleep."""
    with db.read() as conn:
        value = conn.execute(
            sa.select(sa.func.min(links.c.next_attempt_at, type_=UTCDateTime)).where(
                links.c.paused_reason.is_(None)
            )
        ).scalar()
    return value if isinstance(value, dt.datetime) else None
