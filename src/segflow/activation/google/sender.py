"""The Customer Match sender: one batch as one Data Manager API request.

``IngestAudienceMembers`` / ``RemoveAudienceMembers`` with the official
``google-ads-datamanager`` client, through :class:`.client.GoogleConnection`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.ads.datamanager_v1.types import audience, consent, ingestion_service
from google.ads.datamanager_v1.types import destination as d
from google.ads.datamanager_v1.types import terms_of_service as tos
from google.ads.datamanager_v1.types import user_data as ud

from segflow.activation.destinations import DENIED, GRANTED, Destination
from segflow.activation.google.client import GoogleConnection
from segflow.activation.google.errors import classify
from segflow.activation.transport import (
    INGEST,
    MAX_IDENTIFIERS_PER_MEMBER,
    LinkBroken,
    OutMember,
)
from segflow.config import Settings


class GoogleAdsSender:
    """One Customer Match list through the Data Manager API.

    Requests are built as raw protobuf messages (the generated proto-plus
    wrappers cost several microseconds a field) and wrapped without a copy.
    The client's own retry is turned off: the sync worker owns retries, so
    that each one is recorded, honours the link's backoff and survives a
    restart; the timeout is ours too (the client's default waits 120 s).
    """

    def __init__(
        self, destination: Destination, secret: dict[str, Any] | None, settings: Settings
    ) -> None:
        self.destination = destination
        self.secret = secret
        self.timeout = float(settings.sync_timeout)
        self.connection = GoogleConnection(secret, settings)

    def _destination_pb(self) -> Any:
        config = self.destination.config
        dest = d.Destination.pb()(product_destination_id=config["product_destination_id"])
        account_type = d.ProductAccount.AccountType.GOOGLE_ADS
        dest.operating_account.account_type = account_type
        dest.operating_account.account_id = config["operating_account_id"]
        if config.get("login_account_id"):
            dest.login_account.account_type = account_type
            dest.login_account.account_id = config["login_account_id"]
        return dest

    def build(self, operation: str, members: Sequence[OutMember]) -> Any:
        """The request for one batch, as a proto-plus message."""
        member_pb = audience.AudienceMember.pb()
        identifier_pb = ud.UserIdentifier.pb()
        address_pb = ud.AddressInfo.pb()
        status = {
            GRANTED: consent.ConsentStatus.CONSENT_GRANTED,
            DENIED: consent.ConsentStatus.CONSENT_DENIED,
        }
        ingest = operation == INGEST
        built = []
        for m in members:
            ids = []
            for code in m.codes[:MAX_IDENTIFIERS_PER_MEMBER]:
                kind, _, rest = code.partition(":")
                if kind == "e":
                    ids.append(identifier_pb(email_address=rest))
                elif kind == "p":
                    ids.append(identifier_pb(phone_number=rest))
                else:
                    given, family, region, postal = rest.split(":", 3)
                    ids.append(
                        identifier_pb(
                            address=address_pb(
                                given_name=given,
                                family_name=family,
                                region_code=region,
                                postal_code=postal,
                            )
                        )
                    )
            member = member_pb()
            member.user_data.user_identifiers.extend(ids)
            if ingest and m.consent != (None, None):
                user_data, personalization = m.consent
                if user_data is not None:
                    member.consent.ad_user_data = status[user_data]
                if personalization is not None:
                    member.consent.ad_personalization = status[personalization]
            built.append(member)
        request_type = (
            ingestion_service.IngestAudienceMembersRequest
            if ingest
            else ingestion_service.RemoveAudienceMembersRequest
        )
        request = request_type.pb()(
            validate_only=self.destination.validate_only,
            encoding=ingestion_service.Encoding.HEX,
        )
        request.destinations.append(self._destination_pb())
        request.audience_members.extend(built)
        if ingest:
            default_user_data, default_personalization = self.destination.consent
            request.consent.ad_user_data = status[default_user_data]
            request.consent.ad_personalization = status[default_personalization]
            request.terms_of_service.customer_match_terms_of_service_status = (
                tos.TermsOfServiceStatus.ACCEPTED
            )
        return request_type.wrap(request)

    def send(self, operation: str, members: Sequence[OutMember]) -> str:
        if not self.destination.terms_accepted:
            raise LinkBroken(
                "the Customer Match terms of service are not accepted for this destination "
                "(segflow destinations update NAME --terms-accepted)"
            )
        client = self.connection.ingestion()
        request = self.build(operation, members)
        call = (
            client.ingest_audience_members
            if operation == INGEST
            else client.remove_audience_members
        )
        try:
            response = call(request=request, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise classify(exc, self.secret) from None
        return str(response.request_id)

    def close(self) -> None:
        self.connection.close()
