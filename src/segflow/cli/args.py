"""Reading values given on the command line, for the database and ``--server`` commands alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segflow.errors import InvalidInput, SegflowError
from segflow.ingest.options import delimiter_named


def rules_arg(value: str) -> Any:
    """``--rules``: JSON, or ``@FILE`` to read the JSON from a file."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise SegflowError(f"cannot read rules from {value[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--rules is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


def delimiter_arg(value: str) -> str:
    """``--delimiter``: the character itself, or a name for one (tab, comma, semicolon, pipe)."""
    return delimiter_named(value)
