"""Numbers and dates as countries write them: detected per column, stored with it, reused.

``1.234,56`` and ``31.12.2024`` (a German CRM export), ``1,234.56`` and
``12/31/2024`` (an American one) become numbers and dates; a column whose
values read two ways stays text with a note saying so.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from segflow import cli, coltypes, datasets, segments
from segflow.db import Database
from tests.helpers import NOW, do_import, live, typed_values

GERMAN = (
    b"id;Umsatz;Geburtstag;Notiz\n"
    b"1;1.234,56;31.12.1990;a\n"
    b"2;12,5;01.02.1985;b\n"
    b"3;N/A;;c\n"
    b"4;1 000 000;5.3.2001;d\n"
)


def _column(db: Database, name: str) -> datasets.Column:
    found = datasets.get_dataset(db, "people").column(name)
    assert found is not None
    return found


def test_a_german_export_gives_numbers_and_dates(db: Database) -> None:
    summary = do_import(db, GERMAN)

    columns = {c["name"]: c for c in summary["columns"]}
    assert columns["Umsatz"] == {"name": "Umsatz", "type": "number", "format": "1.234,56"}
    assert columns["Geburtstag"] == {"name": "Geburtstag", "type": "date", "format": "DD.MM.YYYY"}
    assert typed_values(db, "people", "Umsatz") == {
        "1": 1234.56,
        "2": 12.5,
        "3": None,
        "4": 1_000_000.0,
    }
    assert typed_values(db, "people", "Geburtstag") == {
        "1": dt.date(1990, 12, 31),
        "2": dt.date(1985, 2, 1),
        "3": None,
        "4": dt.date(2001, 3, 5),
    }
    # Raw text stays as written, for display and export.
    assert live(db, "people")["1"]["Umsatz"] == "1.234,56"
    over_100 = {"conditions": [{"field": "Umsatz", "operator": "greater_than", "value": 100}]}
    segments.create_segment(db, name="big", dataset="people", rules_json=over_100, now=NOW)
    assert segments.member_keys(db, segments.get_segment(db, "big").id) == {"1", "4"}


def test_an_american_export_gives_numbers_and_month_first_dates(db: Database) -> None:
    do_import(db, b'id,spend,joined\n1,"1,234.50",12/31/2024\n2,99,01/15/2024\n')
    assert (_column(db, "spend").type, _column(db, "spend").format) == ("number", "1,234.56")
    assert (_column(db, "joined").type, _column(db, "joined").format) == ("date", "MM/DD/YYYY")
    assert typed_values(db, "people", "spend") == {"1": 1234.5, "2": 99.0}
    assert typed_values(db, "people", "joined")["1"] == dt.date(2024, 12, 31)


@pytest.mark.parametrize(
    ("cells", "why"),
    [
        (["1,234", "2,000"], "1,234.56 or as 1.234,56"),
        (["05/06/2024", "07/08/2024"], "DD/MM/YYYY or as MM/DD/YYYY"),
    ],
)
def test_a_column_that_reads_two_ways_stays_text_and_says_why(
    db: Database, cells: list[str], why: str
) -> None:
    rows = "".join(f'{i},"{cell}"\n' for i, cell in enumerate(cells))
    summary = do_import(db, f"id,value\n{rows}".encode())
    assert summary["columns"][1] == {"name": "value", "type": "text"}
    assert any("'value' kept as text" in n and why in n for n in summary["notes"]), summary["notes"]


def test_later_files_are_read_with_the_stored_format(db: Database) -> None:
    do_import(db, GERMAN)
    summary = do_import(db, b"id;Umsatz\n5;2.000\n6;7,25\n7;2.5\n")

    assert summary["schema_changes"] == []
    values = typed_values(db, "people", "Umsatz")
    assert (values["5"], values["6"], values["7"]) == (2000.0, 7.25, None)
    (misfit,) = summary["misfits"]
    assert (misfit["count"], misfit["examples"][0]["value"]) == (1, "2.5")


def test_the_reference_conversion_reads_formats_as_storage_does(db: Database) -> None:
    do_import(db, GERMAN)
    stored = live(db, "people")
    for name in ("Umsatz", "Geburtstag"):
        column = _column(db, name)
        expected = {
            key: coltypes.parse_value(column.type, row[name], column.format)
            for key, row in stored.items()
        }
        assert typed_values(db, "people", name) == expected


def test_a_day_the_calendar_has_not_keeps_the_column_text() -> None:
    assert coltypes.infer(["31.02.2024", "01.03.2024"]) == coltypes.TEXT


def test_the_cli_shows_each_columns_format(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kunden.csv"
    path.write_bytes(GERMAN)
    assert cli.main(["import", str(path), "--dataset", "people", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "Umsatz (number, 1.234,56), Geburtstag (date, DD.MM.YYYY)" in out
    assert cli.main(["datasets", "show", "people", "--db", db_url]) == 0
    assert "date, DD.MM.YYYY" in capsys.readouterr().out
