"""What promotion and ``plan`` read, and the Directories promotion adds.

A promoted Directory is enqueued like any other, as bulk work that no job waits on; the
claim and coverage scripts then do the rest (``lua/claim.lua``, ``lua/cover.lua``), so its
quota is reserved, and its covered paths settled, by the same atomic steps as every path's.
"""

from __future__ import annotations

from collections.abc import Iterator

from cdn_refresh.constants import BULK_RANK_OFFSET, ObjectType, Priority
from cdn_refresh.operations import coverage
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.jobs import JobStore, enqueue_args

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
        """Pending paths of one type, in no particular order (bulk ones only, if asked).

        A scan, not pages by offset: each page of a sorted set read by offset costs as much
        as the offset. A path may, rarely, come twice (the scan's guarantee).
        """
        pending = self._ctx.keys.of(object_type).pending
        read = 0
        for path, rank in self._ctx.redis.zscan_iter(pending, count=READ_STEP):
            if bulk_only and rank < BULK_RANK_OFFSET:
                continue
            yield path
            read += 1
            if limit is not None and read >= limit:
                return

    def waiting_directories(self) -> set[str]:
        """Directories pending, cooling or being covered: promoting one again would add
        nothing (it is sent, or covers, already)."""
        covering = coverage().covering
        tk = self._ctx.keys.of(covering)
        found = set(self.pending_paths(covering))
        for key in (tk.cooling, tk.covering):
            found.update(path for path, _ in self._ctx.redis.zscan_iter(key, count=READ_STEP))
        return found

    def cooling_paths(self, object_type: ObjectType) -> Iterator[str]:
        """Paths of one type that wait for their cooldown (pending, for ``plan``)."""
        cooling = self._ctx.keys.of(object_type).cooling
        for path, _ in self._ctx.redis.zscan_iter(cooling, count=READ_STEP):
            yield path

    def interactive_count(self, object_type: ObjectType) -> int:
        """Pending paths of one type that are interactive."""
        pending = self._ctx.keys.of(object_type).pending
        return int(self._ctx.redis.zcount(pending, "-inf", f"({BULK_RANK_OFFSET}"))

    def promote(self, directories: list[str]) -> list[str]:
        """Enqueue ``directories`` as bulk Directory work no job waits on; returns those
        that were not pending already."""
        rank = JobStore.rank(self._ctx.now(), Priority.BULK)
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            for directory in directories:
                self._ctx.scripts.run(
                    scripts.ENQUEUE,
                    enqueue_args(self._ctx, "", rank, coverage().covering, (directory,)),
                    coverage().covering,
                    client=pipe,
                )
            answers = pipe.execute()
        return [d for d, (accepted, _) in zip(directories, answers, strict=True) if accepted]
