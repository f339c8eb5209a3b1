"""A local stand-in for Meta's Graph API (Custom Audiences), as strict as Meta: tests, trials.

:class:`FakeMeta` is a real HTTP server on 127.0.0.1 (loopback only; it
refuses any other host) that answers the Graph API calls segflow's Meta
sender makes through the real ``facebook-business`` SDK. Point the SDK at it
with ``session = FacebookSession(access_token=T); session.GRAPH = fake.url``
and ``FacebookAdsApi(session, api_version="v26.0")``.

Endpoints (only under ``/v26.0/``):

* ``GET /v26.0/act_<digits>?fields=...``: the ad account's ``id``
  (``act_<digits>``), ``account_id``, ``name``, ``account_status``,
  ``business`` ``{id, name}`` when it has one, and ``tos_accepted``
  (``{"custom_audience_tos": 1}`` once the Custom Audience terms are
  accepted). Only the requested fields (``id`` always); an unknown field is
  code 100 "Tried accessing nonexisting field".
* ``POST /v26.0/act_<digits>/customaudiences`` (``name``, ``subtype``,
  ``description``, ``customer_file_source``): ``{"id": "<digits>"}``.
* ``GET /v26.0/<audience_id>?fields=...``: ``id``, ``name``,
  ``description``, ``account_id``, ``subtype``, ``customer_file_source``,
  ``approximate_count_lower_bound`` / ``_upper_bound`` (the entries held
  -/+ 10 %), ``operation_status`` ``{code: 200, description: "Normal"}``,
  ``data_source`` (``FILE_IMPORTED`` / ``HASHES``), ``time_updated``.
* ``POST`` and ``DELETE /v26.0/<audience_id>/users`` (``payload``, optional
  ``session``): ``{"audience_id", "session_id", "num_received",
  "num_invalid_entries", "invalid_entry_samples"}``. Parameters may come in
  the query string, a form-encoded body or a JSON object body (objects among
  its values as their JSON), for DELETE as well; a POST with ``method=delete``
  is taken as a DELETE.

What it checks, in order, and how it answers (bodies ``{"error": {message,
type, code, error_subcode?, is_transient, error_user_title?, error_user_msg?,
fbtrace_id}}`` that the SDK parses into ``FacebookRequestError``):

* **the request line** (method, target, HTTP version) at most 16,384 bytes;
  a longer one is read and the connection closed with no answer (the SDK
  sees ``ConnectionError``/``RemoteDisconnected``, as at Meta with a large
  ``delete_users`` in the query string).
* **the version**: anything but ``v26.0`` is code 2635 "You are calling a
  deprecated version of the Ads API".
* **the token** (``access_token``): none, code 104; unknown, code 190
  "Invalid OAuth access token - Cannot parse access token"; revoked
  (:meth:`~FakeMeta.revoke`), 190 subcode 460; expired, 190 subcode 463.
* **scripted failures** (:meth:`~FakeMeta.fail_next`,
  :meth:`~FakeMeta.chaos`): codes 4, 17, 613, 80003 (with the usage header),
  code 2 with HTTP 500 and ``is_transient``, HTTP 503 with an HTML page, a
  connection closed unanswered (nothing applied), an answer after a delay
  (applied), and a change applied whose answer is lost.
* **the object**: an unknown account or audience, or one of an account the
  token was not given, is code 100 subcode 33 "Unsupported <method> request.
  Object with ID '...' does not exist, cannot be loaded due to missing
  permissions, or does not support this operation", HTTP 400 (so is an
  unsupported method or edge on a known object).
* **permissions**: reading needs ``ads_read`` or ``ads_management``, writing
  (creating an audience, ``/users``) ``ads_management``; else code 200.
* **the call budget**: custom-audience calls (create, read, ``/users``)
  count against their ad account, :attr:`~FakeMeta.calls_per_hour` in a
  rolling hour; over it, code 80003 subcode 2446079 "There have been too many
  calls to this ad-account". Every counted call's answer carries
  ``X-Business-Use-Case-Usage``: ``{"<account digits>": [{"type":
  "custom_audience", "call_count", "total_cputime", "total_time" (percent),
  "estimated_time_to_regain_access" (minutes), "ads_api_access_tier"}]}``.
* **creating an audience**: the account's Custom Audience terms accepted
  (else code 2663 "Terms of service has not been accepted"), ``name`` given
  (code 100 "The parameter name is required"), ``subtype`` ``CUSTOM``, and
  ``customer_file_source`` one of ``USER_PROVIDED_ONLY``,
  ``PARTNER_PROVIDED_ONLY``, ``BOTH_USER_AND_PARTNER_PROVIDED`` (code 100).
* **/users**: the terms accepted (2663); ``payload`` given and JSON; a
  ``schema`` of known keys (EMAIL, PHONE, FN, LN, ZIP, CT, ST, COUNTRY,
  DOBY, DOBM, DOBD, GEN, FI, MADID, EXTERN_ID; ``EMAIL_SHA256`` and
  ``PHONE_SHA256`` as single keys), EMAIL and PHONE at most 3 times, the
  others once; 1 to 10,000 rows, each the schema's length (a bare value per
  row for a single-key schema); ``data_processing_options`` ``[]`` or
  ``["LDU"]``, LDU with country 0 and state 0 (geolocate) or country 1 and
  state 0 or a state code from 1000 (California); ``session`` with positive
  ``session_id`` and ``batch_seq``, a boolean ``last_batch_flag``, and no
  batch after the last. All of these are code 100 "Invalid parameter" with
  an ``error_user_title`` / ``error_user_msg`` naming the problem.
* **every row**: each value of a hashed key (all but MADID and EXTERN_ID)
  is ``""`` or 64 lower-case hex digits; no value is in
  :attr:`~FakeMeta.refuse`; not every value empty. A bad row is not an
  error: it is counted in ``num_invalid_entries`` and sampled in
  ``invalid_entry_samples`` (up to 10, the row's first value -> the key at
  fault), and never held, so the fake never holds an unhashed value.

What it holds: each audience's entries, one per distinct row added (its
``(key, value)`` pairs without empty values). A remove row takes out every
entry sharing any EMAIL, PHONE, EXTERN_ID or MADID value with it, and every
entry with its FN and LN and every other key it gives, as Meta's matching
would. Tests read them with :meth:`~FakeMeta.entries` and
:meth:`~FakeMeta.hashes`; :attr:`~FakeMeta.received` records every request
(method, path, parameters, body size, request-line length, status) and
:meth:`~FakeMeta.saw_raw` says whether any raw identifier reached the fake.

``python -m segflow.activation.fake_meta`` serves one for local trials.
"""

from segflow.activation.fake_meta.server import FAILURE_KINDS, MAX_REQUEST_LINE, FakeMeta, Received
from segflow.activation.fake_meta.state import Entry

__all__ = ["FAILURE_KINDS", "MAX_REQUEST_LINE", "Entry", "FakeMeta", "Received"]
