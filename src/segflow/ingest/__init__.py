"""The CSV import stage: reading, checking and storing one file into a dataset.

An import runs in two phases on one connection of its own:

1. *Staging*: the CSV streams into a temporary table, raw text only, while
   column types and identifier quality are worked out. No lock on segflow's
   own tables is held, so other work carries on.
2. *Apply*: one write transaction takes the change-sequence row (so sequence
   order is commit order), compares staged rows with stored ones, creates or
   widens the dataset's columns, and writes inserts, real changes and (in
   replace mode) deletes, each with its own next sequence number.

The rows come from segflow's reader (``sources.PythonRows``), or on SQLite,
for a file that may be plain, from SQLite reading the file itself
(``sources.SqliteRows``, ``csvtable``) while helper processes check it. A
new dataset then skips staging: its records are copied from the file inside
the write transaction. When the helpers find the file was not plain, that
work is rolled back and the import starts again with segflow's reader.

Either the whole file is applied or nothing is: a failure or a kill at any
point leaves the dataset exactly as it was.

Modules: ``options`` (what an import is asked), ``run`` (one import),
``sources`` (where rows come from), ``staging`` (the temporary tables),
``apply`` (the write transaction), ``columns`` (the dataset's columns),
``csvreader`` (the parser), ``checks`` (types and identifier quality, also
as the helper process ``python -m segflow.ingest.checks``), ``quality``,
``consent`` (per-record consent cells) and ``csvtable`` (SQLite's reading).

``import_csv`` is imported on first use: the helper process imports this
package too, and needs only the reader and the checks, not SQLAlchemy and
the database (a third of a second more to start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segflow.ingest.options import MODES, REPLACE, UPSERT, ImportOptions, delimiter_named

if TYPE_CHECKING:
    from segflow.ingest.run import import_csv

__all__ = ["MODES", "REPLACE", "UPSERT", "ImportOptions", "delimiter_named", "import_csv"]


def __getattr__(name: str) -> Any:
    """``import_csv``, imported when first asked for (see above)."""
    if name == "import_csv":
        return importlib.import_module("segflow.ingest.run").import_csv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
