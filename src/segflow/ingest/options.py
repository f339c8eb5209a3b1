"""What an import is asked to do (:class:`ImportOptions`) and the import's fixed sizes."""

from __future__ import annotations

from dataclasses import dataclass

UPSERT = "upsert"
REPLACE = "replace"
MODES = (UPSERT, REPLACE)
#: Key columns an import looks for, in this order, when none is given.
DEFAULT_KEYS = ("id", "customer_id", "email")
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
