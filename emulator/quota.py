"""The daily quotas: what each kind has used today, where "today" turns at 00:00 UTC+8."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

QuotaKind = Literal["url", "dir", "push"]
KINDS: tuple[QuotaKind, ...] = ("url", "dir", "push")


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
