"""Engine construction and transaction helpers for both supported databases, and
the lower-casing of text that both (and the rule evaluator) share for rules."""

from __future__ import annotations

import copy
import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from segflow.errors import InvalidInput

try:
    # sqlean.py: the sqlite3 module with a current SQLite (3.50): bulk loads
    # run about twice as fast as on Debian's 3.40, and behaviour does not
    # depend on the host's library. (pysqlite3-binary was tried and dropped:
    # it keeps temporary tables and sorts in memory, unbounded.)
    import sqlean as sqlite_module  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - platforms without the wheel
    import sqlite3 as sqlite_module

# IS [NOT] DISTINCT FROM, used by imports, arrived in 3.39.
MIN_SQLITE = (3, 39, 0)

# Long enough for a big import's apply phase in another process to finish.
SQLITE_BUSY_TIMEOUT_MS = 120_000
_WRITE_OPTION = "segflow_write"
SQLITE_MMAP_BYTES = 1 << 31
# PostgreSQL's default of 8MB spills a large import's staging table to disk:
# with 256MB, applying 1M staged rows took 4.3 s instead of 6.3 s. It is the
# most the server process of one import connection may take, used on demand.
IMPORT_TEMP_BUFFERS = "256MB"
#: What one PostgreSQL import may sort its indexes in (the default 64 MB
#: spills a 1M-row dataset's key index to disk: 0.35 s more).
IMPORT_INDEX_MEMORY = "256MB"


def normalise_url(raw: str) -> URL:
    """Parse a database URL, choosing psycopg 3 for PostgreSQL."""
    try:
        url = make_url(raw)
    except Exception:
        raise InvalidInput(
            f"database URL {raw!r} is not valid; use sqlite:///path/to/file.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise InvalidInput(f"unsupported SQLite driver {url.drivername!r}; use sqlite:///")
        if not url.database or url.database == ":memory:":
            raise InvalidInput("segflow needs an SQLite file, not an in-memory database")
        return url
    if backend == "postgresql":
        if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            return url.set(drivername="postgresql+psycopg")
        raise InvalidInput(
            f"unsupported PostgreSQL driver {url.drivername!r}; use postgresql+psycopg://"
        )
    raise InvalidInput(
        f"unsupported database {backend!r}; segflow runs on SQLite (sqlite:///file.db) "
        "or PostgreSQL (postgresql+psycopg://...)"
    )


def _redacted(url: URL) -> str:
    return url.render_as_string(hide_password=True)


#: The workspace of the local single-user mode, and of everything made before
#: workspaces existed.
DEFAULT_WORKSPACE = 1
#: Connection option carrying the workspace whose objects a transaction sees.
WORKSPACE_OPTION = "segflow_workspace"


class Database:
    """One configured database: an SQLAlchemy engine plus segflow's rules for using it.

    A Database is seen from one workspace (``workspace_id``): every
    transaction it opens carries that workspace, and ``segflow.db.scope.owned`` turns
    it into the filter that lookups of datasets, segments and destinations
    apply. ``in_workspace`` gives another view over the same engine.
    """

    def __init__(self, url: str, *, workspace_id: int = DEFAULT_WORKSPACE) -> None:
        self.url = normalise_url(url)
        self.display_url = _redacted(self.url)
        self.dialect = self.url.get_backend_name()
        self.engine = self._create_engine()
        # Imports connect through an engine without a pool: each of their
        # connections is new, and closing it closes it (see import_connection).
        self._import_engine = self._create_engine(pooled=False)
        self.workspace_id = workspace_id

    def in_workspace(self, workspace_id: int) -> Database:
        """The same database (and connection pool) seen from another workspace."""
        view = copy.copy(self)
        view.workspace_id = workspace_id
        return view

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _create_engine(self, *, pooled: bool = True) -> Engine:
        # hide_parameters: bound values (emails, phones) never appear in a
        # database error's message, so never in a log or traceback.
        pool: dict[str, Any] = {} if pooled else {"poolclass": sa.pool.NullPool}
        if self.is_sqlite:
            if sqlite_module.sqlite_version_info < MIN_SQLITE:
                raise InvalidInput(
                    f"segflow needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                    f"this Python has {sqlite_module.sqlite_version}"
                )
            engine = sa.create_engine(
                self.url,
                module=sqlite_module,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                hide_parameters=True,
                **pool,
            )
            _install_sqlite_hooks(engine, self.url.database)
            return engine
        # Keep any libpq options from the URL (a search_path, say) beside our own.
        options = "-c timezone=UTC"
        extra = self.url.query.get("options")
        if extra:
            options += " " + (extra if isinstance(extra, str) else " ".join(extra))
        url = self.url.difference_update_query(["options"])
        return sa.create_engine(
            url,
            # No server-side prepared statements: imports add and retype
            # columns of records tables from their own connections, and a
            # statement another connection prepared before that fails with
            # "cached plan must not change result type". psycopg forgets its
            # prepared statements only after DDL on the same connection.
            connect_args={"options": options, "prepare_threshold": None},
            pool_pre_ping=True,
            hide_parameters=True,
            **pool,
        )

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for work that spans transactions (see ``writing``)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WORKSPACE_OPTION: self.workspace_id})
            yield conn

    @contextmanager
    def import_connection(self) -> Iterator[Connection]:
        """A connection of its own for one import, closed afterwards.

        Not taken from the pool: closing it drops the import's temporary
        tables at once, and on SQLite detaches its scratch file. On
        PostgreSQL an import's temporary tables stay in memory up to
        ``IMPORT_TEMP_BUFFERS``, which only a session that has used no
        temporary table yet can set.
        """
        with self._import_engine.connect() as conn:
            conn.execution_options(**{WORKSPACE_OPTION: self.workspace_id})
            if self.is_postgres:
                conn.exec_driver_sql(f"SET temp_buffers = '{IMPORT_TEMP_BUFFERS}'")
                conn.exec_driver_sql(f"SET maintenance_work_mem = '{IMPORT_INDEX_MEMORY}'")
                conn.commit()
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: one consistent snapshot on both engines.

        PostgreSQL's default (READ COMMITTED) gives each statement its own
        snapshot, so a count and the rows it counts could straddle a commit;
        REPEATABLE READ holds one snapshot for the transaction, and a
        transaction that only reads never fails to serialize.
        """
        with self.connect() as conn:
            if self.is_postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction that commits on success and rolls back on any error."""
        with self.connect() as conn, self.writing(conn):
            yield conn

    @contextmanager
    def writing(self, conn: Connection) -> Iterator[Connection]:
        """Open a write transaction on a connection the caller already holds.

        Used by work that prepares data on one connection (temporary tables)
        before it takes the write lock.
        """
        conn.execution_options(**{_WRITE_OPTION: True, WORKSPACE_OPTION: self.workspace_id})
        try:
            with conn.begin():
                yield conn
                if self.is_postgres:
                    # Delivered at commit: servers' broadcasters re-read then.
                    conn.exec_driver_sql(f"NOTIFY {CHANGES_CHANNEL}")
        finally:
            conn.execution_options(**{_WRITE_OPTION: False})

    def ping(self) -> None:
        """One round trip to the database (touching no workspace's data), or its error."""
        with self.read() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()
        self._import_engine.dispose()


def create_private_file(path: str) -> None:
    """Create an empty database file readable by its owner only, unless it exists.

    SQLite would create it with the umask's mode (0644, usually: readable by
    every local user), and its -wal and -shm files take the database file's
    mode. A file that exists already keeps whatever mode its owner gave it.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        # It exists; or it cannot be made (no such folder, no permission),
        # which SQLite then reports in its own words as it opens the file.
        pass


def _install_sqlite_hooks(engine: Engine, path: str | None) -> None:
    @event.listens_for(engine, "do_connect")
    def _open(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if path and not path.startswith("file:"):
            create_private_file(path)
        return dialect.loaded_dbapi.connect(*cargs, **cparams)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # First, so that the journal-mode switch below waits for a connection
        # that is creating the same new file instead of failing at once.
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Only takes effect when the file is new. Larger pages make the full
        # scans of rule evaluation about 15% faster than the 4 KiB default.
        cur.execute("PRAGMA page_size=16384")
        _use_wal(cur)
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        # Reading pages through a memory map instead of read() calls makes the
        # full scans of rule evaluation about 30% faster. The mapped pages are
        # the OS's file cache, shared and reclaimable, not process memory.
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        # Temporary tables (import staging) and sorts go to files, not memory.
        cur.execute("PRAGMA temp_store=FILE")
        cur.execute("PRAGMA temp.cache_size=-65536")
        cur.close()
        # SQLite's own lower(), LIKE and NOCASE fold ASCII letters only.
        dbapi_conn.create_function(LOWER_FUNCTION, 1, _sql_lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


#: The SQL function, on SQLite connections, that lower-cases as :func:`unicode_lower`.
LOWER_FUNCTION = "segflow_lower"
#: The PostgreSQL collation under which lower() is :func:`unicode_lower`: glibc's
#: C.UTF-8 maps each character by Unicode's simple lower-case mapping, whatever
#: the database's own locale (a tr_TR database would lower I to dotless ı).
POSTGRES_LOWER_COLLATION = "C.utf8"


def unicode_lower(text: str) -> str:
    """Unicode's simple lower-case mapping, one character to one character.

    The one meaning of "ignoring case" in segflow's rules, shared by the
    reference evaluator, SQLite (as ``segflow_lower``) and PostgreSQL
    (``lower()`` under ``POSTGRES_LOWER_COLLATION``). Python's ``str.lower()``
    applies the full mapping, which differs in exactly two places: it turns
    İ into i plus a combining dot and a word-final Σ into ς; both are
    replaced by their simple mappings first.
    """
    return text.replace("\u0130", "i").replace("\u03a3", "\u03c3").lower()


def _sql_lower(value: Any) -> Any:
    return unicode_lower(value) if isinstance(value, str) else value


#: PostgreSQL channel that every committed write notifies.
CHANGES_CHANNEL = "segflow_changes"


def _use_wal(cur: Any) -> None:
    """Switch a database file to WAL, once, whoever gets there first.

    Changing the journal mode needs a lock that SQLite does not wait for even
    with a busy timeout, so connections racing to open a new file retry.
    """
    for attempt in range(200):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite_module.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)


def lost_connection(exc: BaseException) -> bool:
    """Whether a database error means the server went away (restarting, failing
    over, dropping connections) rather than anything about the request."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    state = getattr(getattr(exc.orig, "diag", None), "sqlstate", None)
    module = type(exc.orig).__module__
    # psycopg: no SQLSTATE when it cannot connect at all; class 08 is a
    # connection exception, 57 an operator intervention (shutdown, restart).
    return module.startswith("psycopg") and (state is None or state[:2] in ("08", "57"))


def retryable_conflict(exc: BaseException) -> bool:
    """A PostgreSQL deadlock or serialization failure: the transaction was
    rolled back whole and may simply be run again."""
    state = getattr(getattr(getattr(exc, "orig", None), "diag", None), "sqlstate", None)
    return state in ("40P01", "40001")


def utcnow() -> dt.datetime:
    """The wall clock, read only at the edges (CLI, server) and passed inward."""
    return dt.datetime.now(dt.UTC)
