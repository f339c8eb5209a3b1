"""The segflow command: output, --json, exit status and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segflow.cli import main
from segflow.db.migrations import MIGRATIONS
from tests.helpers import FIXTURES

CSV = b"id,email,spend\n1,a@example.com,10\n2,b@example.com,20\n3,,oops\n4,d@example.com\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_then_list_show_delete(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(CSV)
    code, out, err = run(capsys, "import", str(path), "--dataset", "people", "--db", db_url)
    assert code == 0
    assert f"upgraded the database schema to version {MIGRATIONS[-1].version}" in err
    assert f"Imported {path} into dataset 'people' (created, key 'id', upsert)" in out
    assert "4 rows: 3 inserted, 0 updated, 0 unchanged, 0 deleted, 1 rejected" in out
    assert "line 5: expected 3 fields, found 2" in out
    assert "email       column 'email': 2 valid of 2 non-empty" in out

    code, out, err = run(capsys, "datasets", "list", "--db", db_url, "--json")
    assert code == 0 and err == ""
    [item] = json.loads(out)
    assert (item["name"], item["records"], item["columns"], item["key"]) == ("people", 3, 3, "id")

    code, out, _ = run(capsys, "datasets", "show", "people", "--db", db_url, "--json")
    info = json.loads(out)
    assert [(c["name"], c["type"], c["non_empty"]) for c in info["columns"]] == [
        ("id", "integer", 3),
        ("email", "text", 2),
        ("spend", "text", 3),
    ]
    code, out, _ = run(capsys, "datasets", "show", "people", "--db", db_url, "--sample", "1")
    assert "dataset 'people': 3 records, key 'id'" in out
    assert '{"id": "1", "email": "a@example.com", "spend": "10"}' in out

    code, out, _ = run(capsys, "datasets", "delete", "people", "--db", db_url)
    assert (code, out) == (0, "deleted dataset 'people' (3 records)\n")
    code, out, err = run(capsys, "datasets", "show", "people", "--db", db_url)
    assert code == 1 and out == ""
    assert err == "segflow: no dataset named 'people'\n"


def test_import_json_lists_every_reject(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "many.csv"
    path.write_bytes(b"id,x\n" + b"".join(b"%d\n" % i for i in range(30)) + b"99,ok\n")
    code, out, _ = run(capsys, "import", str(path), "--dataset", "d", "--db", db_url, "--json")
    summary = json.loads(out)
    assert code == 0
    assert summary["rejected"] == 30 and len(summary["rejects"]) == 30
    assert summary["rejects"][0] == {"line": 2, "reason": "expected 2 fields, found 1"}
    code, out, _ = run(capsys, "import", str(path), "--dataset", "d", "--db", db_url)
    assert "rejected rows (first 20 of 30; all with --json):" in out
    assert out.count("expected 2 fields") == 20


def test_errors_are_one_line_on_stderr_with_status_1(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = FIXTURES / "unterminated_quote.csv"
    code, out, err = run(capsys, "import", str(bad), "--dataset", "d", "--db", db_url)
    assert code == 1 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith("segflow: upgraded")]
    assert lines == [
        f"segflow: {bad}, line 3: a quoted field starting in this record is never closed "
        "(unterminated quote)"
    ]
    code, _, err = run(capsys, "import", "/nonexistent.csv", "--dataset", "d", "--db", db_url)
    assert (code, err) == (1, "segflow: cannot open /nonexistent.csv: No such file or directory\n")


def test_bad_database_urls_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "datasets", "list", "--db", "mysql://x/y")
    assert code == 1
    assert err.startswith("segflow: unsupported database 'mysql'")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["import", "x.csv"])
    assert caught.value.code == 2
    assert "--dataset" in capsys.readouterr().err


def test_database_url_from_the_environment_and_stdin(tmp_path: Path) -> None:
    env = dict(os.environ, SEGFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'env.db'}")
    imported = subprocess.run(
        [sys.executable, "-m", "segflow.cli", "import", "-", "--dataset", "piped", "--json"],
        input=CSV,
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert json.loads(imported.stdout)["source"] == "<stdin>"
    listed = subprocess.run(
        [sys.executable, "-m", "segflow.cli", "datasets", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert "piped" in listed.stdout
    assert (tmp_path / "env.db").exists() and not (tmp_path / "segflow.db").exists()


def test_default_database_is_segflow_db_in_the_working_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SEGFLOW_DATABASE_URL"}
    subprocess.run(
        [sys.executable, "-m", "segflow.cli", "demo", "--rows", "50"],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "segflow.db").exists()


def test_progress_lines_when_asked(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(CSV)
    result = subprocess.run(
        [sys.executable, "-m", "segflow.cli", "import", str(path), "--dataset", "p"]
        + ["--db", db_url, "--progress"],
        capture_output=True,
        text=True,
        check=True,
    )
    phases = [line.split(":")[0] for line in result.stderr.splitlines() if "importing" in line]
    assert phases == [
        f"importing {path} reading",
        f"importing {path} applying",
        f"importing {path} done",
    ]


def test_demo_loads_customers_and_segments_and_a_rerun_changes_nothing(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "demo", "--rows", "400", "--db", db_url, "--json")
    first = json.loads(out)
    assert code == 0 and first["inserted"] == 400
    assert [s["name"] for s in first["created_segments"]] == [
        "CA high spenders",
        "Gmail subscribers",
        "Signed up in the last two years",
    ]
    # (The third counts relative to today's date, so its size is not asserted.)
    assert all(s["member_count"] > 0 for s in first["created_segments"][:2])
    code, out, _ = run(capsys, "demo", "--rows", "400", "--db", db_url, "--json")
    again = json.loads(out)
    assert (again["unchanged"], again["first_seq"], again["created_segments"]) == (400, None, [])
    assert [(s["entered"], s["exited"]) for s in again["segments"]] == [(0, 0)] * 3


def test_python_dash_m_segflow_is_the_segflow_command(tmp_path: Path) -> None:
    env = dict(os.environ, SEGFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}")
    ran = [
        subprocess.run(
            [sys.executable, "-m", module, "datasets", "list"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for module in ("segflow", "segflow.cli")
    ]
    assert [r.returncode for r in ran] == [0, 0], [r.stderr for r in ran]
    assert ran[0].stdout == ran[1].stdout and "no datasets" in ran[0].stdout.lower()


def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path) -> None:
    env = dict(os.environ, SEGFLOW_DATABASE_URL=f"sqlite:///{tmp_path / 'pipe.db'}")
    rows = "".join(f"{i},person{i}@example.com,{'x' * 80}\n" for i in range(3000))
    subprocess.run(
        [sys.executable, "-m", "segflow.cli", "import", "-", "--dataset", "people"],
        input=f"id,email,note\n{rows}".encode(),
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    # Like `segflow datasets show people --sample 3000 | head -1`: the reader
    # closes its end after one line, far before the output's end.
    shown = subprocess.Popen(
        [sys.executable, "-m", "segflow.cli", "datasets", "show", "people", "--sample", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert shown.stdout is not None and shown.stderr is not None
    assert shown.stdout.readline().startswith(b"dataset 'people'")
    shown.stdout.close()
    with shown.stderr:
        err = shown.stderr.read().decode()
    assert shown.wait(timeout=60) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_a_list_of_datasets_lines_up_whatever_the_key_names(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, key in (("a", "id"), ("customers", "customer_identifier_long")):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(f"{key},x\n1,2\n".encode())
        assert main(["import", str(path), "--dataset", name, "--key", key, "--db", db_url]) == 0
    capsys.readouterr()
    assert main(["datasets", "list", "--db", db_url]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    updated = header.index("UPDATED")
    assert all(line[updated - 2 : updated] == "  " and line[updated].isdigit() for line in lines)
