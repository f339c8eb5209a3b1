"""One import of one CSV file: :func:`import_csv`.

It resolves the key, picks where the rows come from (``sources``), and runs
the two phases (see ``segflow.ingest``): staging on the import's own
connection, then the apply step (``apply``) under the write lock. The
summary it returns is also kept in the dataset's import history.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import time
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import coltypes, engine
from segflow.config import Settings
from segflow.datasets import Column, Dataset, find_dataset, validate_dataset_name
from segflow.db.engine import Database
from segflow.db.schema import identifier_maps, imports, segments
from segflow.errors import ImportFailed, InvalidInput
from segflow.ingest import phones, preview
from segflow.ingest.apply import NotDeduped, Outcome, apply
from segflow.ingest.arrowcsv import ArrowRows, NotClean
from segflow.ingest.consent import AD_PERSONALIZATION, AD_USER_DATA
from segflow.ingest.csvreader import CsvReader
from segflow.ingest.guard import DeleteNeedsConfirmation
from segflow.ingest.options import (
    DEFAULT_KEYS,
    MAX_COLUMNS,
    MODES,
    STORED_REJECTS,
    ImportOptions,
    normalise_name,
)
from segflow.ingest.quality import QualityCounter
from segflow.ingest.sources import PythonRows, Rows
from segflow.ingest.staging import RejectLog, Staging
from segflow.progress import APPLYING, DONE, Progress, ProgressFn

log = logging.getLogger(__name__)


def import_csv(
    db: Database,
    stream: BinaryIO,
    options: ImportOptions,
    *,
    source: str,
    now: dt.datetime,
    total_bytes: int | None = None,
    progress: ProgressFn | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Import one CSV stream into a dataset; return the import summary.

    Raises :class:`ImportFailed` for a file that cannot be imported at all,
    in which case nothing was stored.
    """
    if settings is not None:
        # The caller's words (the server's, the CLI's); without settings the
        # process keeps the ones it has. Typing and SQL read the same list.
        coltypes.use_empty_like(settings.empty_like)
    settings = settings or Settings()
    started = time.monotonic()
    validate_dataset_name(options.dataset)
    if options.mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    if options.delete_limit is not None and not 0 <= options.delete_limit <= 100:
        raise InvalidInput(
            f"the delete limit is a percent from 0 to 100, got {options.delete_limit}"
        )
    taken: preview.Sample | None = None
    if options.sample_bytes is not None:
        if not options.dry_run:
            raise InvalidInput("only a dry run reads a sample of the file; a real import reads all")
        cut = preview.sample(stream, options.sample_bytes, options.encoding, source, total_bytes)
        if cut is not None:
            stream, taken = cut
            total_bytes = taken.bytes
    bom = _bom(stream) if options.dry_run else None
    offset = _position(stream)
    reader = _open_reader(stream, options, source, settings)
    header = reader.header
    existing = find_dataset(db, options.dataset)
    _check_width(header, existing, source)
    guessed = False
    try:
        key_index = _resolve_key(header, existing, options.key, source)
    except ImportFailed:
        if not options.dry_run or existing is not None or options.key is not None:
            raise
        # A preview is where the key is chosen: it shows the candidates anyway.
        key_index, guessed = preview.guess_key(header), True
    run = _Run(db, options, source, now, header, key_index, settings, started, total_bytes)
    run.report = progress or run.report
    run.fresh = existing is None or existing.record_count == 0
    run.read = {"encoding": reader.encoding, "header_line": reader.header_line}
    if bom is not None:
        run.read["bom"] = bom
    run.sample = taken
    if options.dry_run:
        run.read["key_guessed"] = guessed
    region, consent_columns = _dataset_region(db, existing.id if existing else None)
    arrow = ArrowRows.start(stream, offset, reader, key_index, region, consent_columns)
    try:
        return _execute(
            run, stream, offset, options, source, settings, reader, arrow, (region, consent_columns)
        )
    except Exception as exc:
        limit = _postgres_limit(exc)
        if limit is None:
            raise
        raise ImportFailed(
            f"PostgreSQL cannot store this file's records ({limit}): it keeps a record in one "
            "page, at most about 8 KB a record (a column's text, plus 8 bytes for a number, "
            "date or boolean column); import fewer columns at a time",
            file=source,
        ) from None


def _execute(
    run: _Run,
    stream: BinaryIO,
    offset: int | None,
    options: ImportOptions,
    source: str,
    settings: Settings,
    reader: CsvReader,
    arrow: ArrowRows | None,
    phones_and_consent: tuple[str, dict[str, str] | None],
) -> dict[str, Any]:
    """The import from Arrow's rows; from segflow's reader where the file is not clean."""
    if arrow is not None:
        try:
            return run.execute(arrow)
        except NotClean as exc:
            log.debug("%s: reading with segflow's reader: %s", source, exc)
        stream.seek(offset or 0)
        reader = _open_reader(stream, options, source, settings)
    return run.execute(PythonRows(reader, run.header, *phones_and_consent))


#: PostgreSQL's "program limit exceeded" errors that a wide file can meet:
#: a record over one page ("row is too big"), too many columns in a table.
_POSTGRES_LIMITS = ("54000", "54011")


def _postgres_limit(exc: BaseException) -> str | None:
    """PostgreSQL's own words for a size limit this import hit, else None.

    Staging copies rows through psycopg directly, the apply step through
    SQLAlchemy (which wraps the error). The primary message quotes no values.
    """
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) not in _POSTGRES_LIMITS:
        return None
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary) if primary else "a size limit"


def _check_width(header: list[str], existing: Dataset | None, source: str) -> None:
    """Refuse, before any row is read, a file that would give the dataset
    more than ``MAX_COLUMNS`` columns (beyond what both engines store)."""
    known = {c.name.casefold() for c in existing.columns} if existing else set()
    total = len(known | {name.casefold() for name in header})
    if total <= MAX_COLUMNS:
        return
    if len(header) > MAX_COLUMNS:
        why = f"the file has {len(header):,} columns"
    else:
        why = (
            f"with the file's new columns dataset {existing.name if existing else ''!r} "
            f"would have {total:,}"
        )
    raise ImportFailed(
        f"{why}; at most {MAX_COLUMNS:,} columns can be imported into one dataset "
        "(split the file into datasets sharing the key column)",
        file=source,
        line=1,
    )


def _resolve_key(header: list[str], existing: Dataset | None, key: str | None, source: str) -> int:
    """The key column's index in the header: the dataset's key, the one asked
    for, or the first column named like one of ``DEFAULT_KEYS`` (compared
    normalised: ``Customer ID`` is ``customer_id``)."""
    folded = [h.casefold() for h in header]
    if existing is not None:
        if key is not None and key.casefold() != existing.key_column.casefold():
            raise ImportFailed(
                f"dataset {existing.name!r} is keyed by {existing.key_column!r}; its key "
                f"cannot change to {key!r}",
                file=source,
            )
        wanted = existing.key_column
    elif key is not None:
        wanted = key
    else:
        normalised = [normalise_name(h) for h in header]
        found = next(
            (normalised.index(n) for n in map(normalise_name, DEFAULT_KEYS) if n in normalised),
            None,
        )
        if found is None:
            raise ImportFailed(
                "no key column given and none of " + ", ".join(DEFAULT_KEYS) + " is present "
                "(names compare ignoring case, spaces, '_' and '-'); "
                "choose one, --key or the upload's key field (columns: " + ", ".join(header) + ")",
                file=source,
            )
        return found
    if wanted.casefold() not in folded:
        raise ImportFailed(
            f"the key column {wanted!r} is not in the file (columns: {', '.join(header)})",
            file=source,
            line=1,
        )
    return folded.index(wanted.casefold())


def _open_reader(
    stream: BinaryIO, options: ImportOptions, source: str, settings: Settings
) -> CsvReader:
    return CsvReader(
        stream,
        source=source,
        encoding=options.encoding,
        delimiter=options.delimiter,
        max_field_chars=settings.max_field_chars,
    )


class _Run:
    """One import of one file, whichever way its rows are read."""

    def __init__(
        self,
        db: Database,
        options: ImportOptions,
        source: str,
        now: dt.datetime,
        header: list[str],
        key_index: int,
        settings: Settings,
        started: float,
        total_bytes: int | None,
    ) -> None:
        self.db = db
        self.options = options
        self.source = source
        self.now = now
        self.header = header
        self.key_index = key_index
        self.settings = settings
        self.started = started
        self.total_bytes = total_bytes
        self.rejects = RejectLog(settings.max_reject_details)
        self.report: ProgressFn = lambda _p: None
        #: How the file was read: its encoding, header line (and a dry run's BOM).
        self.read: dict[str, Any] = {}
        self.sample: preview.Sample | None = None
        self.described: tuple[list[dict[str, Any]], dict[str, dict[str, Any]]] | None = None
        #: Whether the dataset had no records when the import began.
        self.fresh = False
        self._duplicates_logged = 0

    def execute(self, rows: Rows) -> dict[str, Any]:
        return self._stage_and_apply(rows)

    def _stage_and_apply(self, rows: Rows) -> dict[str, Any]:
        self.rejects = RejectLog(self.settings.max_reject_details)
        self._duplicates_logged = 0
        # The connection is closed afterwards, which drops the temporary
        # tables at once (much faster than dropping a large one page by page).
        with self.db.import_connection() as conn:
            staging = Staging(conn, len(self.header), self.key_index)
            with conn.begin():
                staging.create()
                rows.stage(staging, self)
                if self.options.dry_run:
                    types = rows.finish_checks().types
                    self.described = preview.describe(staging, self.header, types, self.rejects)
                if not self.fresh:
                    # A dataset with records: the comparison needs one row a
                    # key. An empty one lets its key index find repeats (apply).
                    staging.remove_duplicates()
            self.report(Progress(APPLYING, rows.bytes_read, self.total_bytes, staging.count))
            limit = self._delete_limit()
            guard: dict[str, Any] = {"needs_confirmation": False}
            while True:
                try:
                    with self.db.writing(conn):
                        outcome = apply(
                            conn,
                            staging,
                            self.options,
                            self.header,
                            rows.finish_checks(),
                            self.now,
                            delete_limit=limit,
                            source=self.source,
                        )
                        quality = rows.finish_checks().quality
                        self._reject_duplicates(staging.duplicates)
                        summary = self._record(
                            conn, rows, outcome, quality, len(staging.duplicates)
                        )
                        if self.options.dry_run:
                            summary["segments"] = _segments_after(
                                conn, outcome.dataset_id, self.now
                            )
                            summary["delete_guard"] = guard
                            raise _RolledBack(summary)
                    break
                except _RolledBack as dry:
                    summary = dry.summary
                    break
                except NotDeduped:
                    with conn.begin():
                        staging.remove_duplicates()
                except DeleteNeedsConfirmation as refused:
                    if not self.options.dry_run or limit is None:
                        raise
                    # A dry run shows how much would go rather than refuse: the
                    # refusal's numbers (nothing was written), then the counts.
                    guard = {"needs_confirmation": True, "message": str(refused)}
                    guard.update(refused.details())
                    limit = None
        self.report(Progress(DONE, rows.bytes_read, self.total_bytes, staging.count))
        return summary

    def _reject_duplicates(self, duplicates: list[tuple[int, str, int]]) -> None:
        """Log the rows dropped for a repeated key (once, however often the apply step ran)."""
        for line, key, first in duplicates[self._duplicates_logged :]:
            self.rejects.add(line, f"duplicate key {key!r} (first seen on line {first})")
        self._duplicates_logged = len(duplicates)

    def _delete_limit(self) -> int | None:
        """The replace guard's limit in percent; None where deletes were confirmed."""
        if self.options.confirm_delete:
            return None
        limit = self.options.delete_limit
        return self.settings.replace_delete_limit if limit is None else limit

    def _record(
        self,
        conn: Connection,
        rows: Rows,
        outcome: Outcome,
        quality: QualityCounter,
        duplicates: int,
    ) -> dict[str, Any]:
        """The import's summary, also kept in the dataset's import history."""
        summary = _summary(
            self.options,
            self.source,
            rows,
            self.header,
            outcome,
            self.rejects,
            quality,
            self.key_index,
            duplicates,
            self.started,
        )
        summary.update(self.read)
        if self.options.dry_run:
            _add_preview(summary, self.described, self.sample)
        conn.execute(
            imports.insert().values(
                dataset_id=outcome.dataset_id,
                source=self.source,
                mode=self.options.mode,
                started_at=self.now,
                finished_at=self.now + dt.timedelta(seconds=summary["duration_s"]),
                summary=dict(summary, rejects=summary["rejects"][:STORED_REJECTS]),
            )
        )
        return summary


class _RolledBack(Exception):
    """A dry run's end: raised inside its write transaction so that it rolls back."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__("dry run")
        self.summary = summary


def _segments_after(conn: Connection, dataset_id: int, now: dt.datetime) -> list[dict[str, Any]]:
    """The dataset's segments ticked inside the import's transaction: their enters and exits."""
    ids = list(
        conn.execute(sa.select(segments.c.id).where(segments.c.dataset_id == dataset_id)).scalars()
    )
    report = engine.TickReport()
    if ids:
        engine.tick_dataset_on(conn, dataset_id, ids, now, report)
    return [o.as_dict() for o in report.outcomes]


def _add_preview(
    summary: dict[str, Any],
    described: tuple[list[dict[str, Any]], dict[str, dict[str, Any]]] | None,
    taken: preview.Sample | None,
) -> None:
    """A dry run's summary: also the key candidates, each column's examples
    and empty-like tokens, and how much of the file was read."""
    candidates, details = described or ([], {})
    types = {c["name"]: c["type"] for c in summary["columns"]}
    summary["key_candidates"] = [c for c in candidates if preview.may_be_key(c, types[c["column"]])]
    for column in summary["columns"]:
        column.update(details.get(column["name"], {}))
    if summary.get("key_guessed"):
        summary["notes"].append(
            f"no key column was given and none is named {', '.join(DEFAULT_KEYS)}: the counts "
            f"take {summary['key']!r} for the key; choose one (see the key candidates)"
        )
    whole = preview.Sample(summary["bytes"], whole=True)
    summary["sample"] = (taken or whole).as_dict(summary["rows"])
    if taken is not None and not taken.whole:
        summary["notes"].append(
            f"a sample: only the first {taken.bytes:,} bytes ({summary['rows']:,} rows) were "
            "read, and the counts are theirs"
            + ("; records not in it count as deleted" if summary["mode"] == "replace" else "")
        )


def _bom(stream: BinaryIO) -> str | None:
    """The byte order mark the stream starts with (``utf-8``, ``utf-16-le``, ...), else ''.

    None where the stream cannot be looked at without consuming it.
    """
    at = _position(stream)
    if at is None:
        return None
    first = stream.read(3)
    stream.seek(at)
    for mark, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if first.startswith(mark):
            return name
    return ""


def _position(stream: BinaryIO) -> int | None:
    """Where a seekable stream stands (the import reads from there), else None."""
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _summary(
    options: ImportOptions,
    source: str,
    reader: Rows,
    header: list[str],
    outcome: Outcome,
    rejects: RejectLog,
    quality: QualityCounter,
    key_index: int,
    duplicates: int,
    started: float,
) -> dict[str, Any]:
    by_name = {c.name.casefold(): c for c in outcome.columns}
    details = sorted(rejects.details, key=lambda r: r.line)
    return {
        "dataset": options.dataset,
        "source": source,
        "mode": options.mode,
        "created": outcome.created,
        "key": header[key_index],
        "delimiter": reader.delimiter,
        "notes": [*reader.notes, *outcome.notes],
        "dry_run": options.dry_run,
        "rows": outcome.inserted + outcome.updated + outcome.unchanged + rejects.count,
        "inserted": outcome.inserted,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "deleted": outcome.deleted,
        "rejected": rejects.count,
        "rejects": [r.as_dict() for r in details],
        "rejects_truncated": rejects.count > len(details),
        "columns": [_column_summary(by_name[name.casefold()], name) for name in header],
        "schema_changes": outcome.schema_changes,
        "misfits": outcome.misfits,
        "identifiers": quality.summary(),
        "consent": quality.consent_summary(),
        "identifier_members": {"several": quality.members_summary()},
        "duplicate_keys": duplicates,
        "first_seq": outcome.first_seq,
        "last_seq": outcome.last_seq,
        "bytes": reader.bytes_read,
        "duration_s": round(time.monotonic() - started, 3),
    }


def _dataset_region(db: Database, dataset_id: int | None) -> tuple[str, dict[str, str] | None]:
    """A dataset's stored default phone region (else ``phones.DEFAULT_REGION``),
    and the consent columns its stored mapping names (None: no stored mapping)."""
    if dataset_id is None:
        return phones.DEFAULT_REGION, None
    with db.read() as conn:
        stored = conn.execute(
            sa.select(identifier_maps.c.mapping).where(identifier_maps.c.dataset_id == dataset_id)
        ).scalar()
    if not isinstance(stored, dict):
        return phones.DEFAULT_REGION, None
    consent_columns = {
        kind: str(stored[kind]) for kind in (AD_USER_DATA, AD_PERSONALIZATION) if stored.get(kind)
    }
    return str(stored.get("default_region") or phones.DEFAULT_REGION), consent_columns


def _column_summary(column: Column, name: str) -> dict[str, Any]:
    """A column as the summary shows it; ``format`` only for formatted ones."""
    out: dict[str, Any] = {"name": name, "type": column.type}
    if column.format:
        out["format"] = column.format
    return out
