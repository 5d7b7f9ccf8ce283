"""What promotion and ``plan`` read, and the Directories promotion adds.

A promoted Directory is enqueued like any other, as bulk work that no job waits on; the
claim and coverage scripts then do the rest (``lua/claim.lua``, ``lua/cover.lua``), so its
quota is reserved, and its covered paths settled, by the same atomic steps as every path's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from cdn_refresh.constants import BULK_RANK_OFFSET, ObjectType, Priority
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.jobs import JobStore

# Pending paths read per round trip.
READ_STEP = 10_000


class PromotionStore:
    """Reads pending paths for planning; enqueues promoted Directories."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def take_turn(self, interval_s: float) -> bool:
        """True for one worker of the deployment per ``interval_s``: planning reads every
        pending File, once is enough."""
        key = self._ctx.keys.shared.promotion_lock
        return bool(self._ctx.redis.set(key, "1", nx=True, px=max(1, int(interval_s * 1000))))

    def pending_paths(
        self, object_type: ObjectType, *, bulk_only: bool = False, limit: int | None = None
    ) -> Iterator[str]:
        """Pending paths of one type, soonest first (bulk ones only, if asked)."""
        pending = self._ctx.keys.of(object_type).pending
        low = BULK_RANK_OFFSET if bulk_only else "-inf"
        read = 0
        while limit is None or read < limit:
            step = READ_STEP if limit is None else min(READ_STEP, limit - read)
            part = cast(
                list[str],
                self._ctx.redis.zrangebyscore(pending, low, "+inf", start=read, num=step),
            )
            yield from part
            read += len(part)
            if len(part) < step:
                return

    def interactive_count(self, object_type: ObjectType) -> int:
        """Pending paths of one type that are interactive."""
        pending = self._ctx.keys.of(object_type).pending
        return int(self._ctx.redis.zcount(pending, "-inf", f"({BULK_RANK_OFFSET}"))

    def promote(self, directories: list[str]) -> int:
        """Enqueue ``directories`` as bulk Directory work no job waits on; returns how many
        were not pending already."""
        if not directories:
            return 0
        rank = JobStore.rank(self._ctx.now(), Priority.BULK)
        accepted, _ = self._ctx.scripts.run(
            scripts.ENQUEUE, ["", rank, *directories], ObjectType.DIRECTORY
        )
        return int(accepted)
