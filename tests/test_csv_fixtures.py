"""Every bad-input case and the RFC 4180 quoting cases, on both engines.

Each fixture under tests/fixtures/csv asserts either the exact error (and
that nothing was stored) or the exact stored result.
"""

from __future__ import annotations

from typing import Any

import pytest

from segflow import datasets
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import ImportFailed
from tests.helpers import FIXTURES, do_import, live, snapshot

SEED = b"id,name,city\n1,Ann,Paris\n2,Bob,Rome\n"

BAD_FILES: list[tuple[str, dict[str, Any], str]] = [
    ("empty.csv", {}, "the file is empty (expected a header line)"),
    (
        "blank_first_line.csv",
        {},
        "line 1: the first line is blank; it must be the header naming the columns",
    ),
    (
        "blank_header_name.csv",
        {},
        "line 1: header column 2 has no name (every column needs one)",
    ),
    (
        "duplicate_header.csv",
        {},
        "line 1, column 'email': header names column 'email' twice (columns 2 and 3; "
        "names are compared ignoring case)",
    ),
    (
        "undecodable.csv",
        {},
        "line 3: byte e9 at byte offset 19 is not valid utf-8 (choose the file's encoding, "
        "--encoding or the upload's encoding field: most likely cp1252, Windows-1252, which "
        "Excel on Windows writes; else latin-1)",
    ),
    (
        "nul_byte.csv",
        {},
        "line 3: contains a NUL byte (is this a binary or UTF-16 file? try the encoding utf-16)",
    ),
    (
        "unterminated_quote.csv",
        {},
        "line 3: a quoted field starting in this record is never closed (unterminated quote)",
    ),
    (
        "text_after_quote.csv",
        {},
        "line 2: a closing quote is followed by other characters instead of ',' or a line end "
        "(quotes inside a quoted field must be doubled)",
    ),
    (
        "oversized_field.csv",
        {},
        "line 2: a field in the record starting here is longer than 100 characters, the limit "
        "(an unterminated quote causes this too)",
    ),
    (
        "no_key_column.csv",
        {},
        "line 1: the key column 'id' is not in the file (columns: name, city)",
    ),
    ("latin1.csv", {"encoding": "klingon"}, "unknown encoding 'klingon'"),
    ("semicolon.csv", {"delimiter": ";;"}, "delimiter must be one character, got ';;'"),
    (
        "semicolon.csv",
        {"key": "name"},
        "dataset 'people' is keyed by 'id'; its key cannot change to 'name'",
    ),
]


@pytest.mark.parametrize(("fixture", "options", "message"), BAD_FILES)
def test_bad_file_is_refused_with_its_reason_and_nothing_changes(
    db: Database, fixture: str, options: dict[str, Any], message: str
) -> None:
    do_import(db, SEED)
    before = snapshot(db, "people")
    path = FIXTURES / fixture
    with pytest.raises(ImportFailed) as caught:
        do_import(db, path, settings=Settings(max_field_chars=100), **options)
    where = str(path) + ("" if message.startswith("line") else ": ")
    assert str(caught.value) == (
        f"{where}, {message}" if message.startswith("line") else where + message
    )
    assert snapshot(db, "people") == before


def test_first_import_without_a_key_column_asks_for_one(db: Database) -> None:
    path = FIXTURES / "no_key_column.csv"
    with pytest.raises(ImportFailed) as caught:
        do_import(db, path)
    assert str(caught.value) == (
        f"{path}: no key column given and none of id, customer_id, email, email_address is "
        "present (names compare ignoring case, spaces, '_' and '-'); "
        "choose one, --key or the upload's key field (columns: name, city)"
    )
    with pytest.raises(ImportFailed, match=r"line 1: the key column 'nope' is not in the file"):
        do_import(db, path, key="nope")
    assert datasets.find_dataset(db, "people") is None


def test_failed_first_import_creates_no_dataset(db: Database) -> None:
    with pytest.raises(ImportFailed):
        do_import(db, FIXTURES / "unterminated_quote.csv")
    assert datasets.list_datasets(db) == []


GOOD_FILES: list[tuple[str, dict[str, Any], dict[str, dict[str, str | None]]]] = [
    (
        "bom_crlf.csv",
        {},
        {"1": {"id": "1", "name": "Ann"}, "2": {"id": "2", "name": "Bob"}},
    ),
    (
        "quoting.csv",
        {},
        {
            "1": {"id": "1", "note": "a, b"},
            "2": {"id": "2", "note": 'she said "hi"'},
            "3": {"id": "3", "note": "two\nlines"},
            "4": {"id": "4", "note": None},
            "5": {"id": "5", "note": "plain"},
        },
    ),
    ("quoting_crlf.csv", {}, {"1": {"id": "1", "note": "x\r\ny"}, "2": {"id": "2", "note": "z"}}),
    (
        "semicolon.csv",
        {},
        {
            "1": {"id": "1", "name": "Ann", "city": "Paris"},
            "2": {"id": "2", "name": "Bob", "city": "Rome"},
        },
    ),
    ("tab.tsv", {}, {"1": {"id": "1", "name": "Ann", "city": "Paris, France"}}),
    ("tab.tsv", {"delimiter": "\t"}, {"1": {"id": "1", "name": "Ann", "city": "Paris, France"}}),
    ("cr_only.csv", {}, {"1": {"id": "1", "name": "Ann"}, "2": {"id": "2", "name": "Bob"}}),
    (
        "no_final_newline.csv",
        {},
        {"1": {"id": "1", "name": "Ann"}, "2": {"id": "2", "name": "Bob"}},
    ),
    ("unicode.csv", {}, {"1": {"id": "1", "name": "Zoë 😀"}, "2": {"id": "2", "name": "Müller"}}),
    ("latin1.csv", {"encoding": "latin-1"}, {"1": {"id": "1", "name": "José"}}),
    ("blank_lines.csv", {}, {"1": {"id": "1", "name": "Ann"}, "2": {"id": "2", "name": "Bob"}}),
    ("header_only.csv", {}, {}),
]


@pytest.mark.parametrize(("fixture", "options", "expected"), GOOD_FILES)
def test_well_formed_files_store_exactly_their_values(
    db: Database, fixture: str, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    summary = do_import(db, FIXTURES / fixture, **options)
    assert summary["rejected"] == 0
    assert summary["inserted"] == len(expected)
    assert live(db, "people") == expected


def test_quoted_records_keep_their_first_line_numbers(db: Database) -> None:
    # Record 4 of quoting.csv starts on line 6: record 3 spans lines 4 and 5.
    data = (FIXTURES / "quoting.csv").read_bytes().replace(b'4,""', b"4")
    summary = do_import(db, data)
    assert summary["rejects"] == [{"line": 6, "reason": "expected 2 fields, found 1"}]


def test_bad_rows_are_rejected_individually_and_the_rest_imports(db: Database) -> None:
    summary = do_import(db, FIXTURES / "row_rejects.csv")
    assert summary["rejects"] == [
        {"line": 3, "reason": "expected 3 fields, found 2"},
        {"line": 4, "reason": "expected 3 fields, found 4"},
        {"line": 5, "reason": "the key column 'id' is empty"},
        {"line": 6, "reason": "the key column 'id' is empty"},
        {"line": 8, "reason": "duplicate key '1' (first seen on line 2)"},
    ]
    assert (summary["inserted"], summary["rejected"], summary["duplicate_keys"]) == (2, 5, 1)
    assert summary["rows"] == 7
    assert live(db, "people") == {
        "1": {"id": "1", "name": "Ann", "city": "Paris"},
        "5": {"id": "5", "name": "Fay", "city": "Lima"},
    }
