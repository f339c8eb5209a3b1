"""The fake's request quota, as Google's Data Manager API enforces it per Cloud project.

Google counts requests per project in four groups (ingestion or management
service, read or mutate), each with a per-minute and a per-day limit: 300 a
minute, 100,000 a day for IngestionService and 50,000 a day for the other
services. A request over a limit is refused with RESOURCE_EXHAUSTED; the
``ErrorInfo`` (reason RATE_LIMIT_EXCEEDED) names the limit in
``metadata.quota_limit``, as Google's limits guide says, and a
``QuotaFailure`` violation says the same. Only the minute limit carries a
``RetryInfo`` (until the next minute). Minutes are clock minutes; days end
at midnight Pacific time, when Google's daily quotas reset.
"""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2

from segflow.activation.fake.errors import PLATFORM_DOMAIN, SERVICE, Refusal, refusal

PROJECT = "000000000000"
LIMITS_GUIDE = "https://developers.google.com/data-manager/api/devguides/limits"
_PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")

INGESTION_MUTATE = "IngestionMutate"
INGESTION_READ = "IngestionRead"
MANAGEMENT_MUTATE = "ManagementMutate"
MANAGEMENT_READ = "ManagementRead"
#: Google's daily limit for all services but IngestionService.
MANAGEMENT_PER_DAY = 50_000


@dataclass(frozen=True)
class Limit:
    group: str
    window: str  # "minute" or "day"
    value: int

    @property
    def name(self) -> str:
        """Google's quota limit name, e.g. ``IngestionMutateRequestsPerMinutePerProject``."""
        return f"{self.group}RequestsPer{self.window.title()}PerProject"

    @property
    def metric(self) -> str:
        # The fake's naming: Google's guide gives the limit names, not the metrics.
        words = "_".join(w.lower() for w in _split_camel(self.group))
        return f"{SERVICE}/{words}_requests"


def _split_camel(name: str) -> list[str]:
    words: list[str] = []
    for char in name:
        if char.isupper() or not words:
            words.append(char)
        else:
            words[-1] += char
    return words


class Quota:
    """Counts requests per group and window; :meth:`charge` refuses one over a limit."""

    def __init__(self, per_minute: int, per_day: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self.per_day = per_day
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[object, int]] = {}

    def limit(self, group: str, window: str) -> Limit:
        if window == "minute":
            return Limit(group, window, self.per_minute)
        per_day = self.per_day
        if group.startswith("Management"):
            per_day = min(per_day, MANAGEMENT_PER_DAY)
        return Limit(group, window, per_day)

    def charge(self, group: str) -> None:
        """Count one request of ``group``; raise a :class:`Refusal` if it is over a limit.

        Whether Google counts the requests it refuses for quota is not
        documented; the fake counts them, so a client that keeps retrying
        within the minute also uses up its day.
        """
        now = self.clock()
        minute: object = int(now // 60)
        day: object = dt.datetime.fromtimestamp(now, _PACIFIC).date()
        with self._lock:
            used_minute = self._bump((group, "minute"), minute)
            used_day = self._bump((group, "day"), day)
        # Past the daily limit, waiting a minute does not help: say so first.
        day_limit = self.limit(group, "day")
        if used_day > day_limit.value:
            raise exceeded(day_limit)
        minute_limit = self.limit(group, "minute")
        if used_minute > minute_limit.value:
            raise exceeded(minute_limit, retry_delay=60 - now % 60)

    def _bump(self, key: tuple[str, str], window: object) -> int:
        current, count = self._counts.get(key, (window, 0))
        if current != window:
            count = 0
        count += 1
        self._counts[key] = (window, count)
        return count


def exceeded(limit: Limit, retry_delay: float | None = None) -> Refusal:
    """Google's RESOURCE_EXHAUSTED answer for ``limit``."""
    description = (
        f"Quota exceeded for quota metric '{limit.metric}' and limit '{limit.name}' "
        f"of service '{SERVICE}' for consumer 'project_number:{PROJECT}'."
    )
    return refusal(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        description,
        reason="RATE_LIMIT_EXCEEDED",
        domain=PLATFORM_DOMAIN,
        metadata={
            "service": SERVICE,
            "consumer": f"projects/{PROJECT}",
            "quota_metric": limit.metric,
            "quota_limit": limit.name,
            "quota_limit_value": str(limit.value),
            "quota_location": "global",
        },
        quota=[
            error_details_pb2.QuotaFailure.Violation(
                subject=f"project_number:{PROJECT}",
                description=description,
                api_service=SERVICE,
                quota_metric=limit.metric,
                quota_id=limit.name,
                quota_value=limit.value,
            )
        ],
        retry_delay=retry_delay,
        help_url=LIMITS_GUIDE,
    )
