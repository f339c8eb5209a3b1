"""A local stand-in for TikTok's Business API custom audiences, as strict as TikTok.

:class:`FakeTikTok` is a real HTTP server on 127.0.0.1 (stdlib
``ThreadingHTTPServer`` in a thread) serving the five customer-file audience
calls of TikTok Business API v1.3 under ``/open_api/v1.3``:
``dmp/custom_audience/file/upload/``, ``create/``, ``update/``, ``get/``
and ``list/``. Point a :class:`~segflow.activation.tiktok.client.TikTokClient`
at :attr:`FakeTikTok.base_url`. Every answer is TikTok's envelope, HTTP 200
``{"code", "message", "request_id", "data"}``, with TikTok's codes
(``NumericErrorCodes`` of ``tiktok-business-api-sdk``).

What it checks, in order, and how it answers:

* **scripted failures** first (:meth:`~FakeTikTok.fail_next`, the seeded
  :meth:`~FakeTikTok.chaos`): ``token`` (40105), ``expired_token`` (40102),
  ``rate_limit`` (40100), ``system`` (code 50000), ``500`` (HTTP 500, not
  JSON), ``drop`` (connection closed, nothing done), ``slow`` (done after
  :attr:`~FakeTikTok.slow_seconds`, answered late), ``lost`` (done, then the
  connection closes with no answer); ``fail_next(kind, path="/update/")``
  counts only requests to that call. Chaos picks among ``500``, ``system``,
  ``rate_limit``, ``drop`` and ``lost``.
* **route**: an unknown path answers HTTP 404 with code 40400.
* **token** (``Access-Token`` header): missing 40104; expired
  (:meth:`~FakeTikTok.expire`) 40102; unknown or revoked
  (:meth:`~FakeTikTok.revoke`) 40105.
* **rate limit**: more than :attr:`~FakeTikTok.qps` requests by one token in
  any second (by :attr:`~FakeTikTok.clock`) answer 40100.
* **advertiser_id**: missing or not digits 40002; one the token was not
  granted (:meth:`~FakeTikTok.add_token`), unknown ones included, 40001.
* **file upload** (multipart): ``calculate_type`` present (40002) and an
  encryption type TikTok knows (40002); a ``file`` part (40002) named
  ``.csv`` or ``.txt`` (40908); ``file_signature`` present (40002); at most
  :attr:`~FakeTikTok.max_file_bytes` (40907); the signature is the file's
  MD5 (40900); ids present (40906); every line one lower-case hex SHA-256
  (MD5 for the ``*_MD5`` types), with an optional header row naming the type:
  anything else, unhashed values above all, 40909 (the line is never
  echoed). Answers ``{"file_path"}``; the file belongs to the advertiser.
* **create** (JSON): ``custom_audience_name`` 1 to 128 characters,
  ``calculate_type`` known, ``retention_in_days`` in [1, 365] when given
  (40002); ``file_paths`` a non-empty list of at most
  :attr:`~FakeTikTok.max_file_paths` (40002), each an upload of this
  advertiser (else 40905, as for a made-up path) of the same
  ``calculate_type`` (40909). Answers ``{"custom_audience_id"}``.
* **update** (JSON): ``custom_audience_id`` present (40002) and an audience
  of this advertiser (40007); ``custom_audience_name`` or ``file_paths``
  (40002); ``action`` ``APPEND``, ``REMOVE`` or ``REPLACE`` (TikTok's
  default ``REPLACE``; else 40002); the files as for create, of the
  audience's type; and, as TikTok's definition says, the operation fails
  (40002, nothing changed) if the audience would then hold fewer than
  :attr:`~FakeTikTok.min_audience_size` (1,000) ids. Answers ``{}``.
* **get**: ``custom_audience_ids`` a JSON list of 1 to 100 (40002), each an
  audience of the advertiser (40007); answers ``{"list": [{"audience_details",
  "audience_history"}]}``. **list**: ``page`` >= 1, ``page_size`` 1 to 100
  (40002); answers ``{"list", "page_info"}``.

What it holds: each audience's ids as a set (APPEND adds, REMOVE takes
away, REPLACE sets), read back with :meth:`~FakeTikTok.members` as segflow's
codes: ``e:<hash>`` for an ``EMAIL_SHA256`` audience, ``p:<hash>`` for
``PHONE_SHA256``. :attr:`~FakeTikTok.received` logs every request's path,
query and body (never a header, so never the token), so tests can check
that no raw identifier left segflow.

``python -m segflow.activation.fake_tiktok`` serves one for local trials.
"""

from segflow.activation.fake_tiktok.server import FAILURE_KINDS, FakeTikTok, Received
from segflow.activation.fake_tiktok.state import Audience, UploadedFile

__all__ = ["FAILURE_KINDS", "Audience", "FakeTikTok", "Received", "UploadedFile"]
