"""The real TikTok client and sender against the fake, over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from segflow.activation.fake_tiktok import FakeTikTok
from segflow.activation.identifiers import Mapping, Skipped
from segflow.activation.tiktok.client import TikTokClient, failure
from segflow.activation.tiktok.config import tiktok_config
from segflow.activation.tiktok.normalise import codes_for
from segflow.activation.tiktok.sender import (
    MAX_MEMBERS_PER_REQUEST,
    TikTokSender,
    create_audience,
)
from segflow.activation.transport import (
    INGEST,
    REMOVE,
    LinkBroken,
    OutMember,
    QuotaExhausted,
    Receipt,
    RequestRejected,
    TransientError,
)
from segflow.errors import InvalidInput

ADVERTISER = "7000000000000000001"
TOKEN = "tt-secret-access-token-do-not-leak-9f8e7d"
MAPPING = Mapping(email=("email",), phone=("phone",), default_region="US")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        # Every request a fresh second: the QPS limit is tested on its own.
        self.now += 1.0
        return self.now


def record(i: int) -> dict[str, str | None]:
    return {
        "email": f" Person.{i}@Example.COM ",
        "phone": f"+1 415 555 {i % 10_000:04d}" if i % 3 else None,
    }


def members(ids: Sequence[int]) -> list[OutMember]:
    out = []
    for i in ids:
        codes = codes_for(record(i), MAPPING, Skipped())
        out.append(OutMember(rid=i, codes=tuple(codes)))
    return out


def codes(batch: Sequence[OutMember], prefix: str = "e:") -> set[str]:
    return {c for m in batch for c in m.codes if c.startswith(prefix)}


@pytest.fixture
def tiktok() -> Iterator[FakeTikTok]:
    with FakeTikTok(clock=Clock()) as server:
        server.add_token(TOKEN, [ADVERTISER])
        yield server


@pytest.fixture
def audience_id(tiktok: FakeTikTok) -> str:
    return tiktok.add_audience(ADVERTISER)


def sender(
    tiktok: FakeTikTok, audience_id: str, *, id_type: str = "email", timeout: float = 30
) -> TikTokSender:
    config = tiktok_config(
        {"advertiser_id": ADVERTISER, "audience_id": audience_id, "id_type": id_type}
    )
    return TikTokSender(config, TOKEN, tiktok.base_url, timeout=timeout)


def test_add_then_remove_leaves_the_intended_audience(tiktok: FakeTikTok, audience_id: str) -> None:
    everyone = members(range(3000))
    leaving = everyone[:800]
    s = sender(tiktok, audience_id)
    try:
        receipt = s.send(INGEST, everyone)
        assert receipt and not receipt.startswith("local-")
        assert tiktok.members(audience_id) == codes(everyone)
        s.send(REMOVE, leaving)
    finally:
        s.close()
    assert tiktok.members(audience_id) == codes(everyone[800:])
    update = tiktok.received[-1]
    assert update.path.endswith("/update/") and b'"REMOVE"' in update.body


def test_phone_audiences_take_the_phone_hashes(tiktok: FakeTikTok) -> None:
    audience_id = tiktok.add_audience(ADVERTISER, calculate_type="PHONE_SHA256")
    batch = members(range(1500))
    s = sender(tiktok, audience_id, id_type="phone")
    try:
        receipt = s.send(INGEST, batch)
    finally:
        s.close()
    assert tiktok.members(audience_id) == codes(batch, "p:")
    # A third of the members have no phone: said, not sent.
    assert isinstance(receipt, Receipt)
    assert any("500 member(s) have no phone number" in w for w in receipt.warnings)


def test_no_raw_identifier_or_token_reaches_tiktok(tiktok: FakeTikTok, audience_id: str) -> None:
    s = sender(tiktok, audience_id)
    try:
        s.send(INGEST, members(range(1200)))
    finally:
        s.close()
    for request in tiktok.received:
        assert b"example.com" not in request.body.lower()
        assert b"+1 415" not in request.body and b"1415555" not in request.body
        assert TOKEN.encode() not in request.body
        assert TOKEN not in str(request.query)


def test_a_batch_without_the_audiences_kind_sends_nothing(
    tiktok: FakeTikTok, audience_id: str
) -> None:
    s = sender(tiktok, audience_id)
    try:
        receipt = s.send(INGEST, [OutMember(1, ("p:" + "a" * 64,))])
    finally:
        s.close()
    assert receipt.startswith("local-")
    assert tiktok.received == []


def test_oversized_batches_are_a_callers_bug(tiktok: FakeTikTok, audience_id: str) -> None:
    s = sender(tiktok, audience_id)
    try:
        with pytest.raises(ValueError):
            s.send(INGEST, [OutMember(1, ())] * (MAX_MEMBERS_PER_REQUEST + 1))
        with pytest.raises(ValueError):
            s.send("replace", members(range(2)))
    finally:
        s.close()


def test_create_audience_from_a_name_and_members(tiktok: FakeTikTok) -> None:
    config = tiktok_config({"advertiser_id": ADVERTISER, "audience_name": "Big spenders"})
    batch = members(range(1000))
    audience_id = create_audience(config, TOKEN, tiktok.base_url, config["audience_name"], batch)
    assert tiktok.audience(audience_id).name == "Big spenders"
    assert tiktok.members(audience_id) == codes(batch)
    with pytest.raises(InvalidInput, match="only from uploaded ids"):
        create_audience(config, TOKEN, tiktok.base_url, "empty")


def test_client_get_and_list(tiktok: FakeTikTok, audience_id: str) -> None:
    with TikTokClient(tiktok.base_url, TOKEN) as client:
        (found,) = client.get_audiences(ADVERTISER, [audience_id])
        assert found["audience_details"]["audience_id"] == audience_id
        page = client.list_audiences(ADVERTISER)
        assert [a["audience_id"] for a in page["list"]] == [audience_id]
        with pytest.raises(LinkBroken, match="40007"):
            client.get_audiences(ADVERTISER, ["1"])


# -- failures, each as the sync pass must see it


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("token", LinkBroken),
        ("expired_token", LinkBroken),
        ("rate_limit", TransientError),
        ("system", TransientError),
        ("500", TransientError),
        ("drop", TransientError),
        ("lost", TransientError),
    ],
)
def test_each_failure_maps_to_its_kind(
    tiktok: FakeTikTok, audience_id: str, kind: str, expected: type[Exception]
) -> None:
    batch = members(range(1100))
    s = sender(tiktok, audience_id)
    try:
        tiktok.fail_next(kind)
        with pytest.raises(expected) as caught:
            s.send(INGEST, batch)
        assert not isinstance(caught.value, QuotaExhausted)
        assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
        assert caught.value.__cause__ is None and caught.value.__context__ is None
        # Sent again, the batch lands once: APPEND adds only what is missing.
        s.send(INGEST, batch)
    finally:
        s.close()
    assert tiktok.members(audience_id) == codes(batch)


def test_answer_lost_after_the_update_was_applied(tiktok: FakeTikTok, audience_id: str) -> None:
    everyone = members(range(1500))
    s = sender(tiktok, audience_id)
    try:
        s.send(INGEST, everyone)
        tiktok.fail_next("lost", path="/update/")
        with pytest.raises(TransientError):
            s.send(REMOVE, everyone[:300])
        # TikTok removed them all the same; the retry removes nothing more.
        assert tiktok.members(audience_id) == codes(everyone[300:])
        s.send(REMOVE, everyone[:300])
    finally:
        s.close()
    assert tiktok.members(audience_id) == codes(everyone[300:])


def test_slower_than_the_timeout_is_transient(tiktok: FakeTikTok, audience_id: str) -> None:
    tiktok.slow_seconds = 0.5
    tiktok.fail_next("slow")
    s = sender(tiktok, audience_id, timeout=0.05)
    try:
        with pytest.raises(TransientError, match="in time"):
            s.send(INGEST, members(range(1000)))
    finally:
        s.close()


def test_unknown_advertiser_and_audience_break_the_link(tiktok: FakeTikTok) -> None:
    config = {"advertiser_id": "123", "audience_id": "456", "id_type": "email"}
    s = TikTokSender(config, TOKEN, tiktok.base_url)
    try:
        with pytest.raises(LinkBroken, match="40001"):
            s.send(INGEST, members(range(3)))
    finally:
        s.close()
    s = sender(tiktok, "999")
    try:
        with pytest.raises(LinkBroken, match="40007"):
            s.send(INGEST, members(range(3)))
    finally:
        s.close()


def test_an_audience_left_under_1000_breaks_the_link(tiktok: FakeTikTok, audience_id: str) -> None:
    s = sender(tiktok, audience_id)
    try:
        with pytest.raises(LinkBroken, match="at least 1000"):
            s.send(INGEST, members(range(10)))
    finally:
        s.close()
    assert tiktok.members(audience_id) == set()


def test_unreachable_tiktok_is_transient() -> None:
    with FakeTikTok() as gone:
        url = gone.base_url
    config = {"advertiser_id": ADVERTISER, "audience_id": "1", "id_type": "email"}
    s = TikTokSender(config, TOKEN, url)
    try:
        with pytest.raises(TransientError, match="connection"):
            s.send(INGEST, members(range(2)))
    finally:
        s.close()


def test_chaos_ends_with_the_intended_audience(tiktok: FakeTikTok, audience_id: str) -> None:
    everyone = members(range(2500))
    plan = [(INGEST, everyone[:1500]), (INGEST, everyone[1500:]), (REMOVE, everyone[:400])]
    tiktok.chaos(seed=3, rate=0.4)
    s = sender(tiktok, audience_id)
    failures = 0
    try:
        for operation, batch in plan:
            while True:
                try:
                    s.send(operation, batch)
                    break
                except TransientError:
                    failures += 1
                    assert failures < 100
    finally:
        s.close()
    assert failures > 0
    assert tiktok.members(audience_id) == codes(everyone[400:])


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (40001, LinkBroken),
        (40102, LinkBroken),
        (40104, LinkBroken),
        (40105, LinkBroken),
        (40130, LinkBroken),
        (40300, LinkBroken),
        (40007, LinkBroken),
        (40100, TransientError),
        (40132, TransientError),
        (61000, TransientError),
        (50000, TransientError),
        (51003, TransientError),
        (40000, RequestRejected),
        (40002, RequestRejected),
        (40062, RequestRejected),
        (40900, RequestRejected),
        (40909, RequestRejected),
    ],
)
def test_code_table(code: int, expected: type[Exception]) -> None:
    error = failure(code, "said TikTok", "req-1")
    assert type(error) is expected
    assert str(code) in str(error) and "said TikTok" in str(error) and "req-1" in str(error)


def test_the_token_is_never_logged(
    tiktok: FakeTikTok, audience_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = sender(tiktok, audience_id)
    try:
        s.send(INGEST, members(range(1000)))
        tiktok.fail_next("token")
        with pytest.raises(LinkBroken):
            s.send(REMOVE, members(range(5)))
    finally:
        s.close()
    assert caplog.records  # httpx and httpcore did log at DEBUG
    for entry in caplog.records:
        assert TOKEN not in entry.getMessage()
        assert TOKEN not in repr(entry.args)


# -- config


def test_config_checks() -> None:
    assert tiktok_config({"advertiser_id": " 7000 ", "audience_id": 42}) == {
        "advertiser_id": "7000",
        "audience_id": "42",
        "id_type": "email",
    }
    with pytest.raises(InvalidInput, match="unknown tiktok setting.*colour, size"):
        tiktok_config({"advertiser_id": "1", "audience_id": "2", "size": 1, "colour": "red"})
    with pytest.raises(InvalidInput, match="digits"):
        tiktok_config({"advertiser_id": "act_1", "audience_id": "2"})
    with pytest.raises(InvalidInput, match="not both"):
        tiktok_config({"advertiser_id": "1", "audience_id": "2", "audience_name": "x"})
    with pytest.raises(InvalidInput, match="audience_id or audience_name"):
        tiktok_config({"advertiser_id": "1"})
    with pytest.raises(InvalidInput, match="128"):
        tiktok_config({"advertiser_id": "1", "audience_name": "n" * 129})
    with pytest.raises(InvalidInput, match="id_type"):
        tiktok_config({"advertiser_id": "1", "audience_id": "2", "id_type": "maid"})
    with pytest.raises(InvalidInput) as caught:
        tiktok_config({"advertiser_id": "1", "audience_id": "2", "access_token": TOKEN})
    assert "access_token" in str(caught.value) and TOKEN not in str(caught.value)


def test_a_token_echoed_by_tiktok_is_masked() -> None:
    # TikTok's messages do not quote the token; if one ever did, it stays out.
    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            token = self.headers.get("Access-Token", "")
            body = json.dumps(
                {"code": 40105, "message": f"token {token} is invalid", "request_id": "r1"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        with (
            TikTokClient(f"http://{host!s}:{port}", TOKEN) as client,
            pytest.raises(LinkBroken) as caught,
        ):
            client.list_audiences(ADVERTISER)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert "[access token]" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_a_token_a_header_cannot_carry_is_refused_unechoed() -> None:
    with pytest.raises(ValueError) as caught:
        TikTokClient("http://127.0.0.1:9", "abc\r\nX-Evil: 1")
    assert "abc" not in str(caught.value)
