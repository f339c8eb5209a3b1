"""A stored typed column keeps its type: empty-like cells and cells that do not fit.

An export's ``N/A`` once widened a number column to text, which turned the
rules of every segment on it into errors while the summary said nothing.
Now empty-like cells are empty, other cells that do not fit keep their raw
text with no typed value and are counted, and the segment goes on.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from segflow import cli, coltypes, datasets, engine, retype, segments
from segflow.cli.output import misfit_lines
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import InvalidInput, NotFound
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.helpers import NOW, do_import, live, typed_values

PEOPLE = b"id,name,Lifetime Value\n" + b"".join(
    f"{i},P{i},{i * 100}\n".encode() for i in range(1, 11)
)
OVER_500 = {"conditions": [{"field": "Lifetime Value", "operator": "greater_than", "value": 500}]}


def _members(db: Database) -> int:
    (segment,) = segments.list_segments(db)
    assert segment.error is None, segment.error
    return int(segment.member_count)


@pytest.fixture
def spenders(db: Database) -> Database:
    do_import(db, PEOPLE)
    segments.create_segment(db, name="spenders", dataset="people", rules_json=OVER_500, now=NOW)
    engine.tick(db, NOW)
    assert _members(db) == 5  # 600 .. 1000
    return db


@pytest.mark.parametrize("empty", ["N/A", "n/a", "NA", "NULL", "null", "-", "none", " #N/A "])
def test_an_empty_like_cell_is_empty_for_typing(empty: str) -> None:
    assert coltypes.infer(["1", empty, "2.5"]) == coltypes.NUMBER
    assert coltypes.parse_value(coltypes.NUMBER, empty) is None


def test_a_file_of_empty_like_cells_keeps_a_new_column_typed(db: Database) -> None:
    summary = do_import(db, b"id,orders\n1,3\n2,NULL\n3,N/A\n")
    assert summary["columns"][1] == {"name": "orders", "type": "integer"}
    assert typed_values(db, "people", "orders") == {"1": 3, "2": None, "3": None}
    # The raw text stays as written, for display and export.
    assert live(db, "people")["2"]["orders"] == "NULL"


def test_five_n_a_cells_in_an_upsert_leave_the_column_a_number_and_the_segment_live(
    spenders: Database,
) -> None:
    db = spenders
    change = b"id,Lifetime Value\n" + b"".join(f"{i},N/A\n".encode() for i in range(1, 6))
    summary = do_import(db, change + b"6,50\n")

    assert summary["schema_changes"] == [] and summary["misfits"] == []
    assert {c["name"]: c["type"] for c in summary["columns"]}["Lifetime Value"] == "integer"
    report = engine.tick(db, NOW)
    assert [(o.error, o.exited) for o in report.outcomes] == [(None, 1)]
    assert _members(db) == 4  # 6 left; 7 .. 10 stay


def test_cells_that_do_not_fit_are_counted_with_their_lines_and_the_segment_goes_on(
    spenders: Database,
) -> None:
    db = spenders
    change = b"id,Lifetime Value\n6,N/A?\n7,about 700\n8,800\n9,tbd\n10,n.a.\n11,1100\n"
    summary = do_import(db, change)

    assert summary["schema_changes"] == []
    (misfit,) = summary["misfits"]
    assert misfit == {
        "column": "Lifetime Value",
        "type": "integer",
        "count": 4,
        "examples": [
            {"line": 2, "value": "N/A?"},
            {"line": 3, "value": "about 700"},
            {"line": 5, "value": "tbd"},
        ],
    }
    assert misfit_lines(summary["misfits"])[0].startswith(
        "Lifetime Value: 4 values are not whole numbers, e.g. line 2 'N/A?', line 3 'about 700'"
    )
    values = typed_values(db, "people", "Lifetime Value")
    assert (values["6"], values["8"], values["10"], values["11"]) == (None, 800, None, 1100)
    assert live(db, "people")["7"]["Lifetime Value"] == "about 700"
    report = engine.tick(db, NOW)
    assert all(outcome.error is None for outcome in report.outcomes)
    # 6, 7, 9 and 10 have no number any more and leave; 11 enters; 8 stays.
    assert _members(db) == 2


def test_a_date_that_the_calendar_refuses_does_not_fit_a_date_column(db: Database) -> None:
    do_import(db, b"id,joined\n1,2024-01-31\n")
    summary = do_import(db, b"id,joined\n2,2023-02-30\n3,2024-02-29\n")
    assert summary["misfits"][0]["count"] == 1
    assert typed_values(db, "people", "joined")["2"] is None
    assert typed_values(db, "people", "joined")["3"] is not None


def test_a_whole_number_column_widens_to_numbers_but_not_past_them(db: Database) -> None:
    do_import(db, b"id,score\n1,5\n")
    summary = do_import(db, b"id,score\n2,5.5\n")
    assert summary["schema_changes"] == [
        {"column": "score", "change": "retyped", "from": "integer", "to": "number"}
    ]
    summary = do_import(db, b"id,score\n3,oops\n")
    assert summary["schema_changes"] == []
    assert summary["misfits"][0]["type"] == "number"


# -- retype: the user's explicit act


def test_retype_refuses_values_that_do_not_fit_and_changes_nothing(spenders: Database) -> None:
    db = spenders
    do_import(db, b"id,Lifetime Value\n7,about 700\n9,tbd\n")
    before = typed_values(db, "people", "Lifetime Value")

    with pytest.raises(InvalidInput) as refused:
        retype.retype(db, "people", "Lifetime Value", "number", now=NOW)

    message = str(refused.value)
    assert "2 stored values do not fit number" in message
    assert "7 'about 700', 9 'tbd'" in message
    assert datasets.get_dataset(db, "people").column("Lifetime Value").type == "integer"  # type: ignore[union-attr]
    assert typed_values(db, "people", "Lifetime Value") == before


def test_retype_narrows_when_every_value_fits_and_reevaluates_the_segments(db: Database) -> None:
    do_import(db, b"id,score\n1,5\n2,x\n")
    assert datasets.get_dataset(db, "people").column("score").type == "text"  # type: ignore[union-attr]
    scored = {"conditions": [{"field": "score", "operator": "is_not_empty"}]}
    segments.create_segment(db, name="scored", dataset="people", rules_json=scored, now=NOW)
    do_import(db, b"id,score\n2,7\n3,N/A\n")
    engine.tick(db, NOW)
    assert segments.list_segments(db)[0].member_count == 3  # as text, "N/A" is a value

    changed = retype.retype(db, "people", "score", "integer", now=NOW)

    assert changed.as_dict() == {
        "dataset": "people",
        "column": "score",
        "from": "text",
        "to": "integer",
        "from_format": None,
        "format": None,
        "values": 3,
        "segments": ["scored"],
    }
    assert typed_values(db, "people", "score") == {"1": 5, "2": 7, "3": None}
    over_6 = {"conditions": [{"field": "score", "operator": "greater_than", "value": 6}]}
    segments.create_segment(db, name="over 6", dataset="people", rules_json=over_6, now=NOW)
    engine.tick(db, NOW)
    counts = {s.name: s.member_count for s in segments.list_segments(db)}
    assert counts == {"over 6": 1, "scored": 2}


def test_retype_refuses_when_a_segment_rule_does_not_fit_the_new_type(spenders: Database) -> None:
    with pytest.raises(InvalidInput) as refused:
        retype.retype(spenders, "people", "Lifetime Value", "text", now=NOW)
    assert "'spenders'" in str(refused.value) and "greater_than" in str(refused.value)
    column = datasets.get_dataset(spenders, "people").column("Lifetime Value")
    assert column is not None and column.type == "integer"


def test_retype_names_unknown_types_columns_and_the_key(db: Database) -> None:
    do_import(db, b"id,score\n1,5\n")
    with pytest.raises(InvalidInput, match="choose one of text, integer"):
        retype.retype(db, "people", "score", "float", now=NOW)
    with pytest.raises(NotFound, match="no column 'scor'"):
        retype.retype(db, "people", "scor", "number", now=NOW)
    with pytest.raises(InvalidInput, match="key"):
        retype.retype(db, "people", "id", "integer", now=NOW)


def test_retype_through_the_cli_and_the_api_say_the_same(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    do_import(db, b"id,day\n1,2024-01-31T10:00:00\n2,2024-02-01\n")
    assert cli.main(["datasets", "retype", "people", "day", "date", "--db", db_url]) == 1
    assert "1 stored value does not fit date" in capsys.readouterr().err
    assert cli.main(["datasets", "retype", "people", "day", "text", "--db", db_url]) == 0
    assert "column 'day' of dataset 'people' is now text (was datetime" in capsys.readouterr().out

    app = create_app(db, Settings(), background=False)
    with TestClient(app) as client:
        answer = client.put("/api/datasets/people/columns/day/type", json={"type": "datetime"})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["from"], answer.json()["to"]) == ("text", "datetime")
        refused = client.put("/api/datasets/people/columns/day/type", json={"type": "integer"})
        assert refused.status_code == 400
        assert "2 stored values do not fit integer" in refused.json()["error"]["message"]

    with live_server(db, Settings()) as server:
        assert (
            cli.main(["datasets", "retype", "people", "day", "text", "--server", server.url]) == 0
        )
        out = capsys.readouterr().out
        assert "column 'day' of dataset 'people' is now text (was datetime" in out
        assert (
            cli.main(["datasets", "retype", "people", "day", "date", "--server", server.url]) == 1
        )
        assert "1 stored value does not fit date" in capsys.readouterr().err


def test_phone_and_postal_code_columns_stay_text_whatever_they_hold(db: Database) -> None:
    summary = do_import(
        db, b"id,mobile,zip,amount\n1,447700900123,10001,5\n2,12025550100,94105,6\n"
    )
    types = {c["name"]: c["type"] for c in summary["columns"]}
    assert types == {"id": "integer", "mobile": "text", "zip": "text", "amount": "integer"}
    segments.create_segment(
        db,
        name="uk",
        dataset="people",
        rules_json={"conditions": [{"field": "mobile", "operator": "starts_with", "value": "44"}]},
        now=NOW,
    )
    assert segments.list_segments(db)[0].member_count == 1


def test_widening_a_column_leaves_cells_that_did_not_fit_without_a_value(db: Database) -> None:
    do_import(db, b"id,amount\n1,5\n2,6\n")
    assert do_import(db, b"id,amount\n3,abc\n")["misfits"][0]["count"] == 1
    summary = do_import(db, b"id,amount\n4,2.5\n")
    assert summary["schema_changes"][0]["to"] == "number"
    # Converting "abc" would give 0 on SQLite and fail on PostgreSQL.
    assert typed_values(db, "people", "amount") == {"1": 5.0, "2": 6.0, "3": None, "4": 2.5}


def test_a_postal_code_column_first_seen_empty_stays_text(db: Database) -> None:
    do_import(db, b"id,amount,zip\n1,5,\n")
    summary = do_import(db, b"id,amount,zip\n2,5,90210\n")
    assert summary["schema_changes"] == []
    assert datasets.get_dataset(db, "people").column("zip").type == "text"  # type: ignore[union-attr]


def test_retype_reads_values_in_the_columns_format(db: Database) -> None:
    do_import(db, b"id;amount\n1;1.234\n2;1.234.567\n")
    column = datasets.get_dataset(db, "people").column("amount")
    assert column is not None and (column.type, column.format) == ("integer", "1.234,56")
    do_import(db, b"id;amount\n2;5\n")

    retype.retype(db, "people", "amount", "number", now=NOW)

    column = datasets.get_dataset(db, "people").column("amount")
    assert column is not None and (column.type, column.format) == ("number", "1.234,56")
    assert typed_values(db, "people", "amount") == {"1": 1234.0, "2": 5.0}
