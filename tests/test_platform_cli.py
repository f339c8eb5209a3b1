"""``segflow destinations add meta|tiktok`` and ``destinations credentials``, against the fakes.

The token comes from a file (or standard input), never the command line;
it is never printed; flags of another kind are refused by name.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from segflow.activation.fake_meta import FakeMeta
from segflow.activation.fake_tiktok import FakeTikTok
from segflow.cli import main

ACCOUNT = "4455667788"
META_TOKEN = "EAAB-cli-token-1"
ADVERTISER = "7100000000000000001"
TT_TOKEN = "tt-cli-token-1"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeMeta, FakeTikTok]]:
    with FakeMeta() as meta, FakeTikTok(min_audience_size=1) as tiktok:
        meta.add_account(ACCOUNT)
        meta.add_token(META_TOKEN, accounts=[ACCOUNT])
        meta.add_token("EAAB-cli-token-2", accounts=[ACCOUNT])
        tiktok.add_token(TT_TOKEN, [ADVERTISER])
        monkeypatch.setenv("SEGFLOW_META_GRAPH_URL", meta.url)
        monkeypatch.setenv("SEGFLOW_TIKTOK_ENDPOINT", tiktok.base_url)
        yield meta, tiktok


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    # The database option belongs to each command: moved to the end.
    given = list(argv)
    at = given.index("--db")
    code = main(given[:at] + given[at + 2 :] + given[at : at + 2])
    out, err = capsys.readouterr()
    return code, out, err


def token_file(tmp_path: Path, token: str, name: str = "token.txt") -> str:
    path = tmp_path / name
    path.write_text(token + "\n", encoding="utf-8")
    return str(path)


def test_a_meta_destination_is_added_with_a_new_audience(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fakes: tuple[FakeMeta, FakeTikTok],
) -> None:
    meta, _ = fakes
    code, out, err = run(
        capsys, "--db", db_url, "destinations", "add", "meta", "fb",
        "--ad-account-id", f"act_{ACCOUNT}", "--audience-name", "VIP",
        "--customer-file-source", "USER_PROVIDED_ONLY", "--limited-data-use",
        "--token-file", token_file(tmp_path, META_TOKEN),
    )  # fmt: skip
    assert code == 0, err
    (audience,) = meta.audiences(ACCOUNT)
    assert f"ad account act_{ACCOUNT}, audience {audience}" in out
    assert "Limited Data Use" in out and META_TOKEN not in out
    assert hashlib.sha256(META_TOKEN.encode()).hexdigest()[:12] in out
    code, out, _ = run(capsys, "--db", db_url, "destinations", "list", "--json")
    assert META_TOKEN not in out
    (listed,) = json.loads(out)
    assert listed["kind"] == "meta" and listed["config"]["audience_id"] == audience


def test_a_new_token_replaces_the_old_and_is_never_printed(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fakes: tuple[FakeMeta, FakeTikTok],
) -> None:
    meta, _ = fakes
    audience = meta.add_audience(ACCOUNT)
    assert run(
        capsys, "--db", db_url, "destinations", "add", "meta", "fb", "--ad-account-id", ACCOUNT,
        "--audience-id", audience, "--token-file", token_file(tmp_path, META_TOKEN),
    )[0] == 0  # fmt: skip
    code, out, err = run(
        capsys, "--db", db_url, "destinations", "credentials", "fb",
        "--token-file", token_file(tmp_path, "EAAB-cli-token-2", "new.txt"),
    )  # fmt: skip
    assert code == 0, err
    assert "EAAB-cli-token-2" not in out + err
    assert hashlib.sha256(b"EAAB-cli-token-2").hexdigest()[:12] in out


def test_a_tiktok_destination_reads_its_token_from_standard_input(
    db_url: str, capsys: pytest.CaptureFixture[str], fakes: tuple[FakeMeta, FakeTikTok],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO(TT_TOKEN + "\n"))
    code, out, err = run(
        capsys, "--db", db_url, "destinations", "add", "tiktok", "tt",
        "--advertiser-id", ADVERTISER, "--audience-name", "Buyers", "--id-type", "phone",
        "--token-file", "-",
    )  # fmt: skip
    assert code == 0, err
    assert "audience 'Buyers' (made by the first upload), phone ids" in out
    assert TT_TOKEN not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["meta", "fb", "--ad-account-id", ACCOUNT, "--audience-id", "1", "--ad-user-data",
          "granted"], "Google's consent settings"),
        (["meta", "fb", "--ad-account-id", ACCOUNT, "--audience-id", "1", "--list-id", "5"],
         "--list-id: only for google_ads"),
        (["google_ads", "g", "--operating-account-id", "1", "--list-id", "2",
          "--ad-account-id", "3"], "--ad-account-id: only for meta and tiktok"),
        (["meta", "fb", "--ad-account-id", ACCOUNT, "--audience-id", "1"],
         "needs an access token"),
        (["tiktok", "tt", "--advertiser-id", ADVERTISER, "--token-file", "/nonexistent/t"],
         "cannot read token file"),
    ],
)  # fmt: skip
def test_what_a_kind_does_not_take_is_refused_by_name(
    db_url: str, capsys: pytest.CaptureFixture[str], fakes: tuple[FakeMeta, FakeTikTok],
    argv: list[str], message: str,
) -> None:  # fmt: skip
    code, out, err = run(capsys, "--db", db_url, "destinations", "add", *argv)
    assert code == 1 and message in err, err
    code, out, _ = run(capsys, "--db", db_url, "destinations", "list", "--json")
    assert json.loads(out) == []


def test_limited_data_use_is_turned_on_later_and_every_member_goes_again(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fakes: tuple[FakeMeta, FakeTikTok],
) -> None:
    meta, _ = fakes
    audience = meta.add_audience(ACCOUNT)
    assert run(
        capsys, "--db", db_url, "destinations", "add", "meta", "fb", "--ad-account-id", ACCOUNT,
        "--audience-id", audience, "--token-file", token_file(tmp_path, META_TOKEN),
    )[0] == 0  # fmt: skip
    code, out, err = run(
        capsys, "--db", db_url, "destinations", "update", "fb", "--limited-data-use"
    )
    assert code == 0, err
    assert "Limited Data Use" in out
    code, out, err = run(
        capsys, "--db", db_url, "destinations", "update", "fb", "--ad-user-data", "granted"
    )
    assert code == 1 and "unknown meta setting(s): ad_user_data" in err
