"""SQLite reading a CSV file itself: the import's fast path for plain files.

sqlean's ``vsv`` virtual table parses a file in C, several times faster than
Python's csv module, and its rows go into the import's staging table without
passing through Python at all. But its parser is not segflow's: it reports no
errors, fills short rows with NULL and cuts long ones. So its rows are used
only for a *plain* file, where the two parsers cannot disagree: UTF-8, read
from its start, no quote character anywhere, lines ending in LF or CRLF, and
every line after the header one record with exactly the header's fields and
a key. Whether the file was plain is the helper process's finding
(``segflow.ingest.checks``): it reads the same bytes with segflow's own reader. When
the finding is anything else, or the file changed on disk meanwhile, the
import throws these rows away and stages the file from Python.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from segflow.db.records import ident

#: Delimiters the module takes, as written in its arguments.
DELIMITERS = {",": ",", ";": ";", "|": "|", "\t": "\\t"}
#: How often (in rows) the copy reports progress and lets Python handle signals.
PROGRESS_ROWS = 1 << 16


def available(conn: Connection) -> bool:
    """Whether this connection has the module (see ``Database.import_connection``)."""
    if conn.dialect.name != "sqlite":
        return False
    found = conn.exec_driver_sql("SELECT 1 FROM pragma_module_list WHERE name = 'vsv'").first()
    return found is not None


def path_of(fd: int) -> str | None:
    """A name under which SQLite can open the file behind ``fd``, if there is one."""
    path = f"/proc/self/fd/{int(fd)}"
    return path if os.path.exists(path) else None


@dataclass(frozen=True)
class FileState:
    """What tells a file apart from itself after a change."""

    device: int
    inode: int
    size: int
    modified_ns: int


def file_state(fd: int) -> FileState:
    st = os.fstat(fd)
    return FileState(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def copy(
    conn: Connection,
    fd: int,
    *,
    ncols: int,
    delimiter: str,
    into: str,
    columns: list[str],
    values: list[str],
    params: tuple[Any, ...] = (),
    nulls: bool = False,
    on_rows: Callable[[int], None],
) -> int:
    """``INSERT INTO into (columns) SELECT values`` over the file's data lines.

    ``values`` are SQL over the fields ``c0``, ``c1``, ... and ``rowid``, the
    line's place among the data lines (1 for the one after the header);
    ``params`` are their bound values; with ``nulls`` an empty field is NULL
    instead of ''. Returns how many lines were copied.
    ``on_rows`` hears how many every ``PROGRESS_ROWS`` lines.
    """
    path = path_of(fd)
    if path is None or delimiter not in DELIMITERS:
        raise ValueError("this file cannot be read by SQLite")
    table = ident(f"sf_csv_{uuid.uuid4().hex[:12]}")
    fields = [f"c{i}" for i in range(ncols)]
    schema = f"CREATE TABLE x({', '.join(fields)})"
    # Every argument is generated: an integer path, a fixed delimiter spelling.
    conn.exec_driver_sql(
        f"CREATE VIRTUAL TABLE temp.{table} USING vsv(filename='{path}', header=yes, "
        f"schema='{schema}', columns={int(ncols)}, fsep='{DELIMITERS[delimiter]}', "
        f"nulls={'on' if nulls else 'off'})"
    )
    raised: list[BaseException] = []

    def rows_read(rowid: int) -> int:
        try:
            on_rows(rowid)
        except BaseException as exc:  # re-raised once SQLite has unwound
            raised.append(exc)
            raise
        return 1

    raw: Any = conn.connection.driver_connection
    raw.create_function("sf_rows_read", 1, rows_read)
    try:
        result = conn.exec_driver_sql(
            f"INSERT INTO {ident(into)} ({', '.join(map(ident, columns))}) "  # noqa: S608
            f"SELECT {', '.join(values)} FROM temp.{table} "
            f"WHERE rowid % {PROGRESS_ROWS} != 0 OR sf_rows_read(rowid)",
            params,
        )
    except Exception:
        if raised:  # Ctrl-C or the caller's own error, not SQLite's
            raise raised[0] from None
        raise
    finally:
        raw.create_function("sf_rows_read", 1, None)
    conn.exec_driver_sql(f"DROP TABLE temp.{table}")
    return int(result.rowcount)


def usable(
    answer: dict[str, Any] | None, *, staged: int, before: FileState, after: FileState
) -> str | None:
    """Why the rows SQLite copied cannot be used, or None when they can.

    ``answer`` is the helpers' report for the whole file; ``before`` is the
    file as they started reading it, ``after`` as it is once they have
    answered and SQLite has read it.
    """
    if answer is None:
        return "the helper process gave no answer"
    if before != after:
        return "the file changed while it was read"
    if answer.get("bytes") != after.size:
        return "the helper read another length than the file has"
    if answer.get("plain") is not True:
        return "the file has quotes or other line ends than LF and CRLF"
    if answer.get("rejected") != 0:
        return "the file has rows that are rejected"
    rows = answer.get("rows")
    if rows != staged or answer.get("lines") != staged + 1:
        return "the file has blank lines or rows that SQLite read differently"
    return None
