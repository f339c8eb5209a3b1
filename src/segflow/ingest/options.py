"""What an import is asked to do (:class:`ImportOptions`) and the import's fixed sizes."""

from __future__ import annotations

from dataclasses import dataclass

UPSERT = "upsert"
REPLACE = "replace"
MODES = (UPSERT, REPLACE)
#: Key columns an import looks for, in this order, when none is given;
#: header names are compared normalised (see ``normalise_name``), so
#: ``Customer ID``, ``CustomerId`` and ``E-mail Address`` are found too.
DEFAULT_KEYS = ("id", "customer_id", "email", "email_address")
#: Most columns a file (and a dataset) may have. A records table holds four
#: columns of its own and up to two per CSV column (raw text and typed
#: value): PostgreSQL allows 1,600 columns a table, so (1,600 - 4) // 2;
#: SQLite's default SQLITE_MAX_COLUMN (2,000) would allow 998.
MAX_COLUMNS = (1_600 - 4) // 2
#: A megabyte, as a dry run's sample size is given (``--sample-mb``, ``sample_mb``).
MB = 1024**2
#: Rows parsed, staged and checked at a time.
BATCH_ROWS = 10_000
#: Rejects kept in the stored import history (the returned summary keeps more).
STORED_REJECTS = 1_000


@dataclass(frozen=True)
class ImportOptions:
    dataset: str
    key: str | None = None
    mode: str = UPSERT
    delimiter: str | None = None
    encoding: str = "utf-8"
    #: Replace mode: go ahead even where the import deletes more than the
    #: delete limit of the dataset or of a linked destination's members.
    confirm_delete: bool = False
    #: That limit in percent; None: the setting ``SEGFLOW_REPLACE_DELETE_LIMIT``.
    delete_limit: int | None = None
    #: Read, check and apply the file, count what would change (segments'
    #: enters and exits too), then roll everything back: nothing is stored.
    dry_run: bool = False
    #: A dry run's quick look: read only the file's first this many bytes,
    #: cut after the last whole record in them. None: the whole file.
    sample_bytes: int | None = None


#: Names a delimiter may be given by, where the character itself is awkward to type.
DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def delimiter_named(value: str) -> str:
    """A delimiter given as the character itself, or as tab, comma, semicolon or pipe."""
    return DELIMITER_NAMES.get(value.lower(), value)


def normalise_name(name: str) -> str:
    """A column name as key detection compares it: lower-case, without spaces, ``_`` or ``-``."""
    return "".join(ch for ch in name.casefold() if ch not in " _-\t")
