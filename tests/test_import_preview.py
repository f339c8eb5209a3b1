"""The preview of an import, storing nothing: how the file was read, the key
candidates, each column's type with examples, the empty-like tokens found, a
quick look at a file's first megabytes; ``datasets retype --format``; the
mass-delete guard's numbers as fields of the API's answer. On both engines,
through the library, the CLI and the real HTTP app.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from segflow import cli, datasets, engine, ingest, retype, segments, worker
from segflow.activation import destinations, links
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import ImportFailed, InvalidInput
from segflow.ingest import preview
from segflow.ingest.options import MB
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.helpers import NOW, do_import, live, typed_values

#: A CRM export as Excel writes it: BOM, ``;``, decimal commas, dotted dates,
#: ``N/A``/``NULL``/``-`` cells, a quoted line break, a repeated and an empty key.
CRM = (
    "\ufeffCustomer ID;E-mail Address;Name;Lifetime Value;Signed up;Orders\n"
    "C-1;ann@example.com;Ann;1.234,56;31.12.2024;3\n"
    "C-2;bob@example.com;Bob;N/A;01.02.2023;NULL\n"
    'C-3;;"Cy\nSmith";12,50;15.06.2022;-\n'
    "C-4;ann@example.com;Dee;NULL;n/a;7\n"
    "C-4;dee@example.com;Dee again;5,00;01.01.2020;1\n"
    ";nokey@example.com;Nobody;1,00;01.01.2020;1\n"
).encode()


def _dry(db: Database, data: bytes, **options: Any) -> dict[str, Any]:
    return do_import(db, data, dataset="crm", dry_run=True, **options)


def _columns(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in summary["columns"]}


# ------------------------------------------------------------ what the preview answers


def test_key_candidates_say_whether_each_is_unique_and_filled(db: Database) -> None:
    summary = _dry(db, CRM)
    candidates = {c["column"]: c for c in summary["key_candidates"]}
    # Named like keys, and Name: every row has one, all different. Numbers
    # with decimals and dates are unique by chance, not candidates.
    assert set(candidates) == {"Customer ID", "E-mail Address", "Name"}
    key = candidates["Customer ID"]
    assert key["chosen"] and not key["unique"]
    assert (key["duplicates"], key["empty"]) == (1, 1)  # C-4 twice, the row with no key
    email = candidates["E-mail Address"]
    assert not email["chosen"] and email["named_like_key"]
    assert (email["unique"], email["duplicates"], email["empty"]) == (False, 1, 1)
    assert candidates["Name"]["unique"] and not candidates["Name"]["named_like_key"]
    assert datasets.find_dataset(db, "crm") is None


def test_a_file_without_a_key_is_previewed_with_its_candidates(db: Database) -> None:
    data = b"Region,Order ID,total\nN,A1,5\nN,A2,6\n"
    with pytest.raises(ImportFailed, match="no key column given"):
        do_import(db, data)
    summary = _dry(db, data)
    assert summary["key_guessed"] is True and summary["key"] == "Order ID"
    assert any("no key column was given" in note for note in summary["notes"])
    (only,) = [c for c in summary["key_candidates"] if c["column"] == "Order ID"]
    assert only == {
        "column": "Order ID",
        "chosen": True,
        "named_like_key": True,
        "unique": True,
        "empty": 0,
        "duplicates": 0,
    }


def test_types_come_with_examples_and_formats(db: Database) -> None:
    columns = _columns(_dry(db, CRM))
    assert columns["Lifetime Value"]["type"] == "number"
    assert columns["Lifetime Value"]["format"] == "1.234,56"
    # Examples hold something: empty-like cells are no examples.
    assert columns["Lifetime Value"]["examples"] == ["1.234,56", "12,50", "5,00"]
    assert columns["Signed up"]["format"] == "DD.MM.YYYY"
    assert columns["Name"]["examples"] == ["Ann", "Bob", "Cy\nSmith"]
    assert columns["Orders"] == {
        "name": "Orders",
        "type": "integer",
        "examples": ["3", "7", "1"],
        "empty": 2,
        "empty_like": {"-": 1, "NULL": 1},
    }


def test_empty_like_tokens_are_counted_per_column_as_written(db: Database) -> None:
    columns = _columns(_dry(db, CRM))
    assert columns["Lifetime Value"]["empty_like"] == {"N/A": 1, "NULL": 1}
    assert columns["Signed up"]["empty_like"] == {"n/a": 1}
    assert columns["Name"]["empty_like"] == {}


def test_the_encoding_bom_and_header_line_are_named(db: Database) -> None:
    summary = _dry(db, CRM)
    assert (summary["encoding"], summary["bom"], summary["delimiter"]) == ("utf-8", "utf-8", ";")
    assert summary["header_line"] == 1
    utf16 = _dry(db, "sep=,\nid,name\n1,Zoë\n".encode("utf-16"))
    assert (utf16["encoding"], utf16["bom"], utf16["header_line"]) == ("utf-16", "utf-16-le", 2)
    latin = _dry(db, "id,name\n1,Zoë\n".encode("cp1252"), encoding="cp1252")
    assert (latin["encoding"], latin["bom"]) == ("cp1252", "")
    assert _columns(latin)["name"]["examples"] == ["Zoë"]


def test_an_existing_dataset_gets_counts_and_the_same_analysis(db: Database) -> None:
    do_import(db, b"id,spend\n1,10\n2,20\n", dataset="crm")
    summary = _dry(db, b"id,spend\n1,11\n3,N/A\n", mode="replace")
    assert (summary["inserted"], summary["updated"], summary["deleted"]) == (1, 1, 1)
    assert _columns(summary)["spend"]["empty_like"] == {"N/A": 1}
    assert summary["sample"] == {"bytes": 20, "rows": 2, "whole_file": True}
    assert live(db, "crm") == {"1": {"id": "1", "spend": "10"}, "2": {"id": "2", "spend": "20"}}


def test_a_real_import_has_no_preview_fields(db: Database) -> None:
    summary = do_import(db, CRM, dataset="crm")
    assert "key_candidates" not in summary and "sample" not in summary
    assert "examples" not in summary["columns"][0]
    assert summary["encoding"] == "utf-8"


# ------------------------------------------------------------ the quick look


def _rows(count: int, quoted_every: int = 0) -> bytes:
    lines = ["id,note"]
    for i in range(count):
        note = f'"line one\nline {i}, two"' if quoted_every and i % quoted_every == 0 else f"n{i}"
        lines.append(f"{i},{note}")
    return ("\n".join(lines) + "\n").encode()


def test_a_sample_reads_only_whole_rows_of_the_first_bytes(db: Database) -> None:
    data = _rows(1_000, quoted_every=3)
    for size in range(40, 400, 7):  # cuts falling inside quoted fields too
        summary = _dry(db, data, sample_bytes=size)
        assert summary["sample"]["whole_file"] is False
        assert summary["bytes"] == summary["sample"]["bytes"] <= size
        assert data[: summary["bytes"]].endswith(b"\n")
        assert summary["rejected"] == 0
        assert summary["inserted"] == summary["rows"] == summary["sample"]["rows"]
        assert any("a sample: only the first" in note for note in summary["notes"])
    whole = _dry(db, data, sample_bytes=len(data))
    assert whole["sample"] == {"bytes": len(data), "rows": 1_000, "whole_file": True}


def test_a_sample_of_a_cr_only_and_a_utf16_file(db: Database) -> None:
    cr = b"id,note\r1,a\r2,b\r3,c\r"
    assert _dry(db, cr, sample_bytes=14)["inserted"] == 1
    utf16 = "id,note\n1,a\n2,b\n3,c\n".encode("utf-16")
    summary = _dry(db, utf16, sample_bytes=len(utf16) - 3)
    assert (summary["inserted"], summary["encoding"]) == (2, "utf-16")


def test_a_sample_needs_a_dry_run_and_a_whole_line(db: Database) -> None:
    with pytest.raises(InvalidInput, match="only a dry run reads a sample"):
        do_import(db, _rows(10), sample_bytes=100)
    with pytest.raises(ImportFailed, match="hold no whole line"):
        _dry(db, _rows(10), sample_bytes=5)
    assert datasets.find_dataset(db, "people") is None


def test_the_cut_counts_quotes_only_outside_doubled_ones() -> None:
    data = b'id,n\n1,"a ""quoted"" word\nand more"\n2,b\n3,"open\n'
    cut = preview.sample(io.BytesIO(data), len(data) - 1, "utf-8", "x.csv")
    assert cut is not None
    stream, taken = cut
    assert stream.read() == b'id,n\n1,"a ""quoted"" word\nand more"\n2,b\n'
    assert not taken.whole


# ------------------------------------------------------------ the CLI and the API


def test_the_cli_prints_a_preview(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes(CRM)
    argv = ["import", str(path), "--dataset", "crm", "--dry-run", "--db", db_url]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Preview of {path} for a new dataset 'crm' (key 'Customer ID'")
    assert "encoding utf-8 with a UTF-8 byte order mark, delimiter ';'" in out
    assert "would insert 4, update 0, delete 0" in out
    assert "Customer ID (the key): not unique: 1 repeated value, 1 empty cell" in out
    assert "number, 1.234,56" in out and "empty-like: 'N/A' x1, 'NULL' x1" in out
    assert datasets.find_dataset(db, "crm") is None


def test_the_cli_takes_a_sample_in_megabytes(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.csv"
    data = _rows(200_000)
    assert len(data) > 2 * MB
    path.write_bytes(data)
    argv = ["import", str(path), "--dataset", "big", "--db", db_url, "--sample-mb", "1"]
    assert cli.main(argv) == 1
    assert "--sample-mb reads part of the file, which only --dry-run does" in (
        capsys.readouterr().err
    )
    assert cli.main([*argv, "--dry-run", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sample"]["whole_file"] is False
    assert MB - 20 < summary["sample"]["bytes"] <= MB
    assert summary["inserted"] == summary["sample"]["rows"] < 200_000
    # A sample as large as the file is the file; a sample is held in memory, hence a limit.
    assert cli.main([*argv[:-1], "3", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample"]["whole_file"] is True
    for size in ("300", "inf", "nan", "0"):
        assert cli.main([*argv[:-1], size, "--dry-run"]) == 1
        assert "a sample is more than 0 and at most 256 MB" in capsys.readouterr().err


def test_the_api_previews_with_the_analysis_and_a_sample(db: Database) -> None:
    app = create_app(db, Settings(), background=False)
    data = _rows(200_000)
    with TestClient(app) as client:
        answer = client.post(
            "/api/datasets/crm/imports/preview",
            files={"file": ("crm.csv", CRM, "text/csv")},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["dry_run"] is True and body["encoding"] == "utf-8"
        assert {c["column"] for c in body["key_candidates"]} >= {"Customer ID", "E-mail Address"}
        assert _columns(body)["Orders"]["empty_like"] == {"-": 1, "NULL": 1}
        sampled = client.post(
            "/api/datasets/big/imports/preview",
            files={"file": ("big.csv", data, "text/csv")},
            data={"sample_mb": "0.5"},
        )
        assert sampled.status_code == 200, sampled.text
        assert sampled.json()["sample"]["whole_file"] is False
        assert sampled.json()["sample"]["bytes"] <= MB // 2
        refused = client.post(
            "/api/datasets/big/imports",
            files={"file": ("big.csv", data[:1000], "text/csv")},
            data={"sample_mb": "0.5"},
        )
        assert refused.status_code == 400
        assert "only a preview does" in refused.json()["error"]["message"]
        for size in ("inf", "nan", "300"):  # a 500 for inf once
            wrong = client.post(
                "/api/datasets/big/imports/preview",
                files={"file": ("big.csv", data[:1000], "text/csv")},
                data={"sample_mb": size},
            )
            assert wrong.status_code == 422, (size, wrong.text)
            assert "sample_mb" in wrong.json()["error"]["message"]
    assert datasets.find_dataset(db, "crm") is None
    assert datasets.find_dataset(db, "big") is None


# ------------------------------------------------------------ retype --format


def test_retype_with_a_format_reads_the_values_written_so(db: Database) -> None:
    do_import(db, b"id;amount;day\n1;1.234;01.02.2024\n2;12,5;N/A\n3;x;31.12.2024\n")
    with pytest.raises(InvalidInput, match=r"1 stored value does not fit number written 1.234,56"):
        retype.retype(db, "people", "amount", "number", now=NOW, fmt="1.234,56")
    do_import(db, b"id;amount\n3;7\n")
    changed = retype.retype(db, "people", "amount", "number", now=NOW, fmt="1.234,56")
    assert (changed.new, changed.format) == ("number", "1.234,56")
    assert typed_values(db, "people", "amount") == {"1": 1234.0, "2": 12.5, "3": 7.0}
    day = retype.retype(db, "people", "day", "date", now=NOW, fmt="dd.mm.yyyy")
    assert day.format == "DD.MM.YYYY"
    assert {k: str(v)[:10] for k, v in typed_values(db, "people", "day").items()} == {
        "1": "2024-02-01",
        "2": "None",
        "3": "2024-12-31",
    }


def test_retype_names_unknown_and_mismatched_formats(db: Database) -> None:
    do_import(db, b"id,amount\n1,5\n")
    with pytest.raises(InvalidInput, match=r"unknown format '1 234'.*number formats: 1,234.56"):
        retype.retype(db, "people", "amount", "number", now=NOW, fmt="1 234")
    with pytest.raises(InvalidInput, match="format 'DD.MM.YYYY' does not go with type number"):
        retype.retype(db, "people", "amount", "number", now=NOW, fmt="DD.MM.YYYY")
    with pytest.raises(InvalidInput, match="does not go with type text: text takes no format"):
        retype.retype(db, "people", "amount", "text", now=NOW, fmt="1.234,56")
    assert datasets.get_dataset(db, "people").column("amount").type == "integer"  # type: ignore[union-attr]


def test_retype_format_through_the_cli_and_the_api(
    db: Database, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    do_import(db, b"id;amount\n1;1.234,5\n2;abc\n")
    argv = ["datasets", "retype", "people", "amount", "number", "--db", db_url]
    assert cli.main([*argv, "--format", "1.234,56"]) == 1
    assert "does not fit number written 1.234,56" in capsys.readouterr().err
    assert cli.main([*argv, "--format", "nope"]) == 1
    assert "unknown format 'nope'" in capsys.readouterr().err
    do_import(db, b"id;amount\n2;3\n")
    assert cli.main([*argv, "--format", "1.234,56"]) == 0
    assert "is now number, 1.234,56 (was text" in capsys.readouterr().out

    app = create_app(db, Settings(), background=False)
    with TestClient(app) as client:
        url = "/api/datasets/people/columns/amount/type"
        bad = client.put(url, json={"type": "date", "format": "1.234,56"})
        assert bad.status_code == 400
        assert "does not go with type date" in bad.json()["error"]["message"]
        same = client.put(url, json={"type": "number", "format": "1.234,56"})
        assert same.status_code == 200, same.text
        assert (same.json()["to"], same.json()["format"]) == ("number", "1.234,56")
        assert same.json()["values"] == 0  # it was so already
        back = client.put(url, json={"type": "number", "format": "1,234.56"})
        assert back.status_code == 400  # 1.234,5 is not written 1,234.56
    assert typed_values(db, "people", "amount") == {"1": 1234.5, "2": 3.0}


# ------------------------------------------------------------ the guard's numbers as fields


def test_the_guards_refusal_carries_its_numbers_as_fields(db: Database, tmp_path: Path) -> None:
    lines = ["id,tier"] + [f"{i},{'vip' if i <= 4 else 'basic'}" for i in range(1, 11)]
    do_import(db, ("\n".join(lines) + "\n").encode())
    vip = {"conditions": [{"field": "tier", "operator": "equals", "value": "vip"}]}
    segments.create_segment(db, name="vip", dataset="people", rules_json=vip, now=NOW)
    engine.tick(db, NOW)
    destinations.add_destination(db, "file", "file", {"path": str(tmp_path / "o.jsonl")}, NOW)
    links.link(db, "vip", "file", NOW)
    app = create_app(db, Settings(), background=False)
    with TestClient(app) as client:
        answer = client.post(
            "/api/datasets/people/imports",
            files={"file": ("p.csv", b"id,tier\n1,vip\n2,vip\n5,basic\n", "text/csv")},
            data={"mode": "replace"},
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "confirmation_needed"
    details = error["details"]
    assert details["would_delete"] == 7 and details["records"] == 10
    assert (details["percent"], details["limit_percent"]) == (70.0, 20)
    assert details["members_removed"] == 2
    assert details["destinations"] == [
        {"destination": "file", "members_removed": 2, "members": 4, "percent": 50.0}
    ]
    assert len(live(db, "people")) == 10


def test_worker_dry_run_keeps_the_preview_fields(db: Database) -> None:
    summary = worker.import_and_tick(
        db,
        io.BytesIO(CRM),
        ingest.ImportOptions("crm", dry_run=True, sample_bytes=120),
        source="crm.csv",
        clock=lambda: NOW,
    )
    assert summary["sample"]["whole_file"] is False and summary["key_candidates"]


def test_the_cli_previews_a_sample_and_retypes_with_a_format_through_a_server(
    db: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(_rows(100_000))
    do_import(db, b"id;amount\n1;1.234\n2;1.234.567\n")  # integer, 1.234,56
    with live_server(db, Settings()) as server:
        argv = ["import", str(path), "--dataset", "big", "--dry-run", "--server", server.url]
        assert cli.main([*argv, "--sample-mb", "0.25"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("Preview of big.csv for a new dataset 'big'")
        assert "read a sample of the file (" in out and "note: a sample: only the first" in out
        retyped = ["datasets", "retype", "people", "amount", "number", "--server", server.url]
        assert cli.main([*retyped, "--format", "1.234,56"]) == 0
        assert "is now number, 1.234,56 (was integer, 1.234,56" in capsys.readouterr().out
    assert datasets.find_dataset(db, "big") is None


def test_a_dry_run_says_when_the_deletes_would_need_confirming(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    do_import(db, b"id,spend\n1,10\n2,20\n3,30\n4,40\n", dataset="crm")
    over = _dry(db, b"id,spend\n1,10\n", mode="replace")
    assert over["deleted"] == 3  # counted as if confirmed
    guard = over["delete_guard"]
    assert guard["needs_confirmation"] is True
    assert (guard["would_delete"], guard["records"], guard["percent"]) == (3, 4, 75.0)
    assert "would delete 3 of 4 records (75%)" in guard["message"]
    within = _dry(db, b"id,spend\n1,10\n2,20\n3,30\n4,41\n", mode="replace")
    assert within["delete_guard"] == {"needs_confirmation": False}
    confirmed = _dry(db, b"id,spend\n1,10\n", mode="replace", confirm_delete=True)
    assert confirmed["delete_guard"] == {"needs_confirmation": False}
    path = tmp_path / "one.csv"
    path.write_bytes(b"id,spend\n1,10\n")
    argv = ["import", str(path), "--dataset", "crm", "--mode", "replace", "--dry-run"]
    assert cli.main([*argv, "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "deletes need confirming (--confirm-delete): 3 of 4 records, over the 20% limit" in out
    assert len(live(db, "crm")) == 4
