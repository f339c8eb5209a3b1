"""Forget a person: remove one record everywhere segflow keeps it.

1. The record becomes a tombstone with no values and its key replaced by a
   random placeholder (a key can itself be an email), taking the next change
   sequence number like any delete.
2. The engine processes the dataset at once: the record leaves every segment
   and, for every linked destination that may hold it, a remove is queued
   with the hashes that were sent (the only thing kept about the person, and
   dropped once the destination acknowledges the remove).
3. The record's key is replaced in the enter/exit history, and rejected-row
   details that quote it are dropped from the import summaries.

On SQLite the writes run with ``secure_delete`` and the write-ahead log is
checkpointed and truncated afterwards, so the old values do not linger in
free pages or the WAL. On PostgreSQL old row versions stay on disk until
VACUUM reclaims them (autovacuum, or ``VACUUM`` by the operator).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from segflow import engine
from segflow.datasets import require
from segflow.db import records, sequence
from segflow.db.engine import Database
from segflow.db.schema import (
    datasets,
    destinations,
    imports,
    link_members,
    links,
    segment_events,
    segments,
)
from segflow.errors import NotFound


@dataclass
class Forgotten:
    dataset: str
    segments_left: list[str] = field(default_factory=list)
    removes_queued: list[str] = field(default_factory=list)
    events_scrubbed: int = 0
    import_details_scrubbed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "segments_left": self.segments_left,
            "removes_queued": self.removes_queued,
            "events_scrubbed": self.events_scrubbed,
            "import_details_scrubbed": self.import_details_scrubbed,
        }


def forget(db: Database, dataset_name: str, key: str, now: dt.datetime) -> Forgotten:
    """Remove the record with this key from the dataset and everywhere segflow keeps it."""
    report = Forgotten(dataset_name)
    placeholder = f"forgotten:{uuid.uuid4().hex}"
    dataset_id, rid, seq = _tombstone(db, dataset_name, key, placeholder, now)
    # Exits (and the removes they queue) are written by the engine, as for any delete.
    engine.tick(db, now, dataset_ids=[dataset_id])
    with db.write() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        left = conn.execute(
            sa.select(segments.c.name)
            .join(segment_events, segment_events.c.segment_id == segments.c.id)
            .where(segment_events.c.rid == rid, segments.c.dataset_id == dataset_id)
            .where(segment_events.c.kind == "exit", segment_events.c.seq == seq)
            .distinct()
        ).scalars()
        report.segments_left = sorted(left)
        queued = conn.execute(
            sa.select(destinations.c.name)
            .join(links, links.c.destination_id == destinations.c.id)
            .join(link_members, link_members.c.link_id == links.c.id)
            .join(segments, segments.c.id == links.c.segment_id)
            .where(link_members.c.rid == rid, segments.c.dataset_id == dataset_id)
            .where(link_members.c.want == 0, link_members.c.pending == 1)
        ).scalars()
        report.removes_queued = sorted(queued)
        scrubbed = conn.execute(
            sa.update(segment_events)
            .where(
                segment_events.c.rid == rid,
                segment_events.c.segment_id.in_(
                    sa.select(segments.c.id).where(segments.c.dataset_id == dataset_id)
                ),
            )
            .values(record_key=placeholder)
        )
        report.events_scrubbed = int(scrubbed.rowcount or 0)
        report.import_details_scrubbed = _scrub_imports(conn, dataset_id, key)
        if db.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=OFF")
    if db.dialect == "sqlite":
        # Old page images in the write-ahead log still hold the values.
        with db.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return report


def _tombstone(
    db: Database, dataset_name: str, key: str, placeholder: str, now: dt.datetime
) -> tuple[int, int, int]:
    """Make the record a tombstone under a placeholder key: (dataset id, rid, its seq)."""
    with db.write() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        dataset = require(conn, dataset_name, lock=True, name_others=False)
        table = records.table(dataset.records_table, dataset.columns)
        row = conn.execute(
            sa.select(table.c.rid, table.c.deleted).where(table.c.key == key)
        ).first()
        if row is None:
            raise NotFound(f"no record with key {key!r} in dataset {dataset.name!r}")
        numbers = sequence.take(conn)
        seq = numbers.base + 1
        mark = "?" if db.dialect == "sqlite" else "%s"
        records.tombstone(
            conn,
            dataset.records_table,
            dataset.columns,
            seq=mark,
            key=mark,
            where=f"WHERE rid = {mark}",
            params=(seq, placeholder, int(row.rid)),
        )
        if db.dialect == "sqlite":
            # Zeroing freed space slows every write: only for this one.
            conn.exec_driver_sql("PRAGMA secure_delete=OFF")
        numbers.use(1)
        conn.execute(
            sa.update(datasets)
            .where(datasets.c.id == dataset.id)
            .values(
                record_count=datasets.c.record_count - (0 if row.deleted else 1), updated_at=now
            )
        )
        return dataset.id, int(row.rid), seq


def _scrub_imports(conn: Any, dataset_id: int, key: str) -> int:
    """Drop rejected-row details that quote the key from the dataset's import summaries."""
    count = 0
    rows = conn.execute(
        sa.select(imports.c.id, imports.c.summary).where(imports.c.dataset_id == dataset_id)
    ).all()
    for import_id, summary in rows:
        rejects = summary.get("rejects") or []
        kept = [r for r in rejects if key not in str(r.get("reason", ""))]
        if len(kept) != len(rejects):
            count += len(rejects) - len(kept)
            conn.execute(
                sa.update(imports)
                .where(imports.c.id == import_id)
                .values(summary={**summary, "rejects": kept})
            )
    return count
