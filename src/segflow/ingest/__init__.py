"""The CSV import stage: reading, checking and storing one file into a dataset.

An import runs in two phases on one connection of its own:

1. *Staging*: the CSV streams into a temporary table, raw text only, while
   column types and identifier quality are worked out. No lock on segflow's
   own tables is held, so other work carries on.
2. *Apply*: one write transaction takes the change-sequence row (so sequence
   order is commit order), compares staged rows with stored ones, creates or
   widens the dataset's columns, and writes inserts, real changes and (in
   replace mode) deletes, each with its own next sequence number.

The rows come from Apache Arrow (``arrowcsv.ArrowRows``) for a clean file,
on both engines; when the file turns out not to be clean, that work is
rolled back and the import starts again with segflow's reader
(``sources.PythonRows``), which also reads standard input.

Either the whole file is applied or nothing is: a failure or a kill at any
point leaves the dataset exactly as it was.

Modules: ``options`` (what an import is asked), ``run`` (one import),
``sources`` (where rows come from), ``staging`` (the temporary tables),
``apply`` (the write transaction), ``columns`` (the dataset's columns),
``arrowcsv`` (Arrow's reading), ``csvreader`` (segflow's parser), ``checks``
(types and identifier quality), ``quality`` and ``consent`` (per-record
consent cells).

``import_csv`` is imported on first use: the package's options are imported
by the command and the web app, which need neither Arrow nor the database
layer to start.
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
