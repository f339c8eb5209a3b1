"""Import semantics on both engines: upsert, replace, change sequence, types, schema."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segflow import coltypes, datasets
from segflow.db import Database
from tests.helpers import do_import, keys_where, live, seqs, sequence_value, typed_values

V1 = b"id,name,spend\n1,Ann,10\n2,Bob,20\n3,Cy,30\n"


def test_first_import_numbers_every_insert_from_one_global_sequence(db: Database) -> None:
    summary = do_import(db, V1)
    assert summary["created"] is True
    assert (summary["inserted"], summary["first_seq"], summary["last_seq"]) == (3, 1, 3)
    assert sorted(s for s, _ in seqs(db, "people").values()) == [1, 2, 3]
    other = do_import(db, b"id,x\n9,a\n", dataset="other")
    assert (other["first_seq"], other["last_seq"]) == (4, 4)
    assert sequence_value(db) == 4


def test_identical_reimport_changes_nothing_and_bumps_nothing(db: Database) -> None:
    do_import(db, V1)
    before = (seqs(db, "people"), sequence_value(db), datasets.get_dataset(db, "people"))
    summary = do_import(db, V1)
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (0, 0, 3)
    assert summary["first_seq"] is None
    assert (seqs(db, "people"), sequence_value(db), datasets.get_dataset(db, "people")) == before


def test_upsert_takes_a_new_number_only_for_real_changes(db: Database) -> None:
    do_import(db, V1)
    before = seqs(db, "people")
    summary = do_import(db, b"id,name,spend\n1,Ann,10\n2,Bob,25\n4,Dee,40\n")
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (1, 1, 1)
    assert summary["deleted"] == 0
    after = seqs(db, "people")
    assert after["1"] == before["1"] and after["3"] == before["3"]
    assert {after["2"][0], after["4"][0]} == {4, 5}
    assert live(db, "people")["2"]["spend"] == "25"
    assert live(db, "people")["3"]["name"] == "Cy"  # absent from the file, kept


def test_upsert_with_fewer_columns_keeps_the_others(db: Database) -> None:
    do_import(db, V1)
    summary = do_import(db, b"id,name\n1,Anne\n")
    assert summary["updated"] == 1
    assert live(db, "people")["1"] == {"id": "1", "name": "Anne", "spend": "10"}


def test_replace_deletes_absent_records_with_tombstones_and_revives_them(db: Database) -> None:
    do_import(db, V1)
    summary = do_import(db, b"id,name,spend\n1,Ann,10\n", mode="replace", confirm_delete=True)
    assert (summary["deleted"], summary["unchanged"]) == (2, 1)
    assert (summary["first_seq"], summary["last_seq"]) == (4, 5)
    assert set(live(db, "people")) == {"1"}
    state = seqs(db, "people")
    assert state["2"][1] and state["3"][1]  # tombstones keep their key and new seq
    assert datasets.get_dataset(db, "people").record_count == 1
    again = do_import(db, b"id,name,spend\n2,Bob,21\n")
    assert (again["inserted"], again["updated"]) == (1, 0)
    assert live(db, "people")["2"] == {"id": "2", "name": "Bob", "spend": "21"}
    assert datasets.get_dataset(db, "people").record_count == 2


def test_replace_keeps_records_whose_row_was_rejected(db: Database) -> None:
    do_import(db, V1)
    summary = do_import(
        db, b"id,name,spend\n1,Ann,10\n2,Bob\n", mode="replace", confirm_delete=True
    )
    assert summary["rejected"] == 1
    assert summary["deleted"] == 1
    assert set(live(db, "people")) == {"1", "2"}


def test_new_columns_are_added_and_empty_for_existing_records(db: Database) -> None:
    do_import(db, V1)
    summary = do_import(db, b"id,tier\n1,gold\n")
    assert summary["schema_changes"] == [{"column": "tier", "change": "added", "type": "text"}]
    people = live(db, "people")
    assert people["1"]["tier"] == "gold" and people["2"]["tier"] is None


def test_column_names_match_ignoring_case(db: Database) -> None:
    do_import(db, V1)
    summary = do_import(db, b"ID,Name\n1,Anne\n")
    assert summary["schema_changes"] == []
    assert live(db, "people")["1"]["name"] == "Anne"


TYPED = (
    b"id,count,spend,active,joined,seen,zip,mixed\n"
    b"1,9,9.5,yes,2024-01-31,2024-01-01T10:00:00+02:00,02134,1\n"
    b"2,100,100,No,2024-02-29,2024-01-01 09:30,90210,x\n"
    b"3,1000,1e3,TRUE,2023-12-01,2024-01-01T07:59:59Z,10001,2\n"
    b"4,,,,,,,\n"
)


def test_types_are_inferred_and_comparisons_are_typed(db: Database) -> None:
    summary = do_import(db, TYPED)
    types = {c["name"]: c["type"] for c in summary["columns"]}
    assert types == {
        "id": "integer",
        "count": "integer",
        "spend": "number",
        "active": "boolean",
        "joined": "date",
        "seen": "datetime",
        "zip": "text",
        "mixed": "text",
    }
    # Numbers compare as numbers: as text, "9" > "100".
    assert keys_where(db, "people", "count", ">", 50) == {"2", "3"}
    assert keys_where(db, "people", "spend", ">", 99.5) == {"2", "3"}
    assert keys_where(db, "people", "joined", "<", dt.date(2024, 2, 1)) == {"1", "3"}
    assert typed_values(db, "people", "active") == {"1": True, "2": False, "3": True, "4": None}
    assert typed_values(db, "people", "seen") == {
        "1": dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC),
        "2": dt.datetime(2024, 1, 1, 9, 30, tzinfo=dt.UTC),
        "3": dt.datetime(2024, 1, 1, 7, 59, 59, tzinfo=dt.UTC),
        "4": None,
    }
    # The raw text stays as imported, for display and export.
    assert live(db, "people")["3"]["spend"] == "1e3"
    assert live(db, "people")["1"]["zip"] == "02134"


def test_reference_conversion_matches_storage(db: Database) -> None:
    do_import(db, TYPED)
    stored = live(db, "people")
    for column in ("count", "spend", "active", "joined", "seen"):
        kind = datasets.get_dataset(db, "people").column(column).type  # type: ignore[union-attr]
        expected = {k: coltypes.parse_value(kind, r[column]) for k, r in stored.items()}
        assert typed_values(db, "people", column) == expected


def test_types_widen_and_never_fail(db: Database) -> None:
    do_import(db, b"id,amount,day\n1,5,2024-01-01\n2,7,2024-01-02\n")
    summary = do_import(db, b"id,amount,day\n3,7.5,2024-01-03T12:00:00\n")
    assert summary["schema_changes"] == [
        {"column": "amount", "change": "retyped", "from": "integer", "to": "number"},
        {"column": "day", "change": "retyped", "from": "date", "to": "datetime"},
    ]
    assert keys_where(db, "people", "amount", ">", 6) == {"2", "3"}
    assert typed_values(db, "people", "day")["1"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    # Nothing widens a typed column to text (tests/test_typed_columns.py).
    summary = do_import(db, b"id,amount\n4,n/a\n5,about 8\n")
    assert summary["schema_changes"] == []
    assert typed_values(db, "people", "amount") == {
        "1": 5.0,
        "2": 7.0,
        "3": 7.5,
        "4": None,
        "5": None,
    }
    # An empty column in a later file leaves the type alone.
    assert do_import(db, b"id,day\n5,\n")["schema_changes"] == []


def test_a_column_never_seen_with_a_value_takes_its_first_values_type(db: Database) -> None:
    assert do_import(db, b"id,score\n1,\n2,\n")["columns"][1] == {"name": "score", "type": "text"}
    summary = do_import(db, b"id,score\n3,7\n")
    assert summary["schema_changes"] == [
        {"column": "score", "change": "retyped", "from": "text", "to": "integer"}
    ]
    assert keys_where(db, "people", "score", ">", 5) == {"3"}
    # Once a text column has a value it stays text.
    do_import(db, b"id,note\n1,hello\n")
    assert do_import(db, b"id,note\n2,5\n")["schema_changes"] == []


def test_default_key_detection_prefers_id_then_customer_id_then_email(db: Database) -> None:
    assert do_import(db, b"email,customer_id\na@x.io,7\n", dataset="a")["key"] == "customer_id"
    assert do_import(db, b"Email,name\na@x.io,A\n", dataset="b")["key"] == "Email"
    assert do_import(db, b"name,ID\nA,1\n", dataset="c")["key"] == "ID"
    assert do_import(db, b"name,code\nA,1\n", dataset="d", key="code")["key"] == "code"


def test_identifier_quality_is_counted_per_column(db: Database) -> None:
    data = (
        b"id,Email,phone,first_name,last_name,country,zip\n"
        b"1,a@example.com,+1 415 555 0100,Ann,Lee,US,02134\n"
        b"2,not-an-email,(415) 555-0101,,O'Brien,USA,\n"
        b"3,,12,B0b,Nguyen,us,SW1A 1AA\n"
    )
    summary = do_import(db, data)
    quality = {q["kind"]: (q["column"], q["non_empty"], q["valid"]) for q in summary["identifiers"]}
    assert quality == {
        "email": ("Email", 2, 1),
        "phone": ("phone", 3, 2),
        "first_name": ("first_name", 2, 1),
        "last_name": ("last_name", 3, 3),
        "country": ("country", 3, 2),
        "postal_code": ("zip", 2, 2),
    }


def test_dataset_names_are_validated(db: Database) -> None:
    with pytest.raises(datasets.InvalidInput, match="dataset name '../x' is not valid"):
        do_import(db, V1, dataset="../x")


def test_describe_and_delete(db: Database) -> None:
    do_import(db, V1)
    do_import(db, b"id,tier\n1,gold\n")
    info = datasets.describe_dataset(db, "people")
    assert info["records"] == 3
    assert [(c["name"], c["type"], c["non_empty"]) for c in info["columns"]] == [
        ("id", "integer", 3),
        ("name", "text", 3),
        ("spend", "integer", 3),
        ("tier", "text", 1),
    ]
    assert info["last_import"]["inserted"] == 0
    datasets.delete_dataset(db, "people")
    assert datasets.find_dataset(db, "people") is None
    with pytest.raises(datasets.NotFound):
        datasets.delete_dataset(db, "people")
    # The name can be used again, from scratch.
    assert do_import(db, b"id,x\n1,a\n")["created"] is True


_FAMILIES = [
    st.integers(-(10**18) + 1, 10**18 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f:.6g}"),
    st.sampled_from(["yes", "No", "t", "F", "TRUE"]),
    st.dates(min_value=dt.date(1900, 1, 1)).map(lambda d: d.isoformat()),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), timezones=st.sampled_from([None, dt.UTC])).map(
        lambda d: d.isoformat(sep="T", timespec="milliseconds")
    ),
    st.text(alphabet="ab1,\"' \n-", max_size=4),
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_stored_typed_values_equal_the_reference_conversion(
    db: Database, data: st.DataObject
) -> None:
    family = data.draw(st.sampled_from(_FAMILIES))
    cells = data.draw(st.lists(st.one_of(family, st.just("")), max_size=6))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "value"])
    writer.writerows([str(i), cell] for i, cell in enumerate(cells))
    name = f"h{uuid.uuid4().hex[:8]}"
    summary = do_import(db, buffer.getvalue().encode(), dataset=name)
    column_type = summary["columns"][1]["type"]
    assert column_type == (coltypes.infer(cells) if cells else "text").replace("empty", "text")
    stored = typed_values(db, name, "value")
    expected = {str(i): coltypes.parse_value(column_type, c) for i, c in enumerate(cells)}
    if column_type == "text":
        expected = {k: (c or None) for k, c in zip(expected, cells, strict=True)}
    assert stored == expected


def test_repeated_keys_in_a_first_import_are_rejected_and_the_first_row_kept(db: Database) -> None:
    # A new dataset finds repeats with its records' key index, not one on the staged rows.
    summary = do_import(db, b"id,name\n1,Ann\n2,Bob\n1,Again\n3,Cy\n2,Twice\n")
    assert (summary["inserted"], summary["rejected"], summary["duplicate_keys"]) == (3, 2, 2)
    assert [r["line"] for r in summary["rejects"]] == [4, 6]
    assert summary["rejects"][0]["reason"] == "duplicate key '1' (first seen on line 2)"
    assert {k: v["name"] for k, v in live(db, "people").items()} == {
        "1": "Ann",
        "2": "Bob",
        "3": "Cy",
    }
    assert (summary["first_seq"], summary["rows"]) == (1, 5)
    assert datasets.get_dataset(db, "people").record_count == 3


def test_records_arriving_while_a_first_import_reads_are_compared_not_doubled(
    db: Database,
) -> None:
    # The import began on an empty dataset (so its staged keys were not checked
    # for repeats); another import stored records before its apply step.
    from segflow import ingest
    from segflow.progress import Progress

    others: list[dict[str, object]] = []

    def meanwhile(progress: Progress) -> None:
        if progress.phase == "applying" and not others:
            others.append(do_import(db, b"id,name\n1,Old\n9,Other\n"))

    summary = ingest.import_csv(
        db,
        io.BytesIO(b"id,name\n1,Ann\n2,Bob\n1,Again\n"),
        ingest.ImportOptions(dataset="people"),
        source="test.csv",
        now=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        progress=meanwhile,
    )
    assert others and others[0]["inserted"] == 2
    assert (summary["inserted"], summary["updated"], summary["rejected"]) == (1, 1, 1)
    assert summary["rejects"][0]["reason"] == "duplicate key '1' (first seen on line 2)"
    assert {k: v["name"] for k, v in live(db, "people").items()} == {
        "1": "Ann",
        "2": "Bob",
        "9": "Other",
    }


def test_a_repeated_key_in_a_first_import_leaves_no_second_copy_behind(db: Database) -> None:
    # The first insert, rolled back when the key index finds the repeat, must
    # not stay in the table as dead rows (PostgreSQL) nor use up record ids.
    rows = "".join(f"{i},name {i}\n" for i in range(1, 2001))
    do_import(db, f"id,name\n{rows}".encode(), dataset="plain")
    summary = do_import(db, f"id,name\n{rows}7,again\n".encode(), dataset="repeated")
    assert (summary["inserted"], summary["rejected"]) == (2000, 1)
    sizes = []
    for name in ("plain", "repeated"):
        table = datasets.get_dataset(db, name).records_table
        with db.read() as conn:
            assert conn.exec_driver_sql(f'SELECT MIN(rid), MAX(rid) FROM "{table}"').one() == (
                1,
                2000,
            )
            if db.is_postgres:
                sizes.append(
                    conn.exec_driver_sql("SELECT pg_relation_size(%s)", (f'"{table}"',)).scalar()
                )
    if db.is_postgres:
        assert sizes[0] == sizes[1]
