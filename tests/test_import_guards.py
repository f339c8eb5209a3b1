"""Import guards that hold whatever parses the file, on both engines: the
mass-delete guard of replace imports, key detection by normalised names,
the column limit, files that are not CSV, and Excel's shapes of CSV (a
trailing delimiter on every line, a ``sep=`` first line, UTF-16 with a BOM).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from segflow import datasets, engine, ingest, segments, worker
from segflow.activation import destinations, links
from segflow.cli.main import main
from segflow.config import Settings
from segflow.db import Database
from segflow.errors import ImportFailed, InvalidInput
from segflow.ingest.guard import DeleteNeedsConfirmation
from segflow.ingest.options import MAX_COLUMNS
from segflow.web.app import create_app
from segflow.web.server import live_server
from tests.helpers import FIXTURES, NOW, do_import, live, sequence_value, snapshot
from tests.test_import_arrow import unseekable

CHROMIUM = "/usr/bin/chromium"


def _people(count: int, vip_every: int = 0) -> bytes:
    lines = ["id,name,tier"]
    for i in range(1, count + 1):
        tier = "vip" if vip_every and i % vip_every == 0 else "basic"
        lines.append(f"{i},person {i},{tier}")
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------ mass-delete guard


def test_a_header_only_replace_is_refused_with_the_numbers_and_stores_nothing(
    db: Database,
) -> None:
    do_import(db, _people(1_880))
    before = snapshot(db, "people")
    with pytest.raises(DeleteNeedsConfirmation) as refused:
        do_import(db, b"id,name,tier\n", mode="replace")
    assert "would delete 1,880 of 1,880 records (100%)" in str(refused.value)
    assert "more than the 20% limit" in str(refused.value)
    assert refused.value.code == "confirmation_needed"
    assert snapshot(db, "people") == before

    confirmed = do_import(db, b"id,name,tier\n", mode="replace", confirm_delete=True)
    assert confirmed["deleted"] == 1_880
    assert live(db, "people") == {}


def test_deletes_up_to_the_limit_need_no_confirmation(db: Database) -> None:
    do_import(db, _people(10))
    kept = b"\n".join(_people(10).splitlines()[:-2]) + b"\n"  # 2 of 10 gone: 20%, the limit
    assert do_import(db, kept, mode="replace")["deleted"] == 2
    with pytest.raises(DeleteNeedsConfirmation, match=r"would delete 3 of 8 records \(37.5%\)"):
        do_import(db, b"\n".join(kept.splitlines()[:-3]) + b"\n", mode="replace")
    assert len(live(db, "people")) == 8


def test_the_limit_is_a_setting_and_an_option(db: Database) -> None:
    do_import(db, _people(10))
    half = b"\n".join(_people(10).splitlines()[:6]) + b"\n"  # 5 of 10 deleted
    with pytest.raises(DeleteNeedsConfirmation):
        do_import(db, half, mode="replace")
    assert len(live(db, "people")) == 10
    wider = Settings(replace_delete_limit=50)
    assert do_import(db, half, mode="replace", settings=wider)["deleted"] == 5
    one_less = b"\n".join(half.splitlines()[:-1]) + b"\n"
    with pytest.raises(DeleteNeedsConfirmation, match="more than the 0% limit"):
        do_import(db, one_less, mode="replace", settings=wider, delete_limit=0)
    with pytest.raises(InvalidInput, match="percent from 0 to 100"):
        do_import(db, one_less, mode="replace", delete_limit=101)
    assert Settings.from_env({"SEGFLOW_REPLACE_DELETE_LIMIT": "5"}).replace_delete_limit == 5
    assert Settings.from_env({"SEGFLOW_REPLACE_DELETE_LIMIT": "0"}).replace_delete_limit == 0
    with pytest.raises(InvalidInput, match="SEGFLOW_REPLACE_DELETE_LIMIT"):
        Settings.from_env({"SEGFLOW_REPLACE_DELETE_LIMIT": "120"})


def _linked_vips(db: Database, tmp_path: Path) -> None:
    """100 people, every tenth a VIP; the VIP segment feeds a file destination."""
    do_import(db, _people(100, vip_every=10))
    segments.create_segment(
        db,
        name="vips",
        dataset="people",
        rules_json={"conditions": [{"field": "tier", "operator": "equals", "value": "vip"}]},
        now=NOW,
    )
    destinations.add_destination(db, "crm-list", "file", {"path": str(tmp_path / "o.jsonl")}, NOW)
    links.link(db, "vips", "crm-list", NOW)


def test_a_replace_that_empties_a_linked_destination_is_refused(
    db: Database, tmp_path: Path
) -> None:
    _linked_vips(db, tmp_path)
    before = snapshot(db, "people")
    # 8 of 100 records (under the limit), but 8 of the list's 10 members.
    gone = {str(i) for i in range(10, 90, 10)}
    rows = [line for line in _people(100, vip_every=10).splitlines() if line.split(b",")[0]]
    kept = b"\n".join(r for r in rows if r.split(b",")[0].decode() not in gone) + b"\n"
    with pytest.raises(DeleteNeedsConfirmation) as refused:
        do_import(db, kept, mode="replace")
    assert (
        "would delete 8 of 100 records (8%) and remove 8 members from 1 destination "
        "('crm-list': 8 of 10, 80%)"
    ) in str(refused.value)
    assert snapshot(db, "people") == before
    # Deleting non-members only: the list loses nobody, the dataset 8%.
    plain = {str(i) for i in range(1, 9)}
    others = b"\n".join(r for r in rows if r.split(b",")[0].decode() not in plain) + b"\n"
    assert do_import(db, others, mode="replace")["deleted"] == 8


def _records(db_url: str) -> int:
    database = Database(db_url)
    try:
        return datasets.get_dataset(database, "people").record_count
    finally:
        database.dispose()


def test_the_cli_asks_for_confirm_delete(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, empty = tmp_path / "full.csv", tmp_path / "empty.csv"
    full.write_bytes(_people(50))
    empty.write_bytes(b"id,name,tier\n")
    base = ["--dataset", "people", "--db", db_url]
    assert main(["import", str(full), *base]) == 0
    capsys.readouterr()
    assert main(["import", str(empty), *base, "--mode", "replace"]) == 1
    err = capsys.readouterr().err
    assert "would delete 50 of 50 records (100%)" in err and "--confirm-delete" in err
    assert _records(db_url) == 50
    assert main(["import", str(empty), *base, "--mode", "replace", "--delete-limit", "100"]) == 0
    capsys.readouterr()
    assert main(["import", str(full), *base]) == 0
    assert main(["import", str(empty), *base, "--mode", "replace", "--confirm-delete"]) == 0
    assert "50 deleted" in capsys.readouterr().out
    assert _records(db_url) == 0
    trailing = tmp_path / "trailing.csv"
    trailing.write_bytes(PLAIN_TRAILING)
    assert main(["import", str(trailing), *base]) == 0
    assert "note: dropped 1 unnamed empty column at the end of the header (column 3)" in (
        capsys.readouterr().out
    )


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db, Settings(), background=False)) as test_client:
        yield test_client


def _upload(client: TestClient, data: bytes, name: str = "people", **form: str) -> Any:
    return client.post(
        f"/api/datasets/{name}/imports",
        files={"file": ("people.csv", data, "text/csv")},
        data=form,
    )


def test_the_api_answers_confirmation_needed_until_confirm_delete(
    client: TestClient, db: Database
) -> None:
    assert _upload(client, _people(20)).status_code == 201
    refused = _upload(client, b"id,name,tier\n", mode="replace")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "confirmation_needed"
    assert "would delete 20 of 20 records (100%)" in error["message"]
    assert datasets.get_dataset(db, "people").record_count == 20
    assert _upload(client, b"id\n", mode="replace", delete_limit="101").status_code == 422
    half = b"\n".join(_people(20).splitlines()[:11]) + b"\n"  # 10 of 20 deleted
    assert _upload(client, half, mode="replace", delete_limit="50").status_code == 201
    done = _upload(client, b"id,name,tier\n", mode="replace", confirm_delete="true")
    assert done.status_code == 201, done.text
    assert done.json()["deleted"] == 10


# ------------------------------------------------------------ key detection


@pytest.mark.parametrize(
    "key", ["Customer ID", "customer_id", "CustomerId", "customer-id", "E-mail Address", "Email"]
)
def test_key_detection_compares_normalised_names(db: Database, key: str) -> None:
    summary = do_import(db, f"name,{key}\nAnn,k1\nBob,k2\n".encode())
    assert summary["key"] == key
    assert datasets.get_dataset(db, "people").key_column == key
    assert set(live(db, "people")) == {"k1", "k2"}


def test_an_id_column_comes_before_an_email_column(db: Database) -> None:
    summary = do_import(db, b"E-mail Address,Customer ID\na@x.io,7\n")
    assert summary["key"] == "Customer ID"


def test_without_a_key_like_column_the_error_says_how_names_compare(db: Database) -> None:
    with pytest.raises(ImportFailed, match="ignoring case, spaces, '_' and '-'"):
        do_import(db, b"name,city\nAnn,Paris\n")


# ------------------------------------------------------------ wide files


def _wide(columns: int, rows: bytes = b"") -> bytes:
    header = ",".join(["id", *(f"c{i}" for i in range(1, columns))])
    return header.encode() + b"\n" + rows


def test_a_file_wider_than_the_limit_is_refused_before_its_rows_are_read(db: Database) -> None:
    assert MAX_COLUMNS == 798
    # The second row is malformed: the width is refused before any row is read.
    with pytest.raises(ImportFailed) as refused:
        do_import(db, _wide(5_000, b'1,"never closed\n'), source="wide.csv")
    assert str(refused.value) == (
        "wide.csv, line 1: the file has 5,000 columns; at most 798 columns can be imported "
        "into one dataset (split the file into datasets sharing the key column)"
    )
    assert datasets.find_dataset(db, "people") is None


def test_the_widest_file_allowed_imports(db: Database) -> None:
    summary = do_import(db, _wide(MAX_COLUMNS, b"1" + b",x" * (MAX_COLUMNS - 1) + b"\n"))
    assert summary["inserted"] == 1
    assert len(datasets.get_dataset(db, "people").columns) == MAX_COLUMNS


def test_a_record_postgresql_cannot_hold_is_refused_clearly(db: Database) -> None:
    """PostgreSQL keeps a record in one 8 KB page: 700 number columns (8 bytes
    typed beside their text) do not fit; SQLite stores them."""
    data = _wide(700, b"1" + b",12345" * 699 + b"\n")
    if db.is_sqlite:
        assert do_import(db, data)["inserted"] == 1
        return
    with pytest.raises(ImportFailed) as refused:
        do_import(db, data, source="wide.csv")
    message = str(refused.value)
    assert message.startswith("wide.csv: PostgreSQL cannot store this file's records (row is")
    assert "at most about 8 KB a record" in message
    assert datasets.find_dataset(db, "people") is None


def test_new_columns_may_not_take_a_dataset_over_the_limit(db: Database) -> None:
    do_import(db, _wide(700, b"1" + b",x" * 699 + b"\n"))
    before = snapshot(db, "people")
    header = ",".join(["id", *(f"n{i}" for i in range(1, 100))])
    with pytest.raises(ImportFailed, match="dataset 'people' would have 799; at most 798"):
        do_import(db, header.encode() + b"\n2" + b",y" * 99 + b"\n")
    assert snapshot(db, "people") == before


def test_the_api_refuses_a_wide_upload_with_400(client: TestClient) -> None:
    answer = _upload(client, _wide(5_000, b"1" + b",x" * 4_999 + b"\n"))
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "import_failed"
    assert "at most 798 columns" in answer.json()["error"]["message"]


# ------------------------------------------------------------ files that are not CSV


def _xlsx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/workbook.xml", "<workbook/>")
    return out.getvalue()


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("people.csv", "id\n1\n")
    return out.getvalue()


OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (PNG, "this is a PNG image, not a CSV file"),
        (
            _xlsx(),
            "this is an Excel workbook (.xlsx), not a CSV file: save it as CSV (in Excel: "
            "File > Save As > CSV UTF-8) and import that file",
        ),
        (_zip(), "this is a ZIP archive, not a CSV file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "this is a PDF document, not a CSV file"),
        (gzip.compress(b"id\n1\n"), "this is a gzip-compressed file: decompress it"),
        (OLE2 + bytes(40), "this is an Excel 97-2003 workbook (.xls)"),
    ],
    ids=["png", "xlsx", "zip", "pdf", "gzip", "xls"],
)
def test_files_that_are_not_csv_are_named(db: Database, data: bytes, said: str) -> None:
    with pytest.raises(ImportFailed) as refused:
        do_import(db, data, source="upload.bin")
    assert str(refused.value).startswith(f"upload.bin: {said}")
    assert datasets.find_dataset(db, "people") is None


def test_non_utf8_bytes_suggest_cp1252_first(db: Database) -> None:
    with pytest.raises(ImportFailed) as refused:
        do_import(db, "id,name\n1,Caf\u00e9 \u20ac\n".encode("cp1252"))
    message = str(refused.value)
    assert "cp1252" in message and "latin-1" in message
    assert message.index("cp1252") < message.index("latin-1")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_a_bom_is_read_as_utf16(db: Database, codec: str) -> None:
    text = "id\tname\tnote\n1\tZo\u00eb\t\u20ac5 \u201cquoted\u201d\n2\tBob\t\n"
    data = "\ufeff".encode(codec) + text.encode(codec)
    summary = do_import(db, data)
    assert summary["delimiter"] == "\t"
    note = "\u20ac5 \u201cquoted\u201d"
    assert live(db, "people")["1"] == {"id": "1", "name": "Zo\u00eb", "note": note}
    assert any("UTF-16" in note for note in summary["notes"])


# ------------------------------------------------------------ Excel's shapes of CSV


def test_a_trailing_delimiter_on_every_line_drops_the_unnamed_columns(db: Database) -> None:
    summary = do_import(db, FIXTURES / "crm_trailing_semicolons.csv")
    assert [c["name"] for c in summary["columns"]] == ["Customer ID", "Name", "Notes"]
    assert summary["key"] == "Customer ID"
    assert summary["notes"] == [
        "dropped 2 unnamed empty columns at the end of the header (columns 4-5): "
        "the lines end with a delimiter"
    ]
    assert summary["inserted"] == 3
    assert live(db, "people")["C-2"] == {"Customer ID": "C-2", "Name": "Bob", "Notes": None}
    # A value where the header names no column is that row's reject.
    assert summary["rejects"] == [
        {"line": 5, "reason": "has the value 'stray' in column 5, which the header does not name"}
    ]


def test_a_trailing_comma_header_with_commas_on_every_line(db: Database) -> None:
    summary = do_import(db, b"a,b,\n1,x,\n2,y,\n", key="a")
    assert [c["name"] for c in summary["columns"]] == ["a", "b"]
    assert (summary["inserted"], summary["rejected"]) == (2, 0)
    assert (
        "dropped 1 unnamed empty column at the end of the header (column 3)"
        in (summary["notes"][0])
    )


def test_a_blank_name_inside_the_header_is_still_refused(db: Database) -> None:
    with pytest.raises(ImportFailed, match="line 1: header column 2 has no name"):
        do_import(db, b"a,,c\n1,2,3\n")


def test_a_sep_line_names_the_delimiter_and_is_skipped(db: Database) -> None:
    summary = do_import(db, FIXTURES / "excel_sep_line.csv")
    assert summary["delimiter"] == ";"
    assert [c["name"] for c in summary["columns"]] == ["id", "name", "city"]
    assert live(db, "people")["1"] == {"id": "1", "name": "Ann", "city": "Paris, France"}
    assert summary["rejects"] == [{"line": 5, "reason": "expected 3 fields, found 2"}]
    assert "the first line 'sep=;' named the delimiter" in summary["notes"][0]


def test_a_header_error_after_a_sep_line_names_line_2(db: Database) -> None:
    with pytest.raises(ImportFailed, match="line 2: header column 2 has no name"):
        do_import(db, b"sep=,\nid,,x\n1,2,3\n")


PLAIN_TRAILING = b"id,name,\n1,Ann,\n2,Bob,\n3,Cy,\n"


@pytest.mark.parametrize(
    "data",
    [
        (FIXTURES / "crm_trailing_semicolons.csv").read_bytes(),
        (FIXTURES / "excel_sep_line.csv").read_bytes(),
        PLAIN_TRAILING,  # no quote: on SQLite a file SQLite could read itself
    ],
    ids=["crm", "sep", "plain-trailing"],
)
def test_excel_shapes_read_the_same_on_every_path(
    db: Database, tmp_path: Path, data: bytes
) -> None:
    """Read by Arrow where the file is clean, it gives what segflow's reader gives."""
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    in_process = do_import(db, path, dataset="helped")
    other = ingest.import_csv(
        db,
        unseekable(data),
        ingest.ImportOptions(dataset="alone"),
        source=str(path),
        now=NOW,
    )
    for field in ("columns", "inserted", "rejects", "notes", "key", "delimiter"):
        assert other[field] == in_process[field]
    assert live(db, "helped") == live(db, "alone")


# ------------------------------------------------------------ the page's confirm step


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
def test_the_page_shows_the_numbers_and_imports_only_once_confirmed(
    db: Database, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    do_import(db, _people(40))
    empty = tmp_path / "people.csv"
    empty.write_bytes(b"id,name,tier\n")
    errors: list[str] = []
    with (
        live_server(db, Settings(), poll_interval=0.2) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/datasets")
        page.wait_for_selector("body[data-ready=true]")
        page.set_input_files("#file", str(empty))
        page.select_option("#mode", "replace")
        page.click("#upload-button")
        page.wait_for_selector("#confirm-delete")
        shown = page.text_content("#upload-status") or ""
        assert "would delete 40 of 40 records (100%)" in shown
        assert datasets.get_dataset(db, "people").record_count == 40
        page.click("#confirm-delete")
        page.wait_for_selector("#import-summary .import-counts")
        assert "40 deleted" in (page.text_content("#import-summary .import-counts") or "")
        browser.close()
    assert errors == []
    assert datasets.get_dataset(db, "people").record_count == 0


# -- dry run: what an import would do, storing nothing


def test_a_dry_run_counts_changes_and_segment_moves_and_stores_nothing(db: Database) -> None:
    do_import(db, b"id,spend\n1,10\n2,200\n3,300\n")
    big = {"conditions": [{"field": "spend", "operator": "greater_than", "value": 100}]}
    segments.create_segment(db, name="big", dataset="people", rules_json=big, now=NOW)
    engine.tick(db, NOW)
    before = (live(db, "people"), sequence_value(db), segments.get_segment(db, "big"))

    summary = worker.import_and_tick(
        db,
        io.BytesIO(b"id,spend\n1,150\n2,20\n4,400\n"),
        ingest.ImportOptions("people", mode="replace", dry_run=True),
        source="next.csv",
        clock=lambda: NOW,
    )

    assert summary["dry_run"] is True
    assert (summary["inserted"], summary["updated"], summary["deleted"]) == (1, 2, 1)
    (big_moves,) = summary["segments"]
    # 1 and 4 enter; 2 (now 20) and 3 (deleted) leave.
    assert (big_moves["entered"], big_moves["exited"]) == (2, 2)
    after = (live(db, "people"), sequence_value(db), segments.get_segment(db, "big"))
    assert after == before
    # The import history has no row of it either.
    assert datasets.describe_dataset(db, "people")["last_import"]["source"] == "test.csv"


def test_the_cli_and_the_api_preview_an_import(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"id,name\n1,Ann\n2,Bob\n")
    assert main(["import", str(path), "--dataset", "people", "--dry-run", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Preview of {path} for a new dataset 'people'")
    assert "nothing was stored" in out.splitlines()[0]
    assert "would insert 2, update 0, delete 0" in out
    assert datasets.find_dataset(db, "people") is None

    app = create_app(db, Settings(), background=False)
    with TestClient(app) as client:
        answer = client.post(
            "/api/datasets/people/imports/preview",
            files={"file": ("people.csv", path.read_bytes(), "text/csv")},
            data={"key": "id"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["dry_run"] is True and answer.json()["inserted"] == 2
    assert datasets.find_dataset(db, "people") is None


@pytest.mark.parametrize("codec", ["zlib", "base64", "hex"])
def test_a_codec_that_is_not_a_text_encoding_is_refused(db: Database, codec: str) -> None:
    with pytest.raises(ImportFailed, match="not a text encoding"):
        do_import(db, b"id,name\n1,Ann\n", encoding=codec)
    assert datasets.find_dataset(db, "people") is None
