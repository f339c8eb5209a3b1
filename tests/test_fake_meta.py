"""The fake Graph API answers as Meta's does, seen through Meta's own ``facebook-business`` SDK.

Every test talks to a real :class:`FakeMeta` over HTTP on 127.0.0.1 with the
SDK's ``FacebookAdsApi`` (``AdAccount.api_get``, ``create_custom_audience``,
``CustomAudience.create_user`` / ``delete_users``, raw ``api.call``), and
asserts what a caller of the SDK sees: the parsed ``FacebookRequestError``
(code, subcode, message, type, transience, headers), the answer bodies, and
what the fake then holds.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.customaudience import CustomAudience
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession
from hypothesis import given, settings
from hypothesis import strategies as st

from segflow.activation.fake_meta import MAX_REQUEST_LINE, FakeMeta
from segflow.activation.fake_meta.state import Audience

TOKEN = "token-ok"
ACCOUNT = "123"
OTHER = "456"  # exists, but TOKEN was not given it
SRC = str(Path(__file__).resolve().parents[1] / "src")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def meta(clock: Clock) -> Iterator[FakeMeta]:
    with FakeMeta(clock=clock, calls_per_hour=10_000) as server:
        server.add_account(ACCOUNT, "Shop", business=("777", "Shop Ltd"))
        server.add_account(OTHER, "Elsewhere")
        server.add_token(TOKEN, accounts=[ACCOUNT])
        yield server


def sdk(meta: FakeMeta, token: str = TOKEN, timeout: float | None = None) -> FacebookAdsApi:
    session = FacebookSession(access_token=token)
    session.GRAPH = meta.url
    session.timeout = timeout
    return FacebookAdsApi(session, api_version="v26.0")


@pytest.fixture
def api(meta: FakeMeta) -> FacebookAdsApi:
    return sdk(meta)


def refused(call: Any) -> FacebookRequestError:
    with pytest.raises(FacebookRequestError) as caught:
        call()
    return caught.value


def users(audience_id: str, api: FacebookAdsApi) -> CustomAudience:
    return CustomAudience(audience_id, api=api)


def add(api: FacebookAdsApi, audience_id: str, schema: Any, data: list[Any]) -> dict[str, Any]:
    answer = users(audience_id, api).create_user(
        params={"payload": {"schema": schema, "data": data}}
    )
    return dict(answer.export_all_data())


def remove(api: FacebookAdsApi, audience_id: str, schema: Any, data: list[Any]) -> dict[str, Any]:
    answer = users(audience_id, api).delete_users(
        params={"payload": {"schema": schema, "data": data}}
    )
    return dict(answer.export_all_data())


# -- the ad account


def test_account_answers_only_the_fields_asked(api: FacebookAdsApi) -> None:
    account = AdAccount(f"act_{ACCOUNT}", api=api).api_get(
        fields=["account_id", "name", "business", "tos_accepted", "account_status"]
    )
    assert account.export_all_data() == {
        "id": "act_123",
        "account_id": "123",
        "name": "Shop",
        "account_status": 1,
        "business": {"id": "777", "name": "Shop Ltd"},
        "tos_accepted": {"custom_audience_tos": 1},
    }
    only_name = AdAccount(f"act_{ACCOUNT}", api=api).api_get(fields=["name"])
    assert only_name.export_all_data() == {"id": "act_123", "name": "Shop"}


def test_account_without_business_or_terms(meta: FakeMeta) -> None:
    meta.add_account("789", "Solo", tos_accepted=False)
    meta.add_token("t2", accounts=["789"])
    account = AdAccount("act_789", api=sdk(meta, "t2")).api_get(fields=["business", "tos_accepted"])
    assert account.export_all_data() == {"id": "act_789", "tos_accepted": {}}


@pytest.mark.parametrize("account", ["act_999", f"act_{OTHER}"])
def test_unknown_or_unseen_account_is_unsupported_get(api: FacebookAdsApi, account: str) -> None:
    error = refused(lambda: AdAccount(account, api=api).api_get(fields=["name"]))
    assert error.http_status() == 400
    assert (error.api_error_code(), error.api_error_subcode()) == (100, 33)
    assert error.api_error_type() == "GraphMethodException"
    assert error.api_error_message().startswith(
        f"Unsupported get request. Object with ID '{account}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation"
    )
    assert error.api_transient_error() is False


def test_unknown_field_is_refused(api: FacebookAdsApi) -> None:
    # Raw call: the SDK itself warns about a field it does not know.
    error = refused(lambda: api.call("GET", ("act_123",), params={"fields": "balance_secret"}))
    assert error.api_error_code() == 100
    assert (
        "nonexisting field (balance_secret) on node type (AdAccount)" in error.api_error_message()
    )


@pytest.mark.parametrize("version", ["v25.0", "v19.0", "v27.0"])
def test_other_versions_are_refused(api: FacebookAdsApi, version: str) -> None:
    error = refused(lambda: api.call("GET", ("act_123",), api_version=version))
    assert error.api_error_code() == 2635
    assert "deprecated version of the Ads API" in error.api_error_message()
    assert error.api_error_message().endswith("latest version: v26.0.")


# -- tokens


def test_unknown_token(meta: FakeMeta) -> None:
    error = refused(lambda: AdAccount("act_123", api=sdk(meta, "nope")).api_get(fields=["name"]))
    assert (error.api_error_code(), error.api_error_subcode()) == (190, None)
    assert error.api_error_type() == "OAuthException"
    assert error.api_error_message() == "Invalid OAuth access token - Cannot parse access token"


def test_expired_and_revoked_tokens(meta: FakeMeta) -> None:
    meta.add_token("old", accounts=[ACCOUNT], expired=True)
    error = refused(lambda: AdAccount("act_123", api=sdk(meta, "old")).api_get())
    assert (error.api_error_code(), error.api_error_subcode()) == (190, 463)
    assert error.api_error_message().startswith(
        "Error validating access token: Session has expired"
    )
    meta.revoke(TOKEN)
    error = refused(lambda: AdAccount("act_123", api=sdk(meta)).api_get())
    assert (error.api_error_code(), error.api_error_subcode()) == (190, 460)


def test_missing_token(meta: FakeMeta) -> None:
    answer = requests.get(f"{meta.url}/v26.0/act_123", timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == 104


def test_read_only_token_may_read_not_write(meta: FakeMeta) -> None:
    meta.add_token("reader", accounts=[ACCOUNT], permissions=("ads_read",))
    audience = meta.add_audience(ACCOUNT)
    reader = sdk(meta, "reader")
    assert AdAccount("act_123", api=reader).api_get(fields=["name"])["name"] == "Shop"
    error = refused(lambda: add(reader, audience, "EMAIL", [sha("a@x.com")]))
    assert error.api_error_code() == 200
    assert "ads_management" in error.api_error_message()
    error = refused(
        lambda: AdAccount("act_123", api=reader).create_custom_audience(
            params={"name": "n", "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY"}
        )
    )
    assert error.api_error_code() == 200
    assert meta.entries(audience) == set()


# -- creating and reading audiences


def create(api: FacebookAdsApi, account: str = ACCOUNT, **params: str) -> str:
    fields = {"name": "Big spenders", "subtype": "CUSTOM"}
    fields.update({"customer_file_source": "USER_PROVIDED_ONLY"})
    fields.update(params)
    fields = {k: v for k, v in fields.items() if v != ""}
    audience = AdAccount(f"act_{account}", api=api).create_custom_audience(params=fields)
    return str(audience.get_id())


def test_create_then_read_audience(meta: FakeMeta, api: FacebookAdsApi, clock: Clock) -> None:
    audience_id = create(api, description="spent over 1000")
    assert audience_id.isdigit()
    assert meta.audiences(ACCOUNT) == [audience_id]
    add(api, audience_id, "EMAIL", [sha(f"{i}@x.com") for i in range(50)])
    fields = [
        "name",
        "account_id",
        "subtype",
        "customer_file_source",
        "approximate_count_lower_bound",
        "approximate_count_upper_bound",
        "operation_status",
        "data_source",
        "time_updated",
    ]
    got = CustomAudience(audience_id, api=api).api_get(fields=fields).export_all_data()
    assert got["id"] == audience_id
    assert got["name"] == "Big spenders"
    assert got["account_id"] == ACCOUNT
    assert (got["subtype"], got["customer_file_source"]) == ("CUSTOM", "USER_PROVIDED_ONLY")
    assert got["approximate_count_lower_bound"] <= 50 <= got["approximate_count_upper_bound"]
    assert got["operation_status"]["code"] == 200
    assert got["time_updated"] == int(clock.now)
    assert set(got) == {"id", *fields}


def test_terms_not_accepted(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    meta.accept_tos(ACCOUNT, False)
    error = refused(lambda: create(api))
    assert error.api_error_code() == 2663
    assert error.api_error_message().startswith("(#2663) Terms of service has not been accepted")
    assert "act=123" in error.api_error_message()
    error = refused(lambda: add(api, audience, "EMAIL", [sha("a@x.com")]))
    assert error.api_error_code() == 2663
    assert meta.audiences(ACCOUNT) == [audience]


def test_create_needs_name_and_customer_file_source(meta: FakeMeta, api: FacebookAdsApi) -> None:
    error = refused(lambda: create(api, name=""))
    assert error.api_error_code() == 100
    assert error.api_error_message() == "(#100) The parameter name is required"
    error = refused(lambda: create(api, customer_file_source=""))
    assert error.api_error_code() == 100
    assert "customer_file_source" in error.body()["error"]["error_user_msg"]
    # Raw call: the SDK warns about a value outside its enum before sending it.
    bad = {"name": "n", "subtype": "CUSTOM", "customer_file_source": "SOMEONE_ELSE"}
    error = refused(lambda: api.call("POST", ("act_123", "customaudiences"), params=bad))
    assert error.api_error_code() == 100
    assert meta.audiences() == []


def test_create_in_unseen_account(api: FacebookAdsApi) -> None:
    error = refused(lambda: create(api, account=OTHER))
    assert (error.api_error_code(), error.api_error_subcode()) == (100, 33)
    assert error.api_error_message().startswith("Unsupported post request.")


def test_unknown_or_foreign_audience(meta: FakeMeta, api: FacebookAdsApi) -> None:
    foreign = meta.add_audience(OTHER)
    for audience_id in ("999", foreign):
        error = refused(lambda a=audience_id: CustomAudience(a, api=api).api_get(fields=["name"]))
        assert (error.api_error_code(), error.api_error_subcode()) == (100, 33)
        error = refused(lambda a=audience_id: add(api, a, "EMAIL", [sha("a@x.com")]))
        assert (error.api_error_code(), error.api_error_subcode()) == (100, 33)
        assert error.api_error_message().startswith(
            f"Unsupported post request. Object with ID '{audience_id}'"
        )
        error = refused(lambda a=audience_id: remove(api, a, "EMAIL", [sha("a@x.com")]))
        assert error.api_error_message().startswith("Unsupported delete request.")
    assert meta.entries(foreign) == set()


# -- membership


def test_add_answer_and_entries(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    rows = [[sha("a@x.com"), sha("+15550001"), sha("ann")], [sha("b@x.com"), "", ""]]
    answer = add(api, audience, ["EMAIL", "PHONE", "FN"], rows)
    assert answer["audience_id"] == audience
    assert (answer["num_received"], answer["num_invalid_entries"]) == (2, 0)
    assert answer["invalid_entry_samples"] == {}
    assert answer["session_id"].isdigit()
    assert meta.entries(audience) == {
        frozenset({("EMAIL", sha("a@x.com")), ("PHONE", sha("+15550001")), ("FN", sha("ann"))}),
        frozenset({("EMAIL", sha("b@x.com"))}),
    }
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com"), sha("b@x.com")}
    # The same row again adds nothing.
    add(api, audience, ["EMAIL", "PHONE", "FN"], rows)
    assert len(meta.entries(audience)) == 2


def test_remove_matches_any_strong_identifier(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    add(
        api,
        audience,
        ["EMAIL", "EMAIL", "PHONE", "EXTERN_ID"],
        [
            [sha("a@x.com"), sha("a2@x.com"), sha("+1"), ""],
            [sha("b@x.com"), "", "", "cust-2"],
            [sha("c@x.com"), "", sha("+3"), ""],
        ],
    )
    # A's second email alone, and C's phone alone, take out A and C.
    remove(api, audience, ["EMAIL", "PHONE"], [[sha("a2@x.com"), ""], ["", sha("+3")]])
    assert meta.hashes(audience, "EMAIL") == {sha("b@x.com")}
    remove(api, audience, "EXTERN_ID", ["cust-2"])
    assert meta.entries(audience) == set()


def test_remove_by_name_and_address(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    keys = ["FN", "LN", "ZIP", "COUNTRY"]
    ann_90210 = [sha("ann"), sha("lee"), sha("90210"), sha("us")]
    ann_10001 = [sha("ann"), sha("lee"), sha("10001"), sha("us")]
    add(api, audience, keys, [ann_90210, ann_10001])
    remove(api, audience, ["FN", "LN", "ZIP"], [[sha("ann"), sha("lee"), sha("10001")]])
    assert meta.hashes(audience, "ZIP") == {sha("90210")}
    # A first name alone names nobody.
    remove(api, audience, "FN", [sha("ann")])
    assert len(meta.entries(audience)) == 1


def test_unhashed_values_are_invalid_entries_never_held(
    meta: FakeMeta, api: FacebookAdsApi
) -> None:
    audience = meta.add_audience(ACCOUNT)
    rows = [
        [sha("a@x.com"), sha("ann")],
        ["raw@x.com", sha("bob")],
        [sha("c@x.com"), "Carol"],
        [sha("d@x.com").upper(), ""],
        ["", ""],
    ]
    answer = add(api, audience, ["EMAIL", "FN"], rows)
    assert (answer["num_received"], answer["num_invalid_entries"]) == (5, 4)
    assert answer["invalid_entry_samples"]["raw@x.com"] == "EMAIL"
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com")}
    assert meta.saw_raw(["raw@x.com"])
    assert not meta.saw_raw(["a@x.com"])


def test_refused_hashes_are_invalid_entries(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    meta.refuse.add(sha("bad@x.com"))
    answer = add(api, audience, "EMAIL", [sha("bad@x.com"), sha("ok@x.com")])
    assert answer["num_invalid_entries"] == 1
    assert meta.hashes(audience, "EMAIL") == {sha("ok@x.com")}


def test_sha256_schema_spelling(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    add(api, audience, "EMAIL_SHA256", [sha("a@x.com")])
    add(api, audience, ["PHONE_SHA256"], [[sha("+1")]])
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com")}
    assert meta.hashes(audience, "PHONE") == {sha("+1")}


@pytest.mark.parametrize(
    ("schema", "data", "title"),
    [
        (["EMAIL", "SHOE_SIZE"], [[sha("a"), "44"]], "Invalid Schema"),
        (["EMAIL"] * 4, [[sha("a")] * 4], "Invalid Schema"),
        (["FN", "FN"], [[sha("a"), sha("b")]], "Invalid Schema"),
        (["EMAIL", "PHONE"], [[sha("a")]], "Row Does Not Match Schema"),
        (["EMAIL"], [], "Missing Data"),
        ([], [[sha("a")]], "Invalid Schema"),
        (["EMAIL"], [[sha(str(i))] for i in range(10_001)], "Too Many Entries"),
    ],
)
def test_malformed_payloads_are_refused_whole(
    meta: FakeMeta, api: FacebookAdsApi, schema: Any, data: list[Any], title: str
) -> None:
    audience = meta.add_audience(ACCOUNT)
    error = refused(lambda: add(api, audience, schema, data))
    assert error.api_error_code() == 100
    assert error.api_error_message() == "Invalid parameter"
    assert error.body()["error"]["error_user_title"] == title
    assert meta.entries(audience) == set()


def test_ten_thousand_rows_are_accepted(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    rows = [[sha(f"{i}@x.com"), sha(f"+{i}")] for i in range(10_000)]
    answer = add(api, audience, ["EMAIL", "PHONE"], rows)
    assert answer["num_received"] == 10_000
    assert len(meta.entries(audience)) == 10_000


def test_missing_payload(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    error = refused(lambda: api.call("POST", (audience, "users"), params={"session": {}}))
    assert error.api_error_message() == "(#100) The parameter payload is required"


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        ({"data_processing_options": []}, True),
        ({"data_processing_options": ["LDU"]}, True),
        (
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 1,
                "data_processing_options_state": 1000,
            },
            True,
        ),
        (
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 0,
                "data_processing_options_state": 0,
            },
            True,
        ),
        ({"data_processing_options": ["GDPR"]}, False),
        ({"data_processing_options": "LDU"}, False),
        ({"data_processing_options": ["LDU"], "data_processing_options_country": 44}, False),
        (
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 0,
                "data_processing_options_state": 1000,
            },
            False,
        ),
        (
            {
                "data_processing_options": ["LDU"],
                "data_processing_options_country": 1,
                "data_processing_options_state": 5,
            },
            False,
        ),
    ],
)
def test_data_processing_options(
    meta: FakeMeta, api: FacebookAdsApi, options: dict[str, Any], ok: bool
) -> None:
    audience = meta.add_audience(ACCOUNT)
    payload = {"schema": "EMAIL", "data": [sha("a@x.com")], **options}
    call = lambda: users(audience, api).create_user(params={"payload": payload})  # noqa: E731
    if ok:
        call()
        assert meta.hashes(audience, "EMAIL") == {sha("a@x.com")}
    else:
        error = refused(call)
        assert error.body()["error"]["error_user_title"] == "Invalid Data Processing Options"
        assert meta.entries(audience) == set()


def test_sessions(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    batch = users(audience, api)
    for seq, last in ((1, False), (2, True)):
        answer = batch.create_user(
            params={
                "payload": {"schema": "EMAIL", "data": [sha(f"{seq}@x.com")]},
                "session": {
                    "session_id": 42,
                    "batch_seq": seq,
                    "last_batch_flag": last,
                    "estimated_num_total": 2,
                },
            }
        )
        assert answer["session_id"] == "42"
    error = refused(
        lambda: batch.create_user(
            params={
                "payload": {"schema": "EMAIL", "data": [sha("3@x.com")]},
                "session": {"session_id": 42, "batch_seq": 3, "last_batch_flag": True},
            }
        )
    )
    assert error.body()["error"]["error_user_title"] == "Session Finished"
    error = refused(
        lambda: batch.create_user(
            params={
                "payload": {"schema": "EMAIL", "data": [sha("3@x.com")]},
                "session": {"session_id": 0, "batch_seq": 1},
            }
        )
    )
    assert error.body()["error"]["error_user_title"] == "Invalid Session"
    assert len(meta.entries(audience)) == 2


# -- the request line: a large remove must go in the body


def test_large_remove_in_query_string_is_dropped_but_body_works(
    meta: FakeMeta, api: FacebookAdsApi
) -> None:
    audience = meta.add_audience(ACCOUNT)
    rows = [sha(f"{i}@x.com") for i in range(10_000)]
    add(api, audience, "EMAIL", rows)
    with pytest.raises(requests.ConnectionError) as caught:
        remove(api, audience, "EMAIL", rows)
    assert "RemoteDisconnected" in repr(caught.value)
    dropped = meta.received[-1]
    assert dropped.outcome == "dropped: request line too long"
    assert dropped.request_line_length > MAX_REQUEST_LINE
    assert len(meta.entries(audience)) == 10_000
    # The same rows in a form-encoded DELETE body are answered and applied.
    form = {
        "access_token": TOKEN,
        "payload": json.dumps({"schema": "EMAIL", "data": rows}),
    }
    answer = requests.delete(f"{meta.url}/v26.0/{audience}/users", data=form, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["num_received"] == 10_000
    assert meta.received[-1].request_line_length < 100
    assert meta.entries(audience) == set()


def test_a_json_body_carries_the_parameters_as_objects(meta: FakeMeta) -> None:
    audience = meta.add_audience(ACCOUNT)
    url = f"{meta.url}/v26.0/{audience}/users?access_token={TOKEN}"
    body = {"payload": {"schema": ["EMAIL"], "data": [[sha("a@x.com")], [sha("b@x.com")]]}}
    answer = requests.post(url, json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com"), sha("b@x.com")}
    gone = requests.delete(url, json={"payload": {"schema": "EMAIL", "data": [sha("a@x.com")]}})
    assert gone.status_code == 200, gone.text
    assert meta.hashes(audience, "EMAIL") == {sha("b@x.com")}
    refused = requests.post(url, data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 100
    assert meta.hashes(audience, "EMAIL") == {sha("b@x.com")}


def test_post_with_method_delete_removes(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    add(api, audience, "EMAIL", [sha("a@x.com"), sha("b@x.com")])
    api.call(
        "POST",
        (audience, "users"),
        params={"method": "delete", "payload": {"schema": "EMAIL", "data": [sha("a@x.com")]}},
    )
    assert meta.hashes(audience, "EMAIL") == {sha("b@x.com")}


def test_request_line_at_the_limit_is_answered(meta: FakeMeta) -> None:
    path = f"/v26.0/act_123?access_token={TOKEN}&fields=name&pad="
    prefix = f"GET {path}"
    pad = "x" * (MAX_REQUEST_LINE - len(prefix) - len(" HTTP/1.1"))
    answer = requests.get(f"{meta.url}{path}{pad}", timeout=10)
    assert answer.status_code == 200
    assert meta.received[-1].request_line_length == MAX_REQUEST_LINE
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{meta.url}{path}{pad}x", timeout=10)


# -- the call budget


def test_account_budget_and_usage_header(clock: Clock) -> None:
    with FakeMeta(clock=clock, calls_per_hour=4) as meta:
        meta.add_account(ACCOUNT)
        meta.add_token(TOKEN, accounts=[ACCOUNT])
        api = sdk(meta)
        audience = meta.add_audience(ACCOUNT)
        first = CustomAudience(audience, api=api)
        answer = api.call("GET", (audience,), params={"fields": "name"})
        usage = json.loads(answer.headers()["X-Business-Use-Case-Usage"])
        assert usage == {
            ACCOUNT: [
                {
                    "type": "custom_audience",
                    "call_count": 25,
                    "total_cputime": 25,
                    "total_time": 25,
                    "estimated_time_to_regain_access": 0,
                    "ads_api_access_tier": "standard_access",
                }
            ]
        }
        for i in range(3):
            clock.now += 60
            add(api, audience, "EMAIL", [sha(f"{i}@x.com")])
        clock.now += 60
        error = refused(
            lambda: first.create_user(
                params={"payload": {"schema": "EMAIL", "data": [sha("late@x.com")]}}
            )
        )
        assert (error.api_error_code(), error.api_error_subcode()) == (80003, 2446079)
        assert error.api_error_message().startswith(
            "(#80003) There have been too many calls to this ad-account."
        )
        assert error.api_transient_error() is True
        header = json.loads(error.http_headers()["X-Business-Use-Case-Usage"])[ACCOUNT][0]
        assert header["call_count"] == 100
        # The first call (at t0) leaves the window at t0 + 60 min; it is now t0 + 4 min.
        assert header["estimated_time_to_regain_access"] == 56
        assert meta.hashes(audience, "EMAIL") == {sha(f"{i}@x.com") for i in range(3)}
        # The ad account itself is not a custom-audience call.
        AdAccount("act_123", api=api).api_get(fields=["name"])
        clock.now += 56 * 60
        add(api, audience, "EMAIL", [sha("late@x.com")])
        assert sha("late@x.com") in meta.hashes(audience, "EMAIL")


# -- scripted failures


@pytest.mark.parametrize(
    ("kind", "status", "code", "transient"),
    [
        ("app_limit", 400, 4, True),
        ("user_limit", 400, 17, True),
        ("calls_exceeded", 400, 613, True),
        ("account_limit", 400, 80003, True),
        ("transient", 500, 2, True),
    ],
)
def test_scripted_graph_errors(
    meta: FakeMeta, api: FacebookAdsApi, kind: str, status: int, code: int, transient: bool
) -> None:
    audience = meta.add_audience(ACCOUNT)
    meta.fail_next(kind, count=2)
    for _ in range(2):
        error = refused(lambda: add(api, audience, "EMAIL", [sha("a@x.com")]))
        assert (error.http_status(), error.api_error_code()) == (status, code)
        assert error.api_transient_error() is transient
        assert error.body()["error"]["fbtrace_id"]
    if kind == "account_limit":
        usage = json.loads(error.http_headers()["X-Business-Use-Case-Usage"])
        assert usage[ACCOUNT][0]["type"] == "custom_audience"
    assert meta.entries(audience) == set()
    add(api, audience, "EMAIL", [sha("a@x.com")])
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com")}


def test_scripted_503_html(meta: FakeMeta, api: FacebookAdsApi) -> None:
    meta.fail_next("unavailable")
    error = refused(lambda: AdAccount("act_123", api=api).api_get(fields=["name"]))
    assert error.http_status() == 503
    assert error.api_error_code() is None
    assert "Service Unavailable" in error.body()


def test_drop_applies_nothing_lost_applies(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    meta.fail_next("drop")
    with pytest.raises(requests.ConnectionError):
        add(api, audience, "EMAIL", [sha("a@x.com")])
    assert meta.entries(audience) == set()
    meta.fail_next("lost")
    with pytest.raises(requests.ConnectionError):
        add(api, audience, "EMAIL", [sha("a@x.com")])
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com")}
    assert [r.outcome for r in meta.received[-2:]] == ["dropped", "dropped"]


def test_slow_answer_times_out_and_still_applies(meta: FakeMeta) -> None:
    audience = meta.add_audience(ACCOUNT)
    impatient = sdk(meta, timeout=0.2)
    meta.fail_next("slow", sleep=1.0)
    with pytest.raises(requests.Timeout):
        add(impatient, audience, "EMAIL", [sha("a@x.com")])
    # The slow request is still being served: wait for its effect (bounded polling).
    for _ in range(1000):
        if meta.entries(audience):
            break
        time.sleep(0.01)
    assert meta.hashes(audience, "EMAIL") == {sha("a@x.com")}


def test_chaos_is_seeded(clock: Clock) -> None:
    def run(seed: int) -> list[str]:
        with FakeMeta(clock=clock) as meta:
            meta.add_account(ACCOUNT)
            meta.add_token(TOKEN, accounts=[ACCOUNT])
            meta.chaos(seed, rate=0.5, sleep=0.0)
            api = sdk(meta)
            outcomes = []
            for _ in range(30):
                try:
                    api.call("GET", ("act_123",), params={"fields": "name"})
                    outcomes.append("ok")
                except FacebookRequestError as error:
                    outcomes.append(str(error.api_error_code() or error.http_status()))
                except requests.ConnectionError:
                    outcomes.append("dropped")
            return outcomes

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    assert "ok" in first and len(set(first)) > 3


def test_unknown_failure_kind() -> None:
    with pytest.raises(ValueError, match="unknown failure"):
        FakeMeta().fail_next("meteor")


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeMeta(host="0.0.0.0")


def test_every_request_is_recorded(meta: FakeMeta, api: FacebookAdsApi) -> None:
    audience = meta.add_audience(ACCOUNT)
    before = meta.request_count
    add(api, audience, "EMAIL", [sha("a@x.com")])
    refused(lambda: AdAccount("act_999", api=api).api_get())
    assert meta.request_count == before + 2
    posted, failed = meta.received[-2:]
    assert (posted.method, posted.path, posted.status) == ("POST", f"/v26.0/{audience}/users", 200)
    assert posted.body_size > 64 and "payload" in posted.params
    assert (failed.method, failed.status, failed.outcome) == ("GET", 400, "error")
    assert meta.requests("POST", "/users") == [posted]


# -- the membership model against a reference


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from("abcdef"), st.sampled_from("uvw")),
        max_size=30,
    )
)
def test_membership_matches_reference(ops: list[tuple[bool, str, str]]) -> None:
    """Rows of (EMAIL, PHONE): a remove drops every entry sharing either value."""
    audience = Audience("1", ACCOUNT, "n", "", "CUSTOM", "USER_PROVIDED_ONLY", 0)
    reference: set[tuple[str, str]] = set()
    for adding, mail, phone in ops:
        entry = frozenset({("EMAIL", sha(mail)), ("PHONE", sha(phone))})
        if adding:
            audience.add(entry)
            reference.add((mail, phone))
        else:
            audience.remove_matching(entry)
            reference = {(m, p) for m, p in reference if m != mail and p != phone}
    assert audience.entries == {
        frozenset({("EMAIL", sha(m)), ("PHONE", sha(p))}) for m, p in reference
    }


# -- python -m


def test_main_serves_and_reports() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "segflow.activation.fake_meta",
            "--account",
            "act_321",
            "--audience",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": SRC},
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        setup = json.loads(process.stdout.readline())
        assert url.startswith("http://127.0.0.1:")
        audience = setup["audiences"]["321"]
        session = FacebookSession(access_token=setup["token"])
        session.GRAPH = url
        api = FacebookAdsApi(session, api_version="v26.0")
        add(api, audience, "EMAIL", [sha("a@x.com")])
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert json.loads(out.strip().splitlines()[-1]) == {"requests": 1, "audiences": {audience: 1}}
