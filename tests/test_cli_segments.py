"""The segment commands, process and worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segflow.cli import main

CSV = b"id,state,spend\n1,CA,150\n2,CA,50\n3,NY,300\n"
RULES = json.dumps(
    {
        "logic": "AND",
        "conditions": [
            {"field": "state", "operator": "equals", "value": "ca"},
            {"field": "spend", "operator": "greater_than", "value": 100},
        ],
    }
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loaded(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "p.csv"
    path.write_bytes(CSV)
    assert run(capsys, "import", str(path), "--dataset", "people", "--db", db_url)[0] == 0
    return db_url


def test_create_list_show_members_events_explain_delete(
    loaded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--db", loaded)
    code, out, _ = run(
        capsys,
        "segments",
        "create",
        "--dataset",
        "people",
        "--name",
        "CA big",
        "--rules",
        RULES,
        *db,
    )
    assert (code, out) == (0, "created segment 'CA big' on 'people': 1 members\n")
    code, out, _ = run(capsys, "segments", "list", "--json", *db)
    [item] = json.loads(out)
    assert (item["name"], item["dataset"], item["member_count"]) == ("CA big", "people", 1)

    # An import runs the engine at once and says what moved.
    update = tmp_path / "u.csv"
    update.write_bytes(b"id,spend\n2,120\n1,10\n")
    code, out, _ = run(capsys, "import", str(update), "--dataset", "people", *db)
    assert "segment 'CA big': +1 entered, -1 left, 1 members (incremental)" in out

    code, out, _ = run(capsys, "segments", "members", "CA big", "--json", *db)
    assert [m["key"] for m in json.loads(out)["members"]] == ["2"]
    code, out, _ = run(capsys, "segments", "events", "CA big", "--json", *db)
    # Newest first; within a tick, in change-sequence order (the update numbered key 1 first).
    assert [(e["kind"], e["key"]) for e in json.loads(out)["events"]] == [
        ("enter", "2"),
        ("exit", "1"),
        ("enter", "1"),
    ]
    code, out, _ = run(capsys, "segments", "show", "CA big", *db)
    assert "members: 1" in out and "exit   1" in out and "enter  2" in out

    code, out, _ = run(capsys, "segments", "explain", "CA big", "1", *db)
    assert out.splitlines() == [
        "record '1' does not match segment 'CA big' and is not a member",
        "  [FAIL] AND of:",
        '    [pass] state equals "ca" (actual: "CA")',
        '    [FAIL] spend greater_than 100 (actual: "10")',
    ]
    rules_file = tmp_path / "r.json"
    rules_file.write_text(RULES.replace("100", "5"))
    code, out, _ = run(capsys, "segments", "edit", "CA big", "--rules", f"@{rules_file}", *db)
    assert out == "updated segment 'CA big': 2 members (was 1)\n"
    run(
        capsys,
        "segments",
        "create",
        "--dataset",
        "people",
        "--name",
        "other",
        "--rules",
        RULES,
        *db,
    )
    code, out, _ = run(capsys, "segments", "delete", "CA big", *db)
    assert out == "deleted segment 'CA big' (2 members)\n"
    code, out, _ = run(capsys, "datasets", "delete", "people", *db)
    assert out == "deleted dataset 'people' (3 records, and its 1 segment)\n"
    code, out, _ = run(capsys, "segments", "list", "--json", *db)
    assert json.loads(out) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            "{not json",
            "segflow: --rules is not valid JSON: Expecting property name enclosed in "
            "double quotes at line 1, column 2",
        ),
        (
            '{"conditions": [{"field": "nope", "operator": "equals", "value": "x"}]}',
            "segflow: rules.conditions[0].field: no column 'nope' in this dataset "
            "(columns: id, state, spend)",
        ),
        (
            "@/nonexistent.json",
            "segflow: cannot read rules from /nonexistent.json: No such file or directory",
        ),
    ],
)
def test_bad_rules_are_refused_with_a_reason(
    loaded: str, capsys: pytest.CaptureFixture[str], rules: str, message: str
) -> None:
    code, out, err = run(
        capsys,
        "segments",
        "create",
        "--dataset",
        "people",
        "--name",
        "x",
        "--rules",
        rules,
        "--db",
        loaded,
    )
    assert (code, out, err) == (1, "", message + "\n")


def test_process_and_a_worker_that_stops_cleanly_on_sigterm(
    loaded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        capsys,
        "segments",
        "create",
        "--dataset",
        "people",
        "--name",
        "s",
        "--rules",
        RULES,
        "--db",
        loaded,
    )
    code, out, _ = run(capsys, "process", "--json", "--db", loaded)
    assert json.loads(out)["segments"][0]["strategy"] == "idle"
    with subprocess.Popen(
        [sys.executable, "-m", "segflow.cli", "worker", "--interval", "1", "--db", loaded],
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            assert "ticking and syncing every 1s" in proc.stderr.readline()
            time.sleep(0.5)
        finally:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
    assert "SIGTERM, stopping after this batch" in rest
    assert "segflow worker: stopped" in rest
