"""Where a pending path stands in the queue, and when the quota window lets it go.

An estimate, as ``plan``'s: the paths ahead of it in claim order (interactive before bulk,
oldest first), and the time our rolling window frees enough units for them and for it.
Nothing the provider or a Directory's coverage may still change is foreseen.
"""

from __future__ import annotations

import math
from typing import cast

from cdn_refresh.constants import BULK_RANK_OFFSET, REPEAT_RANK_OFFSET, ObjectType
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.quota import QuotaStore
from cdn_refresh.store.records import QueuePlace


class PlaceStore:
    """Reads a pending path's place and estimate; writes nothing."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def of_path(self, path: str, object_type: ObjectType) -> QueuePlace | None:
        """The place of a pending ``path`` (``None`` when it is not pending, or cooling)."""
        pending = self._ctx.keys.of(object_type).pending
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.zrank(pending, path)
            pipe.zscore(pending, path)
            ahead, rank = pipe.execute()
        if ahead is None or rank is None:
            return None
        return self._estimate(cast(int, ahead), object_type, float(rank) >= BULK_RANK_OFFSET)

    def of_rank(self, rank: int, object_type: ObjectType) -> QueuePlace:
        """The place of the last path enqueued at ``rank`` (a job's; its repeats wait one
        quota window later): every pending path at or before that rank goes first."""
        pending = self._ctx.keys.of(object_type).pending
        window, _ = QuotaStore(self._ctx).effective(object_type)
        # Where its repeats wait, if it has any (an earlier release put them further back).
        latest = (rank + REPEAT_RANK_OFFSET, rank + int(window * 1000))
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            for repeats in latest:
                pipe.zcount(pending, repeats, repeats)
            found = pipe.execute()
        rank = next((r for r, n in zip(latest, found, strict=True) if int(n)), rank)
        ahead = int(self._ctx.redis.zcount(pending, "-inf", rank))
        return self._estimate(max(0, ahead - 1), object_type, rank >= BULK_RANK_OFFSET)

    def _estimate(self, ahead: int, object_type: ObjectType, bulk: bool) -> QueuePlace:
        s = self._ctx.settings
        tk = self._ctx.keys.of(object_type)
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zrange(tk.quota, 0, -1, withscores=True)
            # The window and limit every worker runs on: the stored ones, not our settings.
            pipe.get(self._ctx.keys.shared.quota_window)
            pipe.get(tk.quota_limit)
            (seconds, micros), reservations, window_raw, limit_raw = pipe.execute()
        now = seconds + micros / 1e6
        window, limit = QuotaStore(self._ctx).effective_of(object_type, window_raw, limit_raw)
        live = [(m, at) for m, at in reservations if at > now - window]
        if bulk:  # bulk work leaves the interactive reserve unspent
            limit -= math.ceil(limit * s.quota.interactive_reserve)
        needed = ahead + 1 - max(0, limit - sum(_count(m) for m, _ in live))
        if needed <= 0:
            return QueuePlace(ahead, fits_now=True)
        if limit <= 0:
            return QueuePlace(ahead, fits_now=False)
        freed = 0
        for member, at in live:
            freed += _count(member)
            if freed >= needed:
                return QueuePlace(ahead, False, at + window)
        # More than the window holds now: whole windows more, at the limit each.
        last = (live[-1][1] + window) if live else now
        return QueuePlace(ahead, False, last + window * math.ceil((needed - freed) / limit))


def _count(member: str) -> int:
    """The units of one reservation, ``batch:count``."""
    return int(member.rsplit(":", 1)[1])
