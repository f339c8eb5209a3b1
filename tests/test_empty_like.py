"""Empty-like cells as a setting (``SEGFLOW_EMPTY_LIKE``): one list that typing,
the SQL conversions, the Arrow path's column checks, retype and the preview all read.
On both engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segflow import cli, coltypes, datasets, ingest, retype
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import InvalidInput
from tests.helpers import NOW, do_import, typed_values

DUTCH = Settings(empty_like=("n.v.", "onbekend"))
#: Numbers with Dutch "no value" cells, and an ``NA`` that is a real value (Namibia).
FILE = b"id,amount,country\n1,5,NA\n2,n.v.,NL\n3,Onbekend,DE\n4,7,n.v.\n"


@pytest.fixture(autouse=True)
def _built_in_words() -> Iterator[None]:
    yield
    coltypes.use_empty_like(None)  # the process's words, as the other tests expect


def _types(summary: dict[str, object]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in summary["columns"]}  # type: ignore[attr-defined]


def test_the_setting_is_read_from_the_environment_and_checked() -> None:
    assert Settings.from_env({}).empty_like is None
    assert Settings.from_env({"SEGFLOW_EMPTY_LIKE": " N.V. , onbekend,"}).empty_like == (
        "n.v.",
        "onbekend",
    )
    for bad, why in (("n1", "no digit"), ("it's", "quote"), ("yes", "boolean value")):
        with pytest.raises(InvalidInput, match=why):
            Settings.from_env({"SEGFLOW_EMPTY_LIKE": f"n/a,{bad}"})


def test_configured_words_are_empty_for_typing_and_in_sql(db: Database) -> None:
    summary = do_import(db, FILE, settings=DUTCH)
    assert _types(summary)["amount"] == "integer"
    # The built-in words are replaced, not added to: NA is Namibia here.
    assert datasets.get_dataset(db, "people").column("country").type == "text"  # type: ignore[union-attr]
    assert typed_values(db, "people", "amount") == {"1": 5, "2": None, "3": None, "4": 7}
    # A later import with the same words: no misfits.
    later = do_import(db, b"id,amount\n5,N.V.\n", settings=DUTCH)
    assert later["misfits"] == []


def test_with_the_built_in_words_the_same_file_is_text(db: Database) -> None:
    assert _types(do_import(db, FILE))["amount"] == "text"


def test_a_file_read_by_arrow_is_typed_with_the_same_words(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(
        b"id,amount\n" + b"".join(f"{i},{'n.v.' if i % 3 else i}\n".encode() for i in range(3000))
    )
    with path.open("rb") as stream:  # a clean file: Arrow reads it and the checks type its batches
        summary = ingest.import_csv(
            db, stream, ingest.ImportOptions("people"), source=str(path), now=NOW, settings=DUTCH
        )
    assert _types(summary)["amount"] == "integer"
    assert typed_values(db, "people", "amount")["3"] == 3


def test_the_preview_and_retype_use_the_words(db: Database) -> None:
    preview = do_import(db, FILE, settings=DUTCH, dry_run=True)
    columns = {c["name"]: c for c in preview["columns"]}
    assert columns["amount"]["empty_like"] == {"Onbekend": 1, "n.v.": 1}
    assert columns["country"]["empty_like"] == {"n.v.": 1}
    do_import(db, FILE, settings=Settings())  # the built-in words: amount is text
    with pytest.raises(InvalidInput, match="2 stored values do not fit integer"):
        retype.retype(db, "people", "amount", "integer", now=NOW)
    coltypes.use_empty_like(DUTCH.empty_like)
    assert retype.retype(db, "people", "amount", "integer", now=NOW).new == "integer"
    assert typed_values(db, "people", "amount") == {"1": 5, "2": None, "3": None, "4": 7}


def test_the_cli_reads_the_setting(
    db: Database,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(FILE)
    monkeypatch.setenv("SEGFLOW_EMPTY_LIKE", "n.v.,onbekend")
    assert cli.main(["import", str(path), "--dataset", "people", "--db", db_url]) == 0
    assert "amount (integer)" in capsys.readouterr().out
    monkeypatch.setenv("SEGFLOW_EMPTY_LIKE", "n.v.,2")
    assert cli.main(["datasets", "list", "--db", db_url]) == 1
    assert "empty-like word '2' is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize("word", ["n%a", 'say "no"', "n\\a", "—", "n,a"])
def test_words_that_would_break_the_sql_or_the_setting_are_refused(word: str) -> None:
    # '%' is psycopg's placeholder mark in the SQL that lists the words.
    with pytest.raises(InvalidInput, match="is not allowed"):
        coltypes.empty_like_words([word])
