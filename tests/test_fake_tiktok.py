"""The fake TikTok refuses what TikTok refuses, with TikTok's codes, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segflow.activation.fake_tiktok import FakeTikTok

ADVERTISER = "7000000000000000001"
OTHER = "7000000000000000002"
TOKEN = "fake-token-for-the-fake-0001"
OTHER_TOKEN = "fake-token-for-the-other-002"
API = "/open_api/v1.3/dmp/custom_audience"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hashes(n: int, start: int = 0) -> list[str]:
    return [sha(f"member{i}@example.com") for i in range(start, start + n)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tiktok(clock: Clock) -> Iterator[FakeTikTok]:
    with FakeTikTok(clock=clock) as server:
        server.add_token(TOKEN, [ADVERTISER])
        server.add_token(OTHER_TOKEN, [OTHER])
        yield server


@pytest.fixture
def http(tiktok: FakeTikTok) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiktok.base_url, headers={"Access-Token": TOKEN}) as client:
        yield client


def upload(
    http: httpx.Client,
    content: bytes,
    *,
    calculate_type: str = "EMAIL_SHA256",
    signature: str | None = None,
    file_name: str = "ids.txt",
    advertiser: str = ADVERTISER,
) -> dict[str, Any]:
    fields = {
        "advertiser_id": advertiser,
        "calculate_type": calculate_type,
        "file_signature": signature or hashlib.md5(content).hexdigest(),
    }
    answer = http.post(
        f"{API}/file/upload/", data=fields, files={"file": (file_name, content, "text/plain")}
    )
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert set(body) == {"code", "message", "request_id", "data"}
    return body


def lines(ids: list[str]) -> bytes:
    return ("\n".join(ids) + "\n").encode()


def file_path(http: httpx.Client, ids: list[str], **kw: Any) -> str:
    body = upload(http, lines(ids), **kw)
    assert body["code"] == 0, body
    return str(body["data"]["file_path"])


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(f"{API}/{path}/", json=body)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


def create(http: httpx.Client, ids: list[str], **kw: Any) -> str:
    body = post(
        http,
        "create",
        {
            "advertiser_id": ADVERTISER,
            "custom_audience_name": "customers",
            "calculate_type": "EMAIL_SHA256",
            "file_paths": [file_path(http, ids)],
            **kw,
        },
    )
    assert body["code"] == 0, body
    return str(body["data"]["custom_audience_id"])


# -- tokens and advertisers


def test_missing_unknown_expired_and_revoked_tokens(tiktok: FakeTikTok) -> None:
    url = f"{tiktok.base_url}{API}/list/"
    params = {"advertiser_id": ADVERTISER}
    assert httpx.get(url, params=params).json()["code"] == 40104
    assert httpx.get(url, params=params, headers={"Access-Token": "nope"}).json()["code"] == 40105
    tiktok.expire(TOKEN)
    assert httpx.get(url, params=params, headers={"Access-Token": TOKEN}).json()["code"] == 40102
    tiktok.revoke(OTHER_TOKEN)
    answer = httpx.get(url, params={"advertiser_id": OTHER}, headers={"Access-Token": OTHER_TOKEN})
    assert answer.json()["code"] == 40105


def test_an_advertiser_not_granted_is_refused_40001(http: httpx.Client) -> None:
    for advertiser in (OTHER, "123"):
        body = upload(http, lines(hashes(3)), advertiser=advertiser)
        assert body["code"] == 40001
        assert advertiser in body["message"]
    assert http.get(f"{API}/list/", params={"advertiser_id": "x1"}).json()["code"] == 40002


# -- uploads


def test_upload_answers_a_file_path_held_for_the_advertiser(
    http: httpx.Client, tiktok: FakeTikTok
) -> None:
    ids = hashes(5)
    body = upload(http, lines(ids))
    assert body["code"] == 0
    (held,) = tiktok.files()
    assert held.path == body["data"]["file_path"]
    assert held.advertiser_id == ADVERTISER
    assert held.ids == frozenset(ids)


def test_a_header_row_naming_the_type_is_allowed(http: httpx.Client, tiktok: FakeTikTok) -> None:
    ids = hashes(2)
    assert upload(http, b"EMAIL_SHA256\n" + lines(ids))["code"] == 0
    assert tiktok.files()[0].ids == frozenset(ids)


def test_signature_must_be_the_files_md5(http: httpx.Client) -> None:
    content = lines(hashes(3))
    body = upload(http, content, signature=hashlib.md5(content + b"x").hexdigest())
    assert body["code"] == 40900


@pytest.mark.parametrize(
    "content",
    [
        b"jane@example.com\n",
        lines(hashes(2)) + b"+16577770000\n",
        lines([h.upper() for h in hashes(2)]),
        lines([h[:63] for h in hashes(2)]),
        b"\xff\xfe" + lines(hashes(1)),
    ],
    ids=["raw-email", "raw-phone-line", "upper-hex", "short", "binary"],
)
def test_anything_but_lower_hex_sha256_lines_is_refused(http: httpx.Client, content: bytes) -> None:
    body = upload(http, content)
    assert body["code"] == 40909
    # The refusal never echoes what it refused.
    assert "example.com" not in body["message"] and "1657" not in body["message"]


def test_md5_types_take_md5_lines(http: httpx.Client) -> None:
    md5 = hashlib.md5(b"device").hexdigest()
    assert upload(http, lines([md5]), calculate_type="IDFA_MD5")["code"] == 0
    assert upload(http, lines([md5]), calculate_type="IDFA_SHA256")["code"] == 40909


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"calculate_type": "EMAIL_PLAIN"}, 40002),
        ({"calculate_type": ""}, 40002),
        ({"file_name": "ids.json"}, 40908),
    ],
)
def test_upload_parameters(http: httpx.Client, change: dict[str, str], code: int) -> None:
    assert upload(http, lines(hashes(2)), **change)["code"] == code


def test_empty_and_oversized_files(tiktok: FakeTikTok, http: httpx.Client) -> None:
    assert upload(http, b"")["code"] == 40906
    assert upload(http, b"EMAIL_SHA256\n")["code"] == 40906
    tiktok.max_file_bytes = 65 * 10
    assert upload(http, lines(hashes(10)))["code"] == 0
    assert upload(http, lines(hashes(11)))["code"] == 40907


def test_upload_needs_multipart_and_its_fields(http: httpx.Client) -> None:
    answer = http.post(f"{API}/file/upload/", json={"advertiser_id": ADVERTISER})
    assert answer.json()["code"] == 40002
    answer = http.post(
        f"{API}/file/upload/",
        data={"advertiser_id": ADVERTISER, "calculate_type": "EMAIL_SHA256"},
        files={"file": ("ids.txt", lines(hashes(1)), "text/plain")},
    )
    assert answer.json()["code"] == 40002
    assert "file_signature" in answer.json()["message"]


# -- create and update


def test_create_holds_the_files_ids(http: httpx.Client, tiktok: FakeTikTok) -> None:
    ids = hashes(20)
    audience_id = create(http, ids)
    assert audience_id.isdigit()
    assert tiktok.members(audience_id) == {"e:" + h for h in ids}


def test_create_refuses_other_advertisers_files_and_mismatched_types(
    tiktok: FakeTikTok, http: httpx.Client
) -> None:
    with httpx.Client(base_url=tiktok.base_url, headers={"Access-Token": OTHER_TOKEN}) as other:
        theirs = file_path(other, hashes(2), advertiser=OTHER)
    phones = file_path(http, [sha("16577770000")], calculate_type="PHONE_SHA256")
    base = {
        "advertiser_id": ADVERTISER,
        "custom_audience_name": "x",
        "calculate_type": "EMAIL_SHA256",
    }
    assert post(http, "create", {**base, "file_paths": [theirs]})["code"] == 40905
    assert post(http, "create", {**base, "file_paths": ["dmp/made/up.txt"]})["code"] == 40905
    assert post(http, "create", {**base, "file_paths": [phones]})["code"] == 40909
    assert post(http, "create", {**base, "file_paths": []})["code"] == 40002
    mine = file_path(http, hashes(2))
    assert (
        post(http, "create", {**base, "file_paths": [mine], "calculate_type": "X"})["code"] == 40002
    )
    long_name = {**base, "custom_audience_name": "n" * 129, "file_paths": [mine]}
    assert post(http, "create", long_name)["code"] == 40002
    too_long = {**base, "file_paths": [mine], "retention_in_days": 366}
    assert post(http, "create", too_long)["code"] == 40002
    tiktok.max_file_paths = 1
    assert post(http, "create", {**base, "file_paths": [mine, mine]})["code"] == 40002


def test_update_append_remove_replace(http: httpx.Client, tiktok: FakeTikTok) -> None:
    first, more = hashes(1200), hashes(300, start=1200)
    audience_id = create(http, first)

    def update(ids: list[str], action: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "advertiser_id": ADVERTISER,
            "custom_audience_id": audience_id,
            "file_paths": [file_path(http, ids)],
        }
        if action is not None:
            body["action"] = action
        return post(http, "update", body)

    assert update(more, "APPEND")["code"] == 0
    assert tiktok.members(audience_id) == {"e:" + h for h in first + more}
    assert update(first[:100] + hashes(5, start=9000), "REMOVE")["code"] == 0
    assert tiktok.members(audience_id) == {"e:" + h for h in first[100:] + more}
    # TikTok's default action is REPLACE.
    assert update(hashes(1000, start=5000), None)["code"] == 0
    assert tiktok.members(audience_id) == {"e:" + h for h in hashes(1000, start=5000)}
    assert update(more, "DELETE")["code"] == 40002


def test_update_fails_below_1000_and_changes_nothing(
    http: httpx.Client, tiktok: FakeTikTok
) -> None:
    ids = hashes(1000)
    audience_id = create(http, ids)
    body = post(
        http,
        "update",
        {
            "advertiser_id": ADVERTISER,
            "custom_audience_id": audience_id,
            "action": "REMOVE",
            "file_paths": [file_path(http, ids[:1])],
        },
    )
    assert body["code"] == 40002
    assert "999" in body["message"]
    assert len(tiktok.members(audience_id)) == 1000


def test_update_refuses_unknown_and_other_advertisers_audiences(
    tiktok: FakeTikTok, http: httpx.Client
) -> None:
    theirs = tiktok.add_audience(OTHER, hashes(1000))
    mine = file_path(http, hashes(2))
    for audience_id in ("123456", theirs):
        body = post(
            http,
            "update",
            {
                "advertiser_id": ADVERTISER,
                "custom_audience_id": audience_id,
                "action": "APPEND",
                "file_paths": [mine],
            },
        )
        assert body["code"] == 40007
    assert len(tiktok.members(theirs)) == 1000
    body = post(http, "update", {"advertiser_id": ADVERTISER, "custom_audience_id": theirs})
    assert body["code"] == 40007


def test_update_files_must_have_the_audiences_type(http: httpx.Client, tiktok: FakeTikTok) -> None:
    audience_id = tiktok.add_audience(ADVERTISER, hashes(1000), calculate_type="PHONE_SHA256")
    body = post(
        http,
        "update",
        {
            "advertiser_id": ADVERTISER,
            "custom_audience_id": audience_id,
            "action": "APPEND",
            "file_paths": [file_path(http, hashes(2))],
        },
    )
    assert body["code"] == 40909


# -- get and list


def test_get_and_list(http: httpx.Client, tiktok: FakeTikTok) -> None:
    one = create(http, hashes(3))
    two = tiktok.add_audience(ADVERTISER, hashes(4), calculate_type="PHONE_SHA256")
    tiktok.add_audience(OTHER, hashes(1))
    answer = http.get(
        f"{API}/get/",
        params={"advertiser_id": ADVERTISER, "custom_audience_ids": json.dumps([one, two])},
    ).json()
    assert answer["code"] == 0
    details = [a["audience_details"] for a in answer["data"]["list"]]
    assert [(d["audience_id"], d["cover_num"]) for d in details] == [(one, 3), (two, 4)]
    unknown = http.get(
        f"{API}/get/",
        params={"advertiser_id": ADVERTISER, "custom_audience_ids": json.dumps(["1"])},
    ).json()
    assert unknown["code"] == 40007
    too_many = json.dumps([one] * 101)
    assert (
        http.get(
            f"{API}/get/", params={"advertiser_id": ADVERTISER, "custom_audience_ids": too_many}
        ).json()["code"]
        == 40002
    )
    page = http.get(
        f"{API}/list/", params={"advertiser_id": ADVERTISER, "page": 1, "page_size": 1}
    ).json()
    assert page["code"] == 0
    assert [a["audience_id"] for a in page["data"]["list"]] == [one]
    assert page["data"]["page_info"]["total_number"] == 2
    assert (
        http.get(f"{API}/list/", params={"advertiser_id": ADVERTISER, "page_size": 101}).json()[
            "code"
        ]
        == 40002
    )


def test_unknown_route(http: httpx.Client) -> None:
    answer = http.get("/open_api/v1.3/dmp/custom_audience/nothing/")
    assert answer.status_code == 404
    assert answer.json()["code"] == 40400


# -- rate limit and scripted failures


def test_qps_limit_per_token_per_second(clock: Clock, tiktok: FakeTikTok) -> None:
    tiktok.qps = 2
    url = f"{tiktok.base_url}{API}/list/"
    params = {"advertiser_id": ADVERTISER}
    mine = {"Access-Token": TOKEN}
    assert [httpx.get(url, params=params, headers=mine).json()["code"] for _ in range(3)] == [
        0,
        0,
        40100,
    ]
    # Another token has its own allowance.
    other = httpx.get(url, params={"advertiser_id": OTHER}, headers={"Access-Token": OTHER_TOKEN})
    assert other.json()["code"] == 0
    clock.now += 1.0
    assert httpx.get(url, params=params, headers=mine).json()["code"] == 0


def test_scripted_failures(http: httpx.Client, tiktok: FakeTikTok) -> None:
    params = {"advertiser_id": ADVERTISER}
    for kind, code in [
        ("token", 40105),
        ("expired_token", 40102),
        ("rate_limit", 40100),
        ("system", 50000),
    ]:
        tiktok.fail_next(kind)
        assert http.get(f"{API}/list/", params=params).json()["code"] == code
    tiktok.fail_next("500")
    assert http.get(f"{API}/list/", params=params).status_code == 500
    tiktok.fail_next("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"{API}/list/", params=params)
    assert not tiktok.files()
    tiktok.fail_next("lost")
    with pytest.raises(httpx.RemoteProtocolError):
        upload(http, lines(hashes(1)))
    assert len(tiktok.files()) == 1  # done, though unanswered
    assert http.get(f"{API}/list/", params=params).json()["code"] == 0
    with pytest.raises(ValueError):
        tiktok.fail_next("gremlins")


def test_slow_answers_arrive_after_the_callers_timeout(tiktok: FakeTikTok) -> None:
    tiktok.slow_seconds = 0.5
    tiktok.fail_next("slow")
    with (
        httpx.Client(
            base_url=tiktok.base_url, headers={"Access-Token": TOKEN}, timeout=0.05
        ) as hasty,
        pytest.raises(httpx.ReadTimeout),
    ):
        hasty.get(f"{API}/list/", params={"advertiser_id": ADVERTISER})


def test_chaos_is_seeded(tiktok: FakeTikTok, http: httpx.Client) -> None:
    tiktok.qps = 0  # only chaos refuses here

    def run() -> list[str]:
        tiktok.chaos(seed=7, rate=0.5)
        out = []
        for _ in range(20):
            try:
                answer = http.get(f"{API}/list/", params={"advertiser_id": ADVERTISER})
                out.append(str(answer.json()["code"]) if answer.status_code == 200 else "500")
            except httpx.TransportError:
                out.append("closed")
        tiktok.chaos(seed=0, rate=0)
        return out

    first = run()
    assert first == run()
    assert set(first) - {"0"}, first


def test_received_holds_bodies_but_no_token(http: httpx.Client, tiktok: FakeTikTok) -> None:
    upload(http, lines(hashes(2)))
    (request,) = tiktok.received
    assert request.path.endswith("/file/upload/")
    assert hashes(1)[0].encode() in request.body
    assert TOKEN.encode() not in request.body
    assert TOKEN not in repr(tiktok.received)


def test_python_dash_m_serves_one() -> None:
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    process = subprocess.Popen(
        [sys.executable, "-m", "segflow.activation.fake_tiktok", "--qps", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        base_url = first.rsplit(" ", 1)[1].strip()
        setup = json.loads(process.stdout.readline())
        (audience_id,) = setup["audiences"]
        answer = httpx.get(
            f"{base_url}{API}/get/",
            params={
                "advertiser_id": setup["advertiser_id"],
                "custom_audience_ids": json.dumps([audience_id]),
            },
            headers={"Access-Token": setup["access_token"]},
        ).json()
        assert answer["code"] == 0
        process.send_signal(signal.SIGTERM)
        last = json.loads(process.stdout.readline())
        assert last == {"requests": 1, "audiences": {audience_id: 0}}
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
