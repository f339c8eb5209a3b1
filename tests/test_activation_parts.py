"""The small pieces of activation: retry policy, failure classes, mapping, codes."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as core
from hypothesis import given
from hypothesis import strategies as st

from segflow import segments
from segflow.activation import identifiers as ids
from segflow.activation import mapping, senders
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


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (core.ServiceUnavailable("down"), senders.TransientError),
        (core.DeadlineExceeded("slow"), senders.TransientError),
        (core.ResourceExhausted("quota"), senders.TransientError),
        (core.InternalServerError("oops"), senders.TransientError),
        (core.TooManyRequests("http 429"), senders.TransientError),
        (core.InvalidArgument("bad member"), senders.RequestRejected),
        (core.BadRequest("http 400"), senders.RequestRejected),
        (core.PermissionDenied("no"), senders.LinkBroken),
        (core.Unauthenticated("who"), senders.LinkBroken),
        (core.Forbidden("http 403"), senders.LinkBroken),
        (core.NotFound("no list"), senders.LinkBroken),
        (RuntimeError("transport bug"), senders.TransientError),
    ],
)
def test_failures_are_classified_for_the_worker(error: Exception, kind: type) -> None:
    assert isinstance(senders.classify(error), kind)


def test_classified_messages_never_echo_credentials() -> None:
    secret = {"type": "oauth", "client_secret": "s3cr3t-value-123", "refresh_token": "1//tok-abc"}
    error = core.PermissionDenied("token 1//tok-abc rejected for s3cr3t-value-123")
    message = str(senders.classify(error, secret))
    assert "s3cr3t" not in message and "tok-abc" not in message
    assert "[redacted]" in message


@given(
    st.builds(
        ids.Identifiers,
        email_hashes=st.lists(
            st.text("0123456789abcdef", min_size=64, max_size=64), max_size=4, unique=True
        ).map(tuple),
        phone_hashes=st.lists(
            st.text("0123456789abcdef", min_size=64, max_size=64), max_size=4, unique=True
        ).map(tuple),
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
    assert (detected.email, detected.phone, detected.postal_code) == (("email",), ("phone",), "zip")
    assert detected.consent_ad_user_data is None

    changed = mapping.set_mapping(
        db,
        "customers",
        {"phone": "", "default_region": "gb", "consent_ad_user_data": "IS_SUBSCRIBER"},
        NOW,
    )
    assert changed.phone == () and changed.default_region == "GB"
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
        {"phone": "020 7946 0018"}, ids.Mapping(phone=("phone",), default_region=m.default_region)
    )
    assert found.phone_hashes == (ids.sha256_hex("+442079460018"),)
