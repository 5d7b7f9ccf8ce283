"""Batches in flight: claim (with the quota reservation), settle, and reclaim after a crash.

The Redis side is three Lua scripts (``worker/lua``); this module passes them their keys and
arguments and turns their answers into Python values.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis

from cdn_refresh.constants import BULK_RANK_OFFSET, OBJECT_TYPES, ObjectType
from cdn_refresh.keys import Keys
from cdn_refresh.redis_conn import load_script
from cdn_refresh.settings import Settings

# How many pending paths one claim may look at to fill a batch within the domain limit.
SCAN_LIMIT = 20_000

Outcome = Literal["submitted", "dead", "retry", "requeue"]
WaitReason = Literal["quota", "reserve", "provider_quota", "credentials", "backoff"]


@dataclass(frozen=True, slots=True)
class Batch:
    """Paths claimed together for one call, with the quota reserved for them."""

    id: str
    object_type: ObjectType
    paths: tuple[str, ...]
    waiters: tuple[str, ...]

    @property
    def domains(self) -> list[str]:
        """The distinct domains of the batch, in first-seen order."""
        seen: dict[str, None] = {}
        for path in self.paths:
            seen.setdefault(path.split("/", 3)[2].split(":", 1)[0], None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing may be claimed now; ``seconds`` until that may change (0: unknown)."""

    reason: WaitReason
    seconds: float


@dataclass(frozen=True, slots=True)
class Settled:
    """What :meth:`BatchStore.settle` did."""

    settled: int
    dead_lettered: int
    top_attempts: int


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """Our own count of one type's rolling window."""

    limit: int
    used: int

    @property
    def remaining(self) -> int:
        """What may still be reserved."""
        return max(0, self.limit - self.used)


class BatchStore:
    """Claims, settles and reclaims batches in Redis for every worker on every host."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._settings = settings
        self.keys = Keys(settings.key_prefix)
        self._claim = load_script(client, "worker", "claim.lua")
        self._settle = load_script(client, "worker", "settle.lua")
        self._extend_ttl = load_script(client, "worker", "extend_ttl.lua")

    def claim(self, object_type: ObjectType, now: float | None = None) -> Batch | Wait | None:
        """Claim the next batch and reserve its quota; ``None`` when nothing is pending.

        ``now`` defaults to Redis's clock, which every worker on every host shares.
        """
        s, k, tk = self._settings, self.keys, self.keys.of(object_type)
        limit = s.daily_quota(object_type)
        answer = self._claim(
            keys=[
                tk.pending,
                tk.waiters,
                k.batches,
                k.leases,
                tk.quota,
                tk.quota_total,
                tk.hold,
                k.auth_hold,
                tk.backoff,
                k.job_counts,
                k.batch_seq,
            ],
            args=[
                _time_arg(now),
                repr(s.quota_window_s),
                limit,
                math.ceil(limit * s.interactive_reserve),
                s.paths_per_call(object_type),
                s.max_domains_per_call,
                repr(s.batch_lease_s),
                BULK_RANK_OFFSET,
                object_type,
                SCAN_LIMIT,
            ],
        )
        if answer[0] == "empty":
            return None
        if answer[0] == "wait":
            return Wait(answer[1], float(answer[2]))
        return _batch_from_json(answer[2])

    def settle(
        self,
        batch_id: str,
        object_type: ObjectType,
        outcome: Outcome,
        now: float | None = None,
        *,
        paths: tuple[str, ...] = (),
        task_ids: tuple[str, ...] = (),
        request_id: str = "",
        code: str = "",
        message: str = "",
        return_quota: bool = False,
        only_if_lease_expired: bool = False,
    ) -> Settled:
        """Settle ``paths`` of a batch (all of it when empty); see ``settle.lua``."""
        k, tk = self.keys, self.keys.of(object_type)
        info: dict[str, Any] = {
            "task_ids": list(task_ids),
            "request_id": request_id,
            "code": code,
            # Provider messages can be long; the record keeps what an operator needs.
            "message": message[:500],
            "return_quota": return_quota,
            "max_attempts": self._settings.max_attempts,
            "only_if_lease_expired": only_if_lease_expired,
        }
        if not task_ids:
            del info["task_ids"]  # cjson would encode an empty Lua table as an object
        answer = self._settle(
            keys=[
                k.batches,
                k.leases,
                tk.pending,
                tk.waiters,
                tk.pathinfo,
                tk.records,
                tk.records_by_time,
                tk.dead,
                tk.quota,
                tk.quota_total,
                k.job_counts,
                k.job_tasks,
                k.auth_failures,
                k.auth_error,
            ],
            args=[batch_id, outcome, _time_arg(now), json.dumps(info), *paths],
        )
        return Settled(int(answer[0]), int(answer[1]), int(answer[2]))

    def record_late(
        self, batch: Batch, paths: tuple[str, ...], task_ids: tuple[str, ...], request_id: str
    ) -> None:
        """Record a submission whose batch was reclaimed before its answer came."""
        tk = self.keys.of(batch.object_type)
        now = self.now()
        record = json.dumps(
            {
                "task_ids": list(task_ids),
                "request_id": request_id,
                "submitted_at": now,
                "batch": batch.id,
                "late": True,
            }
        )
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(tk.records, mapping=dict.fromkeys(paths, record))
            pipe.zadd(tk.records_by_time, dict.fromkeys(paths, now))
            pipe.execute()

    def now(self) -> float:
        """Redis's clock: the one time every worker on every host agrees on."""
        seconds, micros = self._redis.time()
        return seconds + micros / 1e6

    def extend_lease(self, batch_id: str, now: float | None = None) -> None:
        """Keep a batch ours while a long piece of work (a split) goes on."""
        now = self.now() if now is None else now
        self._redis.zadd(self.keys.leases, {batch_id: now + self._settings.batch_lease_s}, xx=True)

    def expired_batches(self, now: float | None = None) -> list[tuple[str, ObjectType]]:
        """Batches whose lease ran out: their worker died or hung mid-call."""
        now = self.now() if now is None else now
        ids = cast(list[str], self._redis.zrangebyscore(self.keys.leases, "-inf", now))
        if not ids:
            return []
        found: list[tuple[str, ObjectType]] = []
        raws = cast(list[str | None], self._redis.hmget(self.keys.batches, ids))
        for batch_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                # A lease without a batch: settled between the two reads.
                continue
            found.append((batch_id, json.loads(raw)["object_type"]))
        return found

    def quota_usage(self, object_type: ObjectType, now: float | None = None) -> QuotaUsage:
        """Our count of the rolling window (reservations older than the window excluded)."""
        now = self.now() if now is None else now
        tk = self.keys.of(object_type)
        cutoff = now - self._settings.quota_window_s
        members = cast(list[str], self._redis.zrangebyscore(tk.quota, f"({cutoff}", "+inf"))
        used = sum(int(member.rsplit(":", 1)[1]) for member in members)
        return QuotaUsage(self._settings.daily_quota(object_type), used)

    def set_hold(self, object_type: ObjectType, seconds: float, reason: str) -> None:
        """Stop claiming one type for ``seconds`` (the provider's quota is spent)."""
        self._extend_ttl(
            keys=[self.keys.of(object_type).hold], args=[reason, max(1, int(seconds * 1000))]
        )

    def set_backoff(self, object_type: ObjectType, seconds: float) -> None:
        """Stop claiming one type for ``seconds`` after a transient error."""
        if seconds > 0:
            self._extend_ttl(
                keys=[self.keys.of(object_type).backoff], args=["1", max(1, int(seconds * 1000))]
            )

    def set_auth_hold(self, code: str, message: str, base_s: float, max_s: float) -> float:
        """Stop claiming anything after a credential error, backing off exponentially."""
        failures = int(self._redis.incr(self.keys.auth_failures))
        seconds = min(max_s, base_s * 2 ** min(failures - 1, 30))
        value = json.dumps({"code": code, "message": message[:500], "failures": failures})
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.auth_hold, value, px=max(1, int(seconds * 1000)))
            pipe.set(self.keys.auth_error, value)
            pipe.execute()
        return float(seconds)

    def trim_records(self, now: float | None = None, limit: int = 1000) -> int:
        """Forget submission records and jobs older than ``RECORD_RETENTION_DAYS``."""
        now = time.time() if now is None else now
        cutoff = now - self._settings.record_retention_days * 86400
        k = self.keys
        trimmed = 0
        for object_type in OBJECT_TYPES:
            tk = k.of(object_type)
            old = cast(
                list[str], self._redis.zrangebyscore(tk.records_by_time, "-inf", cutoff, 0, limit)
            )
            if old:
                with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hdel(tk.records, *old)
                    pipe.zrem(tk.records_by_time, *old)
                    pipe.execute()
                trimmed += len(old)
        jobs = cast(list[str], self._redis.zrangebyscore(k.jobs_by_time, "-inf", cutoff, 0, limit))
        if jobs:
            states = ("pending", "in_flight", "submitted", "failed")
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hdel(k.jobs, *jobs)
                pipe.hdel(k.job_tasks, *jobs)
                pipe.hdel(k.job_counts, *[f"{j}:{s}" for j in jobs for s in states])
                pipe.zrem(k.jobs_by_time, *jobs)
                pipe.execute()
            trimmed += len(jobs)
        return trimmed

    def pending_count(self, object_type: ObjectType) -> int:
        """How many paths of one type wait."""
        return int(self._redis.zcard(self.keys.of(object_type).pending))

    def has_pending(self) -> list[ObjectType]:
        """The types that have pending paths."""
        return [t for t in OBJECT_TYPES if self.pending_count(t)]


def _time_arg(now: float | None) -> str:
    # An empty argument tells the script to read Redis's own clock.
    return "" if now is None else repr(now)


def _batch_from_json(raw: str) -> Batch:
    data = json.loads(raw)
    return Batch(
        id=data["id"],
        object_type=data["object_type"],
        paths=tuple(data["paths"]),
        waiters=tuple(data["waiters"]),
    )
