"""The figures ``/metrics`` shows, read from Redis so that every worker on every host counts.

Gauges (pending paths, the oldest pending path's age, our quota count, dead letters) are read
at scrape time from the state itself. Counters (paths submitted, provider calls by outcome,
call durations) live in one hash that ``submit.lua`` and ``release.lua`` add to while they
settle a call: the worker passes :func:`call_increments` in the script's JSON argument, so
counting costs no round trip of its own. This module names the hash's fields, on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from cdn_refresh.constants import (
    BULK_RANK_OFFSET,
    CALL_DURATION_BUCKETS_S,
    OBJECT_TYPES,
    ObjectType,
    enqueued_ms,
)
from cdn_refresh.operations import daily_quota
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext

INF = "+Inf"
_SEP = "|"


@dataclass(frozen=True, slots=True)
class CallSample:
    """One provider call: how it ended (``submitted``, ``retry``, ...) and how long it took."""

    outcome: str
    duration_s: float


def _bucket(duration_s: float) -> str:
    for bound in CALL_DURATION_BUCKETS_S:
        if duration_s <= bound:
            return repr(bound)
    return INF


def call_increments(object_type: ObjectType, calls: Iterable[CallSample]) -> dict[str, float]:
    """The counter fields the settling script adds for ``calls`` (histogram buckets are
    stored per bucket, not cumulative: the reader sums them)."""
    kind = ObjectType(object_type).value
    out: dict[str, float] = {}
    for call in calls:
        for name, by in (
            (_SEP.join(("calls", kind, call.outcome)), 1.0),
            (_SEP.join(("duration_bucket", kind, _bucket(call.duration_s))), 1.0),
            (_SEP.join(("duration_sum", kind)), call.duration_s),
            (_SEP.join(("duration_count", kind)), 1.0),
        ):
            out[name] = out.get(name, 0.0) + by
    return out


def submitted_field(object_type: ObjectType) -> str:
    """The counter of paths recorded as submitted."""
    return _SEP.join(("submitted_paths", ObjectType(object_type).value))


@dataclass(slots=True)
class TypeFigures:
    """Everything ``/metrics`` shows for one object type."""

    pending_interactive: int = 0
    pending_bulk: int = 0
    oldest_pending_age_s: float = 0.0  # 0 when nothing waits
    quota_used: int = 0
    quota_limit: int = 0
    dead_letters: int = 0
    submitted_paths: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # outcome -> calls
    duration_buckets: dict[str, int] = field(default_factory=dict)  # bound -> calls in it
    duration_sum_s: float = 0.0
    duration_count: int = 0

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """(upper bound, calls at or under it), as Prometheus wants, +Inf last."""
        running, out = 0, []
        for bound in (*(repr(b) for b in CALL_DURATION_BUCKETS_S), INF):
            running += self.duration_buckets.get(bound, 0)
            out.append((bound, running))
        return out


class MetricsStore:
    """Reads the figures of every type in one round trip."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def snapshot(self) -> dict[ObjectType, TypeFigures]:
        """The figures of each object type, now."""
        ctx, s = self._ctx, self._ctx.settings
        with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(ctx.keys.shared.metrics)
            for kind in OBJECT_TYPES:
                k = ctx.keys.of(kind)
                pipe.zcount(k.pending, "-inf", f"({BULK_RANK_OFFSET}")
                pipe.zcount(k.pending, BULK_RANK_OFFSET, "+inf")
                pipe.zrangebyscore(k.pending, "-inf", f"({BULK_RANK_OFFSET}", 0, 1, True)
                pipe.zrangebyscore(k.pending, BULK_RANK_OFFSET, "+inf", 0, 1, True)
                pipe.hlen(k.dead)
                ctx.scripts.run(
                    scripts.QUOTA_USED,
                    {
                        "now": "",
                        "configured_window_s": repr(s.quota.window_s),
                        "configured_limit": daily_quota(s, kind),
                    },
                    kind,
                    client=pipe,
                )
            answers = pipe.execute()
        (seconds, micros), counters = answers[0], cast(dict[str, str], answers[1])
        now = seconds + micros / 1e6
        figures = {}
        for i, kind in enumerate(OBJECT_TYPES):
            interactive, bulk, first_i, first_b, dead, used = answers[2 + 6 * i : 8 + 6 * i]
            # A rank is the enqueue time in ms, with offsets on top (bulk, a repeat).
            ranks = [enqueued_ms(float(r)) for _, r in [*first_i, *first_b]]
            figures[kind] = TypeFigures(
                pending_interactive=int(interactive),
                pending_bulk=int(bulk),
                oldest_pending_age_s=max(0.0, now - min(ranks) / 1000) if ranks else 0.0,
                quota_used=int(used[0]),
                quota_limit=int(used[3]),
                dead_letters=int(dead),
            )
        _add_counters(figures, counters)
        return figures


def _add_counters(figures: dict[ObjectType, TypeFigures], counters: dict[str, Any]) -> None:
    for name, raw in counters.items():
        parts = name.split(_SEP)
        try:
            fig = figures[ObjectType(parts[1])]
        except (IndexError, ValueError):
            continue  # a field of another version: not ours to show
        value = float(raw)
        if parts[0] == "submitted_paths":
            fig.submitted_paths = int(value)
        elif parts[0] == "calls" and len(parts) == 3:
            fig.calls[parts[2]] = int(value)
        elif parts[0] == "duration_bucket" and len(parts) == 3:
            fig.duration_buckets[parts[2]] = int(value)
        elif parts[0] == "duration_sum":
            fig.duration_sum_s = value
        elif parts[0] == "duration_count":
            fig.duration_count = int(value)
