"""What the fake holds: accounts, their Customer Match lists, and the uploads it was sent.

A list holds entries, each the identifier codes of one ingested member
(:func:`~segflow.activation.fake.checks.member_key`). Google matches users by
any identifier, so a remove takes out every entry that shares any identifier
code with a removed member. An upload (one accepted, not ``validate_only``
ingest or remove) is remembered by its request id with what
``RetrieveRequestStatus`` reports of it: the records and identifiers sent,
the records that failed processing, by reason, and for an ingest the share
held, as a match-rate range.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from google.ads.datamanager_v1.types import ingestion_service as svc
from google.ads.datamanager_v1.types import processing_errors as pe
from google.ads.datamanager_v1.types import request_status_per_destination as rs
from google.ads.datamanager_v1.types import user_list as ul
from google.ads.datamanager_v1.types.match_rate import MatchRateRange

from segflow.activation.fake.checks import Member, member_key

CONSENT_DENIED = 2  # ConsentStatus.CONSENT_DENIED
DENIED_CONSENT = "PROCESSING_ERROR_REASON_DENIED_CONSENT"
DAY = 86_400


def user_list_name(account_id: str, list_id: str) -> str:
    """The resource name the client builds (``UserListServiceClient.user_list_path``)."""
    return f"accountTypes/GOOGLE_ADS/accounts/{account_id}/userLists/{list_id}"


@dataclass
class CustomerList:
    account_id: str
    list_id: str
    display_name: str
    description: str = ""
    membership_days: int = 540
    entries: set[Member] = field(default_factory=set)
    #: identifier code -> the entries carrying it, for matching removes; built
    #: at the list's first remove (a set a code costs as much as the rest of
    #: an ingest, and a list only ever added to never reads it).
    by_code: dict[str, set[Member]] | None = None
    ingested: int = 0
    held_on_ingest: int = 0

    def add(self, entry: Member) -> None:
        size = len(self.entries)
        self.entries.add(entry)
        if self.by_code is not None and len(self.entries) > size:
            self._index(entry)

    def _index(self, entry: Member) -> None:
        assert self.by_code is not None
        for code in entry:
            self.by_code.setdefault(code, set()).add(entry)

    def remove_matching(self, codes: Member) -> None:
        """Take out every entry sharing any identifier code with ``codes``."""
        if self.by_code is None:
            self.by_code = {}
            for held in self.entries:
                self._index(held)
        doomed: set[Member] = set()
        for code in codes:
            doomed |= self.by_code.get(code, set())
        for entry in doomed:
            self.entries.discard(entry)
            for code in entry:
                holders = self.by_code.get(code)
                if holders is not None:
                    holders.discard(entry)
                    if not holders:
                        del self.by_code[code]

    def as_pb(self) -> Any:
        size = len(self.entries)
        out = ul.UserList.pb()(
            name=user_list_name(self.account_id, self.list_id),
            id=int(self.list_id),
            read_only=False,
            display_name=self.display_name,
            description=self.description,
            membership_status=ul.UserList.MembershipStatus.OPEN,
            access_reason=ul.UserList.AccessReason.OWNED,
            account_access_status=ul.UserList.AccessStatus.ENABLED,
        )
        out.membership_duration.seconds = self.membership_days * DAY
        out.size_info.display_network_members_count = size
        out.size_info.search_network_members_count = size
        out.size_info.youtube_members_count = size
        out.size_info.gmail_members_count = size
        out.target_network_info.eligible_for_display = True
        info = out.ingested_user_list_info
        info.upload_key_types.append(ul.IngestedUserListInfo.UploadKeyType.CONTACT_ID)
        info.contact_id_info.data_source_type = ul.DataSourceType.DATA_SOURCE_TYPE_FIRST_PARTY
        if self.ingested:
            info.contact_id_info.match_rate_percentage = int(
                100 * self.held_on_ingest / self.ingested
            )
        return out


@dataclass
class Upload:
    """One accepted request, as ``RetrieveRequestStatus`` will report it."""

    ingest: bool
    destinations: list[Any]
    records: int
    identifiers: int
    failed: Counter[str] = field(default_factory=Counter)
    polls: int = 0

    def status_pb(self, processing: bool) -> Any:
        response = svc.RetrieveRequestStatusResponse.pb()()
        for destination in self.destinations:
            one = response.request_status_per_destination.add()
            one.destination.CopyFrom(destination)
            if processing:
                one.request_status = rs.RequestStatusPerDestination.RequestStatus.PROCESSING
                self._fill_counts(one)
                continue
            failed = sum(self.failed.values())
            if failed == 0:
                one.request_status = rs.RequestStatusPerDestination.RequestStatus.SUCCESS
            elif failed >= self.records:
                one.request_status = rs.RequestStatusPerDestination.RequestStatus.FAILED
            else:
                one.request_status = rs.RequestStatusPerDestination.RequestStatus.PARTIAL_SUCCESS
            for reason, count in sorted(self.failed.items()):
                one.error_info.error_counts.add(
                    record_count=count, reason=getattr(pe.ProcessingErrorReason, reason).value
                )
            self._fill_counts(one)
            if self.ingest:
                status = one.audience_members_ingestion_status.user_data_ingestion_status
                status.upload_match_rate_range = match_rate_range(
                    (self.records - failed) / self.records
                )
        return response

    def _fill_counts(self, one: Any) -> None:
        if self.ingest:
            status = one.audience_members_ingestion_status.user_data_ingestion_status
        else:
            status = one.audience_members_removal_status.user_data_removal_status
        status.record_count = self.records
        status.user_identifier_count = self.identifiers


def match_rate_range(share: float) -> int:
    """The ``MatchRateRange`` a share in [0, 1] falls in (Google's intervals)."""
    percent = share * 100
    if percent < 20:
        return MatchRateRange.MATCH_RATE_RANGE_LESS_THAN_20
    bounds = [
        (31, MatchRateRange.MATCH_RATE_RANGE_20_TO_30),
        (41, MatchRateRange.MATCH_RATE_RANGE_31_TO_40),
        (51, MatchRateRange.MATCH_RATE_RANGE_41_TO_50),
        (61, MatchRateRange.MATCH_RATE_RANGE_51_TO_60),
        (71, MatchRateRange.MATCH_RATE_RANGE_61_TO_70),
        (81, MatchRateRange.MATCH_RATE_RANGE_71_TO_80),
        (91, MatchRateRange.MATCH_RATE_RANGE_81_TO_90),
    ]
    for upper, value in bounds:
        if percent < upper:
            return value
    return MatchRateRange.MATCH_RATE_RANGE_91_TO_100


def apply(
    request: Any,
    ingest: bool,
    lists: list[CustomerList],
    refuse_later: set[str],
    refuse_later_reason: str,
    keys: list[Member] | None = None,
) -> Upload:
    """Change ``lists`` as an accepted request does; return what its status will report."""
    request_denied = ingest and request.consent.ad_user_data == CONSENT_DENIED
    upload = Upload(
        ingest=ingest,
        destinations=list(request.destinations),
        records=len(request.audience_members),
        identifiers=0,
    )
    if keys is None:
        keys = [member_key(member) for member in request.audience_members]
    for member, key in zip(request.audience_members, keys, strict=True):
        upload.identifiers += len(member.user_data.user_identifiers)
        if not ingest:
            for target in lists:
                target.remove_matching(key)
            continue
        member_consent = member.consent.ad_user_data if member.HasField("consent") else 0
        denied = member_consent == CONSENT_DENIED or (member_consent == 0 and request_denied)
        reason = None
        if denied:
            reason = DENIED_CONSENT
        elif refuse_later and refuse_later.intersection(key):
            reason = refuse_later_reason
        if reason is not None:
            upload.failed[reason] += 1
        for target in lists:
            target.ingested += 1
            if reason is None:
                target.add(key)
                target.held_on_ingest += 1
    return upload
