"""The fake Data Manager API answers as Google's does, seen through Google's own client.

Every test talks to a real :class:`FakeDataManager` with the official
``google-ads-datamanager`` client over a gRPC channel, and asserts what a
caller of that client sees: the exception class, ``grpc_status_code``,
``reason`` and the decoded ``details`` (``ErrorInfo``, ``BadRequest``,
``QuotaFailure``, ``RetryInfo``), the request status and the user lists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.ads import datamanager_v1 as dm
from google.ads.datamanager_v1.services.ingestion_service.transports import (
    IngestionServiceGrpcTransport,
)
from google.ads.datamanager_v1.services.user_list_service.transports import (
    UserListServiceGrpcTransport,
)
from google.api_core import exceptions as core
from google.auth import exceptions as auth_errors
from google.auth.transport import grpc as auth_grpc
from google.auth.transport import requests as auth_requests
from google.oauth2.credentials import Credentials
from google.rpc import error_details_pb2

from segflow.activation.fake import Failure, FakeDataManager, member_key
from segflow.activation.fake.checks import member_keys, member_problems
from segflow.activation.fake.state import CustomerList
from tests.sync_helpers import ACCOUNT, LIST_ID

MANAGER = "5550001111"
PACIFIC_MIDNIGHT = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC).timestamp()  # 00:00 PST


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class FakeClock:
    def __init__(self, now: float = PACIFIC_MIDNIGHT + 3600 + 10) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def email(text: str) -> dm.UserIdentifier:
    return dm.UserIdentifier(email_address=sha(text))


def phone(text: str) -> dm.UserIdentifier:
    return dm.UserIdentifier(phone_number=sha(text))


def member(*identifiers: dm.UserIdentifier, denied: bool = False) -> dm.AudienceMember:
    out = dm.AudienceMember(user_data=dm.UserData(user_identifiers=list(identifiers)))
    if denied:
        out.consent = dm.Consent(ad_user_data="CONSENT_DENIED", ad_personalization="CONSENT_DENIED")
    return out


def destination(
    list_id: str = LIST_ID, account: str = ACCOUNT, login: str | None = None
) -> dm.Destination:
    out = dm.Destination(
        operating_account=dm.ProductAccount(account_type="GOOGLE_ADS", account_id=account),
        product_destination_id=list_id,
    )
    if login is not None:
        out.login_account = dm.ProductAccount(account_type="GOOGLE_ADS", account_id=login)
    return out


def ingest_request(
    *members: dm.AudienceMember,
    target: dm.Destination | None = None,
    terms: str = "ACCEPTED",
    validate_only: bool = False,
) -> dm.IngestAudienceMembersRequest:
    return dm.IngestAudienceMembersRequest(
        destinations=[target or destination()],
        audience_members=list(members) or [member(email("someone@example.com"))],
        consent=dm.Consent(ad_user_data="CONSENT_GRANTED", ad_personalization="CONSENT_GRANTED"),
        terms_of_service=dm.TermsOfService(customer_match_terms_of_service_status=terms),
        encoding="HEX",
        validate_only=validate_only,
    )


def remove_request(*members: dm.AudienceMember) -> dm.RemoveAudienceMembersRequest:
    return dm.RemoveAudienceMembersRequest(
        destinations=[destination()], audience_members=list(members), encoding="HEX"
    )


@pytest.fixture
def channel(fake: FakeDataManager) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fake.address) as out:
        yield out


@pytest.fixture
def ingestion(channel: grpc.Channel) -> dm.IngestionServiceClient:
    return dm.IngestionServiceClient(transport=IngestionServiceGrpcTransport(channel=channel))


@pytest.fixture
def user_lists(channel: grpc.Channel) -> dm.UserListServiceClient:
    return dm.UserListServiceClient(transport=UserListServiceGrpcTransport(channel=channel))


def ingest(client: dm.IngestionServiceClient, request: Any) -> str:
    return str(client.ingest_audience_members(request=request, retry=None, timeout=10).request_id)


def refused(call: Any, *args: Any, **kwargs: Any) -> core.GoogleAPICallError:
    with pytest.raises(core.GoogleAPICallError) as caught:
        call(*args, retry=None, timeout=10, **kwargs)
    return caught.value


def detail(exc: core.GoogleAPICallError, kind: type) -> Any:
    (found,) = [d for d in exc.details if isinstance(d, kind)]
    return found


def violations(exc: core.GoogleAPICallError) -> list[tuple[str, str]]:
    bad = detail(exc, error_details_pb2.BadRequest)
    return [(v.field, v.reason) for v in bad.field_violations]


# -- accounts, lists, login accounts


def test_an_unknown_list_is_an_invalid_argument_naming_the_destination(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    exc = refused(
        ingestion.ingest_audience_members, request=ingest_request(target=destination("9"))
    )
    assert isinstance(exc, core.InvalidArgument)
    assert exc.grpc_status_code == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.reason == "INVALID_ARGUMENT"
    assert exc.domain == "datamanager.googleapis.com"
    assert violations(exc) == [
        ("destinations.destinations[0].product_destination_id", "INVALID_USER_LIST_ID")
    ]
    assert fake.members("9") == set() and fake.members(LIST_ID) == set()


def test_a_list_of_another_account_is_unknown_to_this_one(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.add_account("2220003333")
    fake.add_list("2220003333", "8001")
    exc = refused(
        ingestion.ingest_audience_members, request=ingest_request(target=destination("8001"))
    )
    assert violations(exc) == [
        ("destinations.destinations[0].product_destination_id", "INVALID_USER_LIST_ID")
    ]


def test_an_unknown_operating_account_is_permission_denied(
    ingestion: dm.IngestionServiceClient,
) -> None:
    exc = refused(
        ingestion.ingest_audience_members,
        request=ingest_request(target=destination(account="9999999999")),
    )
    assert isinstance(exc, core.PermissionDenied)
    assert exc.reason == "PERMISSION_DENIED"
    assert exc.metadata == {
        "field": "destinations.destinations[0].operating_account",
        "account": "9999999999",
    }
    assert violations(exc) == [
        ("destinations.destinations[0].operating_account", "PERMISSION_DENIED")
    ]


def test_the_login_account_must_be_the_account_or_one_of_its_managers(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.add_account(ACCOUNT, managers=[MANAGER])
    for login in (ACCOUNT, MANAGER):
        ingest(ingestion, ingest_request(target=destination(login=login)))
    exc = refused(
        ingestion.ingest_audience_members,
        request=ingest_request(target=destination(login="4440004444")),
    )
    assert isinstance(exc, core.PermissionDenied)
    assert exc.metadata["field"] == "destinations.destinations[0].login_account"
    assert exc.metadata["account"] == "4440004444"


def test_add_list_refuses_what_google_would_not_create(fake: FakeDataManager) -> None:
    with pytest.raises(ValueError, match="add_account"):
        fake.add_list("3330003333", "1")
    with pytest.raises(ValueError, match="exists"):
        fake.add_list(ACCOUNT, LIST_ID)
    made = fake.add_list(ACCOUNT, display_name="VIPs")
    assert made.isdigit() and made != LIST_ID
    with pytest.raises(ValueError, match="taken"):
        fake.add_list(ACCOUNT, display_name="VIPs")


# -- members


def test_every_bad_member_is_named_with_its_own_reason(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.refuse = {f"e:{sha('refused@example.com')}"}
    request = ingest_request(
        member(email("good@example.com")),
        member(dm.UserIdentifier(email_address="plain@example.com")),  # not hashed
        member(email("good2@example.com")),
        member(dm.UserIdentifier(phone_number="abcd")),  # hex, but no SHA-256
        member(email("refused@example.com")),
        member(*[email(f"{n}@example.com") for n in range(11)]),
    )
    exc = refused(ingestion.ingest_audience_members, request=request)
    assert isinstance(exc, core.InvalidArgument)
    assert exc.reason == "INVALID_ARGUMENT"
    assert exc.message == "There was a problem with the request."
    at = "audience_members.audience_members"
    assert violations(exc) == [
        (f"{at}[1].user_data.user_identifiers", "INVALID_HEX_ENCODING"),
        (f"{at}[3]", "INVALID_SHA256_FORMAT"),
        (f"{at}[4]", "INVALID_AUDIENCE_MEMBER"),
        (f"{at}[5].user_data.user_identifiers", "TOO_MANY_USER_IDENTIFIERS"),
    ]
    # Fast fail: nothing of the request is held, not even its good members.
    assert fake.members(LIST_ID) == set()


def test_a_hash_with_a_trailing_newline_is_not_a_hash(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    request = ingest_request(member(dm.UserIdentifier(email_address=sha("a@b.c") + "\n")))
    exc = refused(ingestion.ingest_audience_members, request=request)
    assert violations(exc) == [
        ("audience_members.audience_members[0].user_data.user_identifiers", "INVALID_HEX_ENCODING")
    ]


def test_a_bad_address_names_its_region_and_postal_code(
    ingestion: dm.IngestionServiceClient,
) -> None:
    address = dm.AddressInfo(
        given_name=sha("ann"), family_name=sha("lee"), region_code="usa", postal_code=""
    )
    exc = refused(
        ingestion.ingest_audience_members,
        request=ingest_request(member(dm.UserIdentifier(address=address))),
    )
    at = "audience_members.audience_members[0].user_data.user_identifiers.address"
    assert violations(exc) == [
        (f"{at}.region_code", "INVALID_REGION_CODE"),
        (f"{at}.postal_code", "INVALID_POSTAL_CODE"),
    ]


def test_whole_request_problems_are_named_as_such(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    exc = refused(ingestion.ingest_audience_members, request=ingest_request(terms="REJECTED"))
    assert exc.reason == "INVALID_ARGUMENT"
    terms = "terms_of_service.customer_match_terms_of_service_status"
    assert violations(exc) == [(terms, "TERMS_AND_CONDITIONS_NOT_SIGNED")]
    many = [member(email(f"{n}@example.com")) for n in range(10_001)]
    exc = refused(ingestion.ingest_audience_members, request=ingest_request(*many))
    assert violations(exc) == [("audience_members", "TOO_MANY_AUDIENCE_MEMBERS")]
    no_consent = ingest_request()
    no_consent._pb.ClearField("consent")
    exc = refused(ingestion.ingest_audience_members, request=no_consent)
    assert violations(exc) == [("consent", "REQUIRED_FIELD_MISSING")]
    assert fake.members(LIST_ID) == set()


def test_a_remove_takes_out_every_entry_sharing_any_identifier(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    ann = member(email("ann@example.com"), phone("+15550100"))
    bob = member(email("bob@example.com"))
    ann_at_work = member(email("ann@work.example"), phone("+15550100"))
    ingest(ingestion, ingest_request(ann, bob, ann_at_work))
    assert fake.list_size(LIST_ID) == 3
    assert member_key(ann._pb) in fake.members(LIST_ID)

    # A member known by another email but Ann's phone: Google removes the users
    # that phone matches, both of Ann's entries.
    ingestion.remove_audience_members(
        request=remove_request(member(email("other@example.com"), phone("+15550100"))),
        retry=None,
        timeout=10,
    )
    assert fake.members(LIST_ID) == {(f"e:{sha('bob@example.com')}",)}
    assert fake.list_size(LIST_ID) == 1


def test_validate_only_checks_but_holds_nothing_and_has_no_status(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    request_id = ingest(ingestion, ingest_request(validate_only=True))
    assert fake.members(LIST_ID) == set()
    exc = refused(
        ingestion.retrieve_request_status,
        request=dm.RetrieveRequestStatusRequest(request_id=request_id),
    )
    assert violations(exc) == [("request_id", "INVALID_REQUEST_ID")]


# -- quota


def test_the_per_minute_quota_answers_google_s_structured_error() -> None:
    clock = FakeClock()
    with FakeDataManager(per_minute=3, clock=clock) as fake:
        fake.add_account(ACCOUNT)
        fake.add_list(ACCOUNT, LIST_ID)
        with grpc.insecure_channel(fake.address) as channel:
            client = dm.IngestionServiceClient(
                transport=IngestionServiceGrpcTransport(channel=channel)
            )
            for _ in range(3):
                ingest(client, ingest_request())
            exc = refused(client.ingest_audience_members, request=ingest_request())
            assert isinstance(exc, core.ResourceExhausted)
            assert exc.grpc_status_code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert exc.reason == "RATE_LIMIT_EXCEEDED"
            assert exc.domain == "googleapis.com"
            assert exc.metadata["quota_limit"] == "IngestionMutateRequestsPerMinutePerProject"
            assert exc.metadata["quota_limit_value"] == "3"
            (violation,) = detail(exc, error_details_pb2.QuotaFailure).violations
            assert violation.quota_id == "IngestionMutateRequestsPerMinutePerProject"
            assert violation.quota_value == 3
            retry = detail(exc, error_details_pb2.RetryInfo).retry_delay
            assert retry.seconds + retry.nanos / 1e9 == pytest.approx(50.0)  # to the next minute
            # Reads have their own quota; the next minute opens the writes again.
            with pytest.raises(core.InvalidArgument):
                client.retrieve_request_status(
                    request=dm.RetrieveRequestStatusRequest(request_id="nope"), retry=None
                )
            clock.now += 50
            ingest(client, ingest_request())


def test_the_per_day_quota_says_so_and_lasts_until_midnight_pacific() -> None:
    clock = FakeClock()
    with FakeDataManager(per_minute=2, per_day=3, clock=clock) as fake:
        fake.add_account(ACCOUNT)
        fake.add_list(ACCOUNT, LIST_ID)
        with grpc.insecure_channel(fake.address) as channel:
            client = dm.IngestionServiceClient(
                transport=IngestionServiceGrpcTransport(channel=channel)
            )
            ingest(client, ingest_request())
            ingest(client, ingest_request())
            minute = refused(client.ingest_audience_members, request=ingest_request())
            assert minute.metadata["quota_limit"].endswith("PerMinutePerProject")
            # The refused request counted: the day's three are used up.
            clock.now += 60
            exc = refused(client.ingest_audience_members, request=ingest_request())
            assert isinstance(exc, core.ResourceExhausted)
            assert exc.metadata["quota_limit"] == "IngestionMutateRequestsPerDayPerProject"
            (violation,) = detail(exc, error_details_pb2.QuotaFailure).violations
            assert violation.quota_id == "IngestionMutateRequestsPerDayPerProject"
            assert not [d for d in exc.details if isinstance(d, error_details_pb2.RetryInfo)]
            clock.now = PACIFIC_MIDNIGHT + 86_400 - 1
            refused(client.ingest_audience_members, request=ingest_request())
            clock.now = PACIFIC_MIDNIGHT + 86_400
            ingest(client, ingest_request())


# -- request status


def test_request_status_moves_from_processing_to_partial_success_with_counts(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.processing_polls = 2
    fake.refuse_later = {f"e:{sha('later@example.com')}"}
    request_id = ingest(
        ingestion,
        ingest_request(
            member(email("a@example.com"), phone("+15550101")),
            member(email("later@example.com")),
            member(email("denied@example.com"), denied=True),
            member(email("b@example.com")),
        ),
    )
    ask = dm.RetrieveRequestStatusRequest(request_id=request_id)
    for _ in range(2):
        (status,) = ingestion.retrieve_request_status(
            request=ask, retry=None
        ).request_status_per_destination
        assert status.request_status == status.RequestStatus.PROCESSING
        assert not status.error_info.error_counts
    answer = ingestion.retrieve_request_status(request=ask, retry=None)
    (status,) = answer.request_status_per_destination
    assert status.request_status == status.RequestStatus.PARTIAL_SUCCESS
    assert status.destination.product_destination_id == LIST_ID
    counts = {c.reason.name: c.record_count for c in status.error_info.error_counts}
    assert counts == {
        "PROCESSING_ERROR_REASON_DENIED_CONSENT": 1,
        "PROCESSING_ERROR_REASON_INVALID_FORMAT": 1,
    }
    user_data = status.audience_members_ingestion_status.user_data_ingestion_status
    assert (user_data.record_count, user_data.user_identifier_count) == (4, 5)
    assert user_data.upload_match_rate_range == dm.MatchRateRange.MATCH_RATE_RANGE_41_TO_50
    assert fake.list_size(LIST_ID) == 2


def test_request_status_of_a_clean_upload_and_a_remove_is_success(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.processing_polls = 0
    request_id = ingest(ingestion, ingest_request(member(email("a@example.com"))))
    (status,) = ingestion.retrieve_request_status(
        request=dm.RetrieveRequestStatusRequest(request_id=request_id), retry=None
    ).request_status_per_destination
    assert status.request_status == status.RequestStatus.SUCCESS
    user_data = status.audience_members_ingestion_status.user_data_ingestion_status
    assert user_data.upload_match_rate_range == dm.MatchRateRange.MATCH_RATE_RANGE_91_TO_100
    removed = ingestion.remove_audience_members(
        request=remove_request(member(email("a@example.com"))), retry=None
    ).request_id
    (status,) = ingestion.retrieve_request_status(
        request=dm.RetrieveRequestStatusRequest(request_id=removed), retry=None
    ).request_status_per_destination
    assert status.request_status == status.RequestStatus.SUCCESS
    assert status.audience_members_removal_status.user_data_removal_status.record_count == 1


def test_an_unknown_request_id_is_invalid(ingestion: dm.IngestionServiceClient) -> None:
    exc = refused(
        ingestion.retrieve_request_status,
        request=dm.RetrieveRequestStatusRequest(request_id="0f0f"),
    )
    assert isinstance(exc, core.InvalidArgument)
    assert violations(exc) == [("request_id", "INVALID_REQUEST_ID")]


# -- user lists


def test_user_lists_are_created_read_and_listed_as_google_names_them(
    fake: FakeDataManager,
    ingestion: dm.IngestionServiceClient,
    user_lists: dm.UserListServiceClient,
) -> None:
    parent = f"accountTypes/GOOGLE_ADS/accounts/{ACCOUNT}"
    made = user_lists.create_user_list(
        parent=parent,
        user_list=dm.UserList(
            display_name="Big spenders",
            description="spend > 100",
            membership_duration=dt.timedelta(days=30),
            ingested_user_list_info=dm.IngestedUserListInfo(upload_key_types=["CONTACT_ID"]),
        ),
        retry=None,
    )
    list_id = str(made.id)
    assert made.name == user_lists.user_list_path("GOOGLE_ADS", ACCOUNT, list_id)
    assert made.membership_duration == dt.timedelta(days=30)
    # The new list is a destination at once.
    ingest(ingestion, ingest_request(target=destination(list_id)))
    got = user_lists.get_user_list(name=made.name, retry=None)
    assert got.display_name == "Big spenders"
    assert got.size_info.display_network_members_count == 1
    assert got.size_info.search_network_members_count == 1
    assert got.ingested_user_list_info.contact_id_info.match_rate_percentage == 100

    for n in range(4):
        fake.add_list(ACCOUNT, display_name=f"list {n}")
    pager = user_lists.list_user_lists(
        request=dm.ListUserListsRequest(parent=parent, page_size=2), retry=None
    )
    pages = list(pager.pages)
    assert [len(page.user_lists) for page in pages] == [2, 2, 2]
    names = [ul.display_name for page in pages for ul in page.user_lists]
    assert len(set(names)) == 6 and "Big spenders" in names
    only = user_lists.list_user_lists(
        request=dm.ListUserListsRequest(parent=parent, filter='display_name = "list 2"'),
        retry=None,
    )
    assert [ul.display_name for ul in only] == ["list 2"]


def test_user_list_creation_refuses_as_google_does(
    user_lists: dm.UserListServiceClient,
) -> None:
    parent = f"accountTypes/GOOGLE_ADS/accounts/{ACCOUNT}"
    taken = dm.UserList(display_name=f"Customer Match list {LIST_ID}")
    exc = refused(user_lists.create_user_list, parent=parent, user_list=taken)
    assert violations(exc) == [("user_list.display_name", "DISPLAY_NAME_ALREADY_USED")]
    too_long = dm.UserList(display_name="long", membership_duration=dt.timedelta(days=541))
    exc = refused(user_lists.create_user_list, parent=parent, user_list=too_long)
    assert violations(exc) == [("user_list.membership_duration", "MEMBERSHIP_DURATION_TOO_LONG")]
    exc = refused(user_lists.create_user_list, parent=parent, user_list=dm.UserList())
    assert violations(exc) == [("user_list.display_name", "REQUIRED_FIELD_MISSING")]
    exc = refused(
        user_lists.create_user_list,
        parent="accountTypes/GOOGLE_ADS/accounts/9999999999",
        user_list=dm.UserList(display_name="x"),
    )
    assert isinstance(exc, core.PermissionDenied)
    exc = refused(
        user_lists.create_user_list,
        parent=parent,
        user_list=dm.UserList(display_name="x"),
        metadata=[("login-account", "accountTypes/GOOGLE_ADS/accounts/4440004444")],
    )
    assert isinstance(exc, core.PermissionDenied)
    assert exc.metadata == {"field": "login-account", "account": "4440004444"}
    exc = refused(
        user_lists.get_user_list, name=user_lists.user_list_path("GOOGLE_ADS", ACCOUNT, "12")
    )
    assert isinstance(exc, core.NotFound) and exc.reason == "NOT_FOUND"


# -- credentials


def test_calls_need_a_token_from_the_fake_s_oauth_endpoint_and_revoked_ones_fail() -> None:
    clock = FakeClock()
    with FakeDataManager(require_auth=True, clock=clock) as fake:
        fake.add_account(ACCOUNT)
        fake.add_list(ACCOUNT, LIST_ID)
        with grpc.insecure_channel(fake.address) as channel:
            client = dm.IngestionServiceClient(
                transport=IngestionServiceGrpcTransport(channel=channel)
            )
            exc = refused(client.ingest_audience_members, request=ingest_request())
            assert isinstance(exc, core.Unauthenticated)
            assert exc.grpc_status_code == grpc.StatusCode.UNAUTHENTICATED
            assert exc.reason == "CREDENTIALS_MISSING" and exc.domain == "googleapis.com"

            client_id, client_secret, refresh_token = fake.oauth_client()
            creds = Credentials(
                token=None,
                refresh_token=refresh_token,
                client_id=client_id,
                client_secret=client_secret,
                token_uri=fake.token_uri,
            )
            creds.refresh(auth_requests.Request())
            bearer = [("authorization", f"Bearer {creds.token}")]
            client.ingest_audience_members(request=ingest_request(), metadata=bearer, retry=None)

            clock.now += 3600
            exc = refused(client.ingest_audience_members, request=ingest_request(), metadata=bearer)
            assert exc.reason == "ACCESS_TOKEN_EXPIRED"
            creds.refresh(auth_requests.Request())
            bearer = [("authorization", f"Bearer {creds.token}")]
            client.ingest_audience_members(request=ingest_request(), metadata=bearer, retry=None)

            fake.revoke(refresh_token)
            with pytest.raises(auth_errors.RefreshError) as caught:
                creds.refresh(auth_requests.Request())
            assert caught.value.retryable is False
            assert caught.value.args[1] == {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
            # Revoking the refresh token ended the access tokens it gave.
            exc = refused(client.ingest_audience_members, request=ingest_request(), metadata=bearer)
            assert isinstance(exc, core.Unauthenticated)


def test_through_grpc_call_credentials_a_revoked_token_looks_temporary() -> None:
    """What segflow saw in production: the plugin's refresh failure is UNAVAILABLE."""
    with FakeDataManager(require_auth=True) as fake:
        fake.add_account(ACCOUNT)
        fake.add_list(ACCOUNT, LIST_ID)
        client_id, client_secret, refresh_token = fake.oauth_client()
        creds = Credentials(
            token=None,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            token_uri=fake.token_uri,
        )
        plugin = auth_grpc.AuthMetadataPlugin(creds, auth_requests.Request())
        secure = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(), grpc.metadata_call_credentials(plugin)
        )
        with grpc.secure_channel(fake.address, secure) as channel:
            client = dm.IngestionServiceClient(
                transport=IngestionServiceGrpcTransport(channel=channel)
            )
            ingest(client, ingest_request())
            assert fake.list_size(LIST_ID) == 1
            fake.revoke(refresh_token)
            creds.token = None
            exc = refused(client.ingest_audience_members, request=ingest_request())
            assert isinstance(exc, core.ServiceUnavailable)
            assert "Getting metadata from plugin failed" in exc.message
            assert "invalid_grant" in exc.message


# -- scripted failures


def test_scripted_failures_carry_the_details_they_are_given(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.fail_next(
        Failure(
            grpc.StatusCode.INVALID_ARGUMENT,
            "There was a problem with the request.",
            reason="INVALID_ARGUMENT",
            violations=[("destinations.destinations[0]", "INVALID_DESTINATION")],
        ),
        Failure(quota="day"),
    )
    exc = refused(ingestion.ingest_audience_members, request=ingest_request())
    assert exc.reason == "INVALID_ARGUMENT"
    assert violations(exc) == [("destinations.destinations[0]", "INVALID_DESTINATION")]
    exc = refused(ingestion.ingest_audience_members, request=ingest_request())
    assert exc.metadata["quota_limit"] == "IngestionMutateRequestsPerDayPerProject"
    assert [r.outcome for r in fake.received] == ["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"]
    assert fake.members(LIST_ID) == set()


def test_chaos_quota_failures_look_like_google_s(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient
) -> None:
    fake.chaos(3, rate=1.0, sleep=0.0)
    seen = set()
    for _ in range(30):
        try:
            ingest(ingestion, ingest_request())
        except core.ResourceExhausted as exc:
            assert exc.reason == "RATE_LIMIT_EXCEEDED"
            assert exc.metadata["quota_limit"] == "IngestionMutateRequestsPerMinutePerProject"
            assert detail(exc, error_details_pb2.RetryInfo).retry_delay.ToTimedelta()
            seen.add("quota")
        except core.ServiceUnavailable:
            seen.add("unavailable")
        else:
            seen.add("slow")
    assert seen == {"quota", "unavailable", "slow"}


# -- the command


def test_the_command_serves_the_lists_it_is_given_and_reports_their_sizes() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "segflow.activation.fake",
         "--account", f"{ACCOUNT}:{MANAGER}", "--list", f"{ACCOUNT}:{LIST_ID}",
         "--list", "42:43", "--per-minute", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().rsplit(" ", 1)[-1].strip()
        setup = json.loads(proc.stdout.readline())
        assert setup == {"accounts": ["1234567890", "42"], "lists": {"7001": ACCOUNT, "43": "42"}}
        with grpc.insecure_channel(address) as channel:
            client = dm.IngestionServiceClient(
                transport=IngestionServiceGrpcTransport(channel=channel)
            )
            ingest(client, ingest_request(target=destination(login=MANAGER)))
            ingest(
                client,
                ingest_request(member(email("x@example.com")), target=destination("43", "42")),
            )
            # The third request of the minute is over --per-minute.
            with pytest.raises(core.ResourceExhausted):
                client.ingest_audience_members(request=ingest_request(), retry=None)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert json.loads(out.strip().splitlines()[-1]) == {
        "requests": 3,
        "lists": {LIST_ID: 1, "43": 1},
    }


def test_the_command_without_flags_holds_one_account_and_one_list() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "segflow.activation.fake"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("fake Data Manager API listening on 127.0.0.1:")
        assert json.loads(proc.stdout.readline()) == {
            "accounts": [ACCOUNT],
            "lists": {LIST_ID: ACCOUNT},
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert json.loads(out.strip().splitlines()[-1]) == {"requests": 0, "lists": {LIST_ID: 0}}


@pytest.mark.parametrize(
    "identifier",
    [
        # Two hashes in one value, a ":" inside a name hash, two regions in one.
        dm.UserIdentifier(email_address=sha("a@b.c") + "\n" + sha("d@e.f")),
        dm.UserIdentifier(
            address=dm.AddressInfo(
                given_name=sha("ann"),
                family_name=sha("lee") + ":US",
                region_code="US",
                postal_code="10001",
            )
        ),
        dm.UserIdentifier(
            address=dm.AddressInfo(
                given_name=sha("ann"), family_name=sha("lee"), region_code="US\nGB", postal_code="1"
            )
        ),
    ],
)
def test_values_that_only_look_well_formed_together_are_refused(
    fake: FakeDataManager, ingestion: dm.IngestionServiceClient, identifier: dm.UserIdentifier
) -> None:
    good = member(email("good@example.com"))
    exc = refused(
        ingestion.ingest_audience_members, request=ingest_request(good, member(identifier))
    )
    assert violations(exc) and all("[1]" in where for where, _ in violations(exc))
    assert fake.members(LIST_ID) == set()


def test_a_remove_takes_every_entry_sharing_a_code_before_and_after_its_first_remove() -> None:
    held = CustomerList("1", "2", "list")
    held.add(("e:a", "p:1"))
    held.add(("e:b", "p:1"))
    held.add(("e:c",))
    held.add(("e:c",))  # a member added twice is held once
    held.remove_matching(("p:1",))
    assert held.entries == {("e:c",)}
    # Entries added once removes have begun are matched as well.
    held.add(("e:d", "p:2"))
    held.remove_matching(("p:2", "e:zz"))
    assert held.entries == {("e:c",)}
    held.remove_matching(("e:c",))
    assert held.entries == set()


_HASH = "ab" * 32


def _member(email: str = _HASH, phone: str = _HASH, **address: str) -> dict[str, Any]:
    parts = {"given_name": _HASH, "family_name": _HASH, "region_code": "US"}
    parts |= {"postal_code": "94043"} | address
    identifiers = [{"email_address": email}, {"phone_number": phone}, {"address": parts}]
    return {"user_data": {"user_identifiers": identifiers}}


@pytest.mark.parametrize(
    "member",
    [
        _member(),
        _member(email=_HASH.upper()),
        _member(postal_code="SW1A 1AA"),
        _member(email=_HASH[:-2]),
        _member(phone="zz" * 32),
        _member(email=""),
        _member(email=f"{_HASH}\n{_HASH}"),
        _member(email=f"{_HASH}\ne:{_HASH}"),
        _member(given_name=_HASH + "0"),
        _member(family_name=""),
        _member(region_code="us"),
        _member(region_code="USA"),
        _member(region_code="U:"),
        _member(postal_code=""),
        _member(postal_code="9:4"),
        _member(postal_code="94\n043"),
        {"user_data": {"user_identifiers": [{}, {"email_address": _HASH}]}},
        {"user_data": {"user_identifiers": []}},
        {"user_data": {"user_identifiers": [{"email_address": _HASH}] * 11}},
    ],
)
def test_the_checks_over_a_whole_request_find_what_the_checks_a_member_find(
    member: dict[str, Any],
) -> None:
    request = dm.IngestAudienceMembersRequest(
        encoding=dm.Encoding.HEX, audience_members=[_member(), member]
    )._pb
    # Given the keys, a request found well formed as a whole skips the member checks.
    assert member_problems(request, [], member_keys(request)) == member_problems(request, [])
