"""Completion tracking: each call's task IDs, kept until the provider says how they ended.

``submit.lua`` starts tracking a call in the step that records it; ``lua/track.lua`` applies
what the provider said; the worker's poller (:mod:`worker.tracking`) decides which of
settle, wait or give up it is. A path is ``complete`` when its own task is Complete
(:meth:`TrackingStore.ends`, read by ``lookup``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from cdn_refresh.constants import ObjectType
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext, time_arg


@dataclass(frozen=True, slots=True)
class TrackedCall:
    """One provider call whose tasks have not all ended."""

    call_id: str
    task_ids: tuple[str, ...]
    object_type: ObjectType
    submitted_at: float
    checks: int


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """How a tracked task ended: Complete, Failed, or Timeout/Unknown (given up)."""

    status: str
    at: float


@dataclass(frozen=True, slots=True)
class Tracked:
    """What one run of ``track.lua`` did to a call's paths."""

    complete: int
    back_to_pending: int
    dead_lettered: int


class TrackingStore:
    """The calls being tracked, and how their tasks ended."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def take_turn(self, ttl_s: float) -> bool:
        """True for one poller of the deployment at a time (the mark lives ``ttl_s``)."""
        key = self._ctx.keys.shared.tracking_lock
        return bool(self._ctx.redis.set(key, "1", nx=True, px=max(1, int(ttl_s * 1000))))

    def end_turn(self) -> None:
        """The poll is over: the next tick may poll at once."""
        self._ctx.redis.delete(self._ctx.keys.shared.tracking_lock)

    def due(self, limit: int, now: float | None = None) -> list[TrackedCall]:
        """Calls whose next check is due, soonest first."""
        k = self._ctx.keys.shared
        now = self._ctx.now() if now is None else now
        ids = cast(list[str], self._ctx.redis.zrangebyscore(k.tracking, "-inf", now, 0, limit))
        if not ids:
            return []
        raws = cast(list[str | None], self._ctx.redis.hmget(k.tracks, ids))
        found = []
        for call_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue  # settled between the two reads
            data = json.loads(raw)
            found.append(
                TrackedCall(
                    call_id,
                    tuple(data["task_ids"]),
                    ObjectType(data["object_type"]),
                    float(data["at"]),
                    int(data.get("checks") or 0),
                )
            )
        return found

    def count(self) -> int:
        """How many calls are being tracked."""
        return int(self._ctx.redis.zcard(self._ctx.keys.shared.tracking))

    def settle(
        self,
        call: TrackedCall,
        statuses: Mapping[str, str],
        task_of: Mapping[str, str],
        now: float | None = None,
    ) -> Tracked:
        """Every task ended: complete the paths of Complete tasks, send back (or
        dead-letter) those of Failed ones. ``task_of`` names each path's own task."""
        return self._run(
            call,
            {
                "outcome": "settle",
                "statuses": dict(statuses),
                "task_of": dict(task_of),
                "max_attempts": self._ctx.settings.retry.max_attempts,
            },
            now,
        )

    def wait(self, call: TrackedCall, next_s: float, now: float | None = None) -> None:
        """A task still runs: ask again in ``next_s``."""
        self._run(call, {"outcome": "wait", "next_s": next_s}, now)

    def give_up(self, call: TrackedCall, reason: str, now: float | None = None) -> None:
        """Stop tracking; the paths stay submitted (``reason``: Timeout or Unknown)."""
        self._run(call, {"outcome": "give_up", "reason": reason}, now)

    def _run(self, call: TrackedCall, answer: dict[str, object], now: float | None) -> Tracked:
        done = self._ctx.scripts.run(
            scripts.TRACK,
            {"call": call.call_id, "now": time_arg(now), "answer": json.dumps(answer)},
            call.object_type,
        )
        return Tracked(int(done[0]), int(done[1]), int(done[2]))

    def ends(self, task_ids: Iterable[str]) -> dict[str, TaskEnd]:
        """How each of ``task_ids`` ended, for those that did."""
        ids = list(task_ids)
        if not ids:
            return {}
        raws = cast(list[str | None], self._ctx.redis.hmget(self._ctx.keys.shared.task_status, ids))
        ended = {}
        for task_id, raw in zip(ids, raws, strict=True):
            if raw is not None:
                data = json.loads(raw)
                ended[task_id] = TaskEnd(str(data["status"]), float(data["at"]))
        return ended
