"""The small pieces of activation: retry policy, failure classes, mapping, codes."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.api_core import exceptions as core
from google.auth import exceptions as auth
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from segflow import segments
from segflow.activation import identifiers as ids
from segflow.activation import mapping, transport
from segflow.activation.google.errors import classify
from segflow.activation.retry import RetryPolicy
from segflow.db import Database
from segflow.errors import InvalidInput, NotFound
from tests.sync_helpers import NOW, customers, import_rows


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0, max_value=0.999999))
def test_backoff_stays_between_half_and_all_of_a_capped_exponential(
    attempt: int, rand: float
) -> None:
    policy = RetryPolicy(base=2, factor=2, cap=600)
    ceiling = min(600, 2 * 2 ** (attempt - 1))
    assert ceiling / 2 <= policy.delay(attempt, rand) <= ceiling


def test_backoff_grows_then_caps_and_honours_the_server() -> None:
    policy = RetryPolicy(base=1, factor=2, cap=10)
    assert [policy.delay(n, 0.999) for n in (1, 2, 3, 4, 5, 9)] == pytest.approx(
        [1, 2, 4, 8, 10, 10], rel=0.01
    )
    assert policy.delay(1, 0.0) == 0.5
    assert policy.delay(1, 0.0, server_delay=30) == 30
    with pytest.raises(ValueError):
        policy.delay(0, 0.5)
    with pytest.raises(ValueError):
        policy.delay(1, 1.0)


def _bad_request(*violations: tuple[str, str, str], reason: str = "INVALID_ARGUMENT") -> Any:
    """INVALID_ARGUMENT as Google's samples give it: generic ErrorInfo, specific violations."""
    return core.InvalidArgument(
        "There was a problem with the request.",
        details=[
            error_details_pb2.ErrorInfo(reason=reason, domain="datamanager.googleapis.com"),
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, reason=r, description=d)
                    for f, r, d in violations
                ]
            ),
        ],
    )


def _quota(limit: str, retry: float | None = None) -> Any:
    details: list[Any] = [
        error_details_pb2.ErrorInfo(
            reason="RATE_LIMIT_EXCEEDED",
            domain="googleapis.com",
            metadata={"quota_limit": limit, "quota_limit_value": "300"},
        ),
        error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject="project_number:1", description=f"Quota exceeded for {limit}"
                )
            ]
        ),
    ]
    if retry is not None:
        details.append(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry)))
        )
    return core.ResourceExhausted("Quota exceeded.", details=details)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (core.ServiceUnavailable("down"), transport.TransientError),
        (core.DeadlineExceeded("slow"), transport.TransientError),
        (core.ResourceExhausted("quota"), transport.QuotaExhausted),
        (core.InternalServerError("oops"), transport.TransientError),
        (core.TooManyRequests("http 429"), transport.QuotaExhausted),
        # Naming nothing: the only refusal that may be split.
        (core.InvalidArgument("bad member"), transport.RequestRejected),
        (core.BadRequest("http 400"), transport.RequestRejected),
        (
            _bad_request(("audience_members", "TOO_MANY_AUDIENCE_MEMBERS", "at most 10000")),
            transport.RequestRejected,
        ),
        (
            _bad_request(
                ("audience_members.audience_members[7].user_data", "INVALID_SHA256_FORMAT", "x")
            ),
            transport.MembersRejected,
        ),
        (
            _bad_request(
                (
                    "destinations.destinations[0].product_destination_id",
                    "INVALID_USER_LIST_ID",
                    "no such list",
                )
            ),
            transport.LinkBroken,
        ),
        (
            _bad_request(("terms_of_service", "TERMS_AND_CONDITIONS_NOT_SIGNED", "")),
            transport.LinkBroken,
        ),
        (_bad_request(("consent", "REQUIRED_FIELD_MISSING", "")), transport.LinkBroken),
        (_bad_request(reason="OPERATING_ACCOUNT_LOGIN_ACCOUNT_MISMATCH"), transport.LinkBroken),
        (core.PermissionDenied("no"), transport.LinkBroken),
        (core.Unauthenticated("who"), transport.LinkBroken),
        (core.Forbidden("http 403"), transport.LinkBroken),
        (core.NotFound("no list"), transport.LinkBroken),
        (
            auth.RefreshError("invalid_grant: Token has been expired or revoked."),
            transport.LinkBroken,
        ),
        (auth.RefreshError("temporarily_unavailable", retryable=True), transport.TransientError),
        (auth.TransportError("connection refused"), transport.TransientError),
        # A refresh that failed inside the call, as gRPC's token plugin reports it.
        (
            core.ServiceUnavailable(
                "Getting metadata from plugin failed with error: ('invalid_grant: Token has "
                "been expired or revoked.', {'error': 'invalid_grant'})"
            ),
            transport.LinkBroken,
        ),
        (RuntimeError("transport bug"), transport.TransientError),
    ],
)
def test_failures_are_classified_for_the_worker(error: Exception, kind: type) -> None:
    assert type(classify(error)) is kind


def test_every_member_google_names_is_refused_with_its_own_reason() -> None:
    error = _bad_request(
        ("audience_members.audience_members[2].user_data.user_identifiers[0]",
         "INVALID_SHA256_FORMAT", "Email is not a SHA-256 hash."),
        ("audience_members[9]", "INVALID_AUDIENCE_MEMBER", "refused"),
        ("audience_members.audience_members[2].user_data.user_identifiers[1]",
         "INVALID_HEX_ENCODING", "Phone is not hex encoded."),
    )  # fmt: skip
    kind = classify(error)
    assert isinstance(kind, transport.MembersRejected)
    assert kind.reasons == {
        2: "INVALID_SHA256_FORMAT (user_data.user_identifiers[0]): Email is not a SHA-256 hash.; "
        "INVALID_HEX_ENCODING (user_data.user_identifiers[1]): Phone is not hex encoded.",
        9: "INVALID_AUDIENCE_MEMBER: refused",
    }


def test_an_error_about_the_list_names_googles_reason_and_field() -> None:
    error = _bad_request(
        ("destinations.destinations[0].product_destination_id", "INVALID_USER_LIST_ID",
         "no user list 99 in account 1"),
        ("audience_members.audience_members[0]", "INVALID_AUDIENCE_MEMBER", ""),
    )  # fmt: skip
    assert str(classify(error)) == (
        "Google refused the list: INVALID_USER_LIST_ID (destinations[0].product_destination_id): "
        "no user list 99 in account 1"
    )
    login = core.PermissionDenied(
        "The caller does not have permission",
        details=[
            error_details_pb2.ErrorInfo(reason="PERMISSION_DENIED"),
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="destinations.destinations[0].login_account",
                        reason="PERMISSION_DENIED",
                        description="account 5 is not 1 nor one of its managers",
                    )
                ]
            ),
        ],
    )
    assert str(classify(login)).startswith("Google refused the login account: PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("error", "window", "retry_after"),
    [
        (_quota("IngestionMutateRequestsPerMinutePerProject", retry=42), "minute", 42.0),
        (_quota("IngestionMutateRequestsPerDayPerProject"), "day", None),
        # Nothing structured: the message says which.
        (core.ResourceExhausted("Quota exceeded: requests per day"), "day", None),
        (core.ResourceExhausted("Too many requests"), "minute", None),
    ],
)
def test_a_quota_error_says_which_window_ran_out(
    error: Exception, window: str, retry_after: float | None
) -> None:
    kind = classify(error)
    assert isinstance(kind, transport.QuotaExhausted)
    assert (kind.window, kind.retry_after) == (window, retry_after)
    assert str(kind).startswith(f"Google's per-{window} request quota is used up")


def test_details_are_read_as_google_api_core_decodes_them_from_a_grpc_status() -> None:
    status = status_pb2.Status(code=3, message="There was a problem with the request.")
    for detail in (
        error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="datamanager.googleapis.com"),
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="audience_members.audience_members[4]",
                    reason="INVALID_SHA256_FORMAT",
                    description="not a hash",
                )
            ]
        ),
    ):
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)

    class Call(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        """What a failed unary call raises, with the status trailer."""

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.INVALID_ARGUMENT

        def details(self) -> str:
            return status.message

        def trailing_metadata(self) -> Any:
            return (("grpc-status-details-bin", status.SerializeToString()),)

        def initial_metadata(self) -> Any:
            return ()

        def is_active(self) -> bool:
            return False

        def time_remaining(self) -> None:
            return None

        def cancel(self) -> bool:
            return False

        def add_callback(self, callback: Any) -> bool:
            return False

    error = core.from_grpc_error(Call())
    assert error.reason == "INVALID_ARGUMENT"  # generic: the violation says more
    kind = classify(error)
    assert isinstance(kind, transport.MembersRejected)
    assert kind.reasons == {4: "INVALID_SHA256_FORMAT: not a hash"}


def test_classified_messages_never_echo_credentials() -> None:
    secret = {"type": "oauth", "client_secret": "s3cr3t-value-123", "refresh_token": "1//tok-abc"}
    error = core.PermissionDenied("token 1//tok-abc rejected for s3cr3t-value-123")
    message = str(classify(error, secret))
    assert "s3cr3t" not in message and "tok-abc" not in message
    assert "[redacted]" in message


@given(
    st.builds(
        ids.Identifiers,
        email_sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
        phone_sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
        address=st.none()
        | st.builds(
            ids.Address,
            st.text("0123456789abcdef", min_size=64, max_size=64),
            st.text("0123456789abcdef", min_size=64, max_size=64),
            st.sampled_from(["US", "GB", "DE"]),
            st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9 -]{0,8}[A-Za-z0-9])?", fullmatch=True),
        ),
    )
)
def test_identifier_codes_round_trip(identifiers: ids.Identifiers) -> None:
    assert ids.decode(ids.encode(identifiers)) == identifiers


def test_the_mapping_is_detected_then_changed_and_checked(db: Database) -> None:
    import_rows(db, customers(10))
    detected, chosen = mapping.show_mapping(db, "customers")
    assert not chosen
    assert (detected.email, detected.phone, detected.postal_code) == ("email", "phone", "zip")
    assert detected.consent_ad_user_data is None

    changed = mapping.set_mapping(
        db,
        "customers",
        {"phone": "", "default_region": "gb", "consent_ad_user_data": "IS_SUBSCRIBER"},
        NOW,
    )
    assert changed.phone is None and changed.default_region == "GB"
    assert changed.consent_ad_user_data == "is_subscriber"
    stored, chosen = mapping.show_mapping(db, "customers")
    assert chosen and stored == changed

    with pytest.raises(InvalidInput, match=r"no column 'mail' \(columns: id, email, phone"):
        mapping.set_mapping(db, "customers", {"email": "mail"}, NOW)
    with pytest.raises(InvalidInput, match="ISO 3166-1 alpha-2"):
        mapping.set_mapping(db, "customers", {"default_region": "Narnia"}, NOW)
    with pytest.raises(NotFound):
        mapping.show_mapping(db, "nope")
    assert mapping.show_mapping(db, "customers")[0] == changed  # failed changes kept nothing


def test_the_phone_region_decides_numbers_without_a_country_code(db: Database) -> None:
    import_rows(db, customers(1))
    segments.create_segment(
        db,
        name="all",
        dataset="customers",
        rules_json={"conditions": [{"field": "id", "operator": "greater_than", "value": 0}]},
        now=NOW,
    )
    m = mapping.set_mapping(db, "customers", {"default_region": "GB"}, NOW)
    found = ids.identifiers_for(
        {"phone": "020 7946 0018"}, ids.Mapping(phone="phone", default_region=m.default_region)
    )
    assert found.phone_sha256 == ids.sha256_hex("+442079460018")
