"""The daily quotas: one counter per kind of work, and what each has used today, where "today"
turns at 00:00 UTC+8.

:data:`COUNTERS` is the table of counters: the config fields of each one's quota and of the
units spent elsewhere on the account, its fields in ``DescribeRefreshQuota`` and the error
code that refuses a call once it is spent. Refresh and preload count apart, as the provider's
do; a new counter is one row here and its config fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Final, Literal

QuotaKind = Literal["url", "dir", "regex", "ignore_params", "tag", "preload"]

REFRESH_SPENT = "QuotaExceeded.Refresh"
PRELOAD_SPENT = "QuotaExceeded.Preload"


@dataclass(frozen=True, slots=True)
class Counter:
    """One daily counter and where its facts live."""

    kind: QuotaKind
    quota: str  # the config field of its daily quota
    spent_elsewhere: str  # the config field of the units other users spent today
    # Its fields in DescribeRefreshQuota (None: the provider answers none for it).
    quota_field: str | None
    remain_field: str | None
    spent_code: str  # the error code once it is spent
    what: str  # its units in an error message

    def daily_quota(self, config: object) -> int:
        """Its daily quota as configured."""
        return int(getattr(config, self.quota))

    def left_to_us(self, config: object) -> int:
        """Its daily quota less what was spent elsewhere on the account."""
        return max(0, self.daily_quota(config) - int(getattr(config, self.spent_elsewhere)))


def _counter(
    kind: QuotaKind, field: str | None, spent_code: str = REFRESH_SPENT, what: str = ""
) -> Counter:
    return Counter(
        kind=kind,
        quota=f"{kind}_quota",
        spent_elsewhere=f"{kind}_spent_elsewhere",
        quota_field=f"{field}Quota" if field else None,
        remain_field=f"{field}Remain" if field else None,
        spent_code=spent_code,
        what=what or kind,
    )


#: Every daily counter, in the order ``DescribeRefreshQuota`` lists them.
COUNTERS: Final[Mapping[QuotaKind, Counter]] = MappingProxyType(
    {
        c.kind: c
        for c in (
            _counter("url", "Url", what="URLs"),
            _counter("dir", "Dir", what="directories"),
            _counter("regex", "Regex", what="regular expressions"),
            _counter("ignore_params", "IgnoreParams", what="URLs (query ignored)"),
            # The provider documents no daily cache-tag quota, so it answers no field for one.
            _counter("tag", None, what="cache tags"),
            _counter("preload", "Preload", PRELOAD_SPENT, what="URLs to preload"),
        )
    }
)
KINDS: Final[tuple[QuotaKind, ...]] = tuple(COUNTERS)


def provider_day(now_s: float, utc_offset_h: int) -> date:
    """The provider's calendar day at ``now_s`` (epoch seconds)."""
    return (datetime.fromtimestamp(now_s, UTC) + timedelta(hours=utc_offset_h)).date()


class DailyQuota:
    """Use per kind for the current provider day; the count starts again on a new day.

    Not thread-safe: the caller holds the emulator's lock.
    """

    def __init__(self) -> None:
        self._day: date | None = None
        self._used: dict[QuotaKind, int] = dict.fromkeys(KINDS, 0)

    def _roll(self, day: date) -> None:
        if day != self._day:
            self._day = day
            self._used = dict.fromkeys(KINDS, 0)

    def used(self, kind: QuotaKind, day: date) -> int:
        """What ``kind`` has used on ``day``."""
        self._roll(day)
        return self._used[kind]

    def remaining(self, kind: QuotaKind, limit: int, day: date) -> int:
        """What is left of ``limit`` for ``kind`` on ``day`` (never below zero)."""
        return max(0, limit - self.used(kind, day))

    def take(self, kind: QuotaKind, count: int, limit: int, day: date) -> bool:
        """Use ``count`` if all of it fits, else use nothing and return False."""
        if count > self.remaining(kind, limit, day):
            return False
        self._used[kind] += count
        return True

    def snapshot(self, day: date) -> dict[str, int | str]:
        """The day and each kind's use, for the stats endpoint."""
        self._roll(day)
        return {"day": day.isoformat(), **{f"{k}_used": v for k, v in self._used.items()}}

    def reset(self) -> None:
        """Forget all use."""
        self._day = None
        self._used = dict.fromkeys(KINDS, 0)
