"""A local stand-in for Google's Data Manager API, as strict as Google: tests, benchmarks, trials.

:class:`FakeDataManager` is a real gRPC server on 127.0.0.1 that registers
``google.ads.datamanager.v1.IngestionService`` (``IngestAudienceMembers``,
``RemoveAudienceMembers``, ``RetrieveRequestStatus``) and
``google.ads.datamanager.v1.UserListService`` (``CreateUserList``,
``GetUserList``, ``ListUserLists``) with the client library's own message
classes, so the real ``google-ads-datamanager`` client talks to it unchanged
(point ``SEGFLOW_DATAMANAGER_ENDPOINT`` at :attr:`FakeDataManager.address`).

What it checks, in order, and how it answers (details as google-api-core
decodes them: ``ErrorInfo``, ``BadRequest``, ``QuotaFailure``, ``RetryInfo``,
``RequestInfo``, ``Help``):

* **credentials** (``require_auth=True``): every call carries
  ``authorization: Bearer <token>`` issued by the fake's own OAuth token
  endpoint (:attr:`~FakeDataManager.token_uri`), unexpired and not revoked,
  else UNAUTHENTICATED (ErrorInfo reason ``CREDENTIALS_MISSING`` /
  ``ACCESS_TOKEN_EXPIRED``, domain ``googleapis.com``). The endpoint answers
  a revoked or unknown refresh token with HTTP 400 ``invalid_grant``.
* **quota**: ``per_minute`` requests a clock minute and ``per_day`` a
  Pacific-time day, per group (ingestion or management service, read or
  mutate), as Google's limits guide describes; over a limit,
  RESOURCE_EXHAUSTED with ErrorInfo reason ``RATE_LIMIT_EXCEEDED`` whose
  ``metadata["quota_limit"]`` is Google's limit name
  (``IngestionMutateRequestsPerMinutePerProject``, ``...PerDayPerProject``),
  a QuotaFailure violation naming the same, and for the minute limit a
  RetryInfo until the next minute.
* **scripted failures**: :meth:`~FakeDataManager.fail_next` and the seeded
  :meth:`~FakeDataManager.chaos` (UNAVAILABLE, the structured quota error,
  answers slower than the caller's timeout).
* **destinations**: 1 to 10; each an existing account
  (:meth:`~FakeDataManager.add_account`) whose login account, when given, is
  the account itself or one of its managers, else PERMISSION_DENIED (ErrorInfo
  reason ``PERMISSION_DENIED``, a violation naming
  ``destinations.destinations[i].operating_account`` or ``.login_account``);
  and an existing list of that account (:meth:`~FakeDataManager.add_list`),
  else INVALID_ARGUMENT with violation
  ``destinations.destinations[i].product_destination_id`` /
  ``INVALID_USER_LIST_ID``.
* **the request as a whole**: encoding set; on ingest the Customer Match terms
  accepted (``TERMS_AND_CONDITIONS_NOT_SIGNED``) and consent present; 1 to
  10,000 members (``TOO_MANY_AUDIENCE_MEMBERS``). Reported alone.
* **every member**: 1 to 10 identifiers; hashes that are SHA-256 in the
  request's encoding (``INVALID_HEX_ENCODING``, ``INVALID_SHA256_FORMAT``);
  addresses with a two-letter region and a postal code; identifiers in
  :attr:`~FakeDataManager.refuse` (``INVALID_AUDIENCE_MEMBER``). All bad
  members are named, each violation's field starting
  ``audience_members.audience_members[i]`` as in Google's samples.

INVALID_ARGUMENT answers carry the generic ErrorInfo reason
``INVALID_ARGUMENT`` (domain ``datamanager.googleapis.com``) and the specific
``ErrorReason`` in each field violation, as Google's samples do.

What it holds: each list's entries (one per ingested member, its sorted
identifier codes, see :func:`member_key`); a remove takes out every entry
sharing any identifier with a removed member, as Google's matching does.
An accepted ingest's answer carries a ``FieldWarning`` (reason from
:attr:`~FakeDataManager.warn`, field ``audience_members.audience_members[i].user_data``)
for each member holding an identifier the fake was told to warn about; the
member is held all the same. ``validate_only`` requests are checked but change nothing and their ids
cannot be looked up. Members whose ``ad_user_data`` consent is denied, or
that carry an identifier in :attr:`~FakeDataManager.refuse_later`, are
accepted but not held, and counted as failed in the request status.

``RetrieveRequestStatus`` answers PROCESSING for the first
``processing_polls`` asks, then SUCCESS, PARTIAL_SUCCESS or FAILED with error
counts by ``ProcessingErrorReason`` and, for an ingest, the upload's
match-rate range (the share of its members held); an unknown id is
INVALID_ARGUMENT with violation ``request_id`` / ``INVALID_REQUEST_ID``.
User lists are created (display name required and unique per account,
membership at most 540 whole days), read with ``size_info`` from the entries
held, and listed per account with paging.

``python -m segflow.activation.fake`` serves one for local trials.
"""

from segflow.activation.fake.checks import Member, member_key
from segflow.activation.fake.server import Failure, FakeDataManager, Received

__all__ = ["Failure", "FakeDataManager", "Member", "Received", "member_key"]
