"""Which worker processes are alive, and the batches of those that are not (issue 13).

Each worker process refreshes a heartbeat with a short TTL (``worker/heartbeat.py``); a
claim names the process that made it (``lua/claim.lua`` writes ``batch_owners``). A batch
whose owner's heartbeat ran out is orphaned: its owner died mid-call, and the batch may be
sent again at once instead of after ``BATCH_LEASE_S``. The Redis side is
``lua/heartbeat.lua`` and ``lua/orphaned.lua``; both run on Redis's clock.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from typing import cast

from cdn_refresh.constants import ObjectType
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext, time_arg
from cdn_refresh.store.records import Batch

# The schema of the state in Redis this release reads and writes: raised when a release
# writes what an older worker would misread (then the two must not run side by side). 1 is
# release 1628e5c and before, which registered none; 2 added job states `submitted` and
# `incomplete`, stored quota limits, repeat ranks, dot segments removed, the webhook queue; 3
# keys waiters by a digest of the path and keeps no File coverage index (store/digesting.py):
# a worker of schema 2 would neither find nor index what one of schema 3 writes.
SCHEMA = 3


class OlderWorkerError(RuntimeError):
    """A worker of an older release is alive on this Redis: a current one must not join it."""


def new_owner_id() -> str:
    """A name for this worker process that no other process, here or elsewhere, will use:
    host and pid for the operator, a random tail because pids are reused."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def node_id(pid: int | None = None) -> str:
    """A worker's main process (``pid``, default this one), as its pool processes name it
    (their parent's pid)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


class LivenessStore:
    """Heartbeats of worker processes, and the batches their death left behind."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def beat(self, owner: str, ttl_s: float) -> float:
        """``owner`` is alive for ``ttl_s`` more seconds; returns when that runs out. Its
        schema is written first, so that no reader sees its heartbeat without it."""
        self._ctx.redis.hset(self._ctx.keys.shared.worker_schemas, owner, SCHEMA)
        answer = self._ctx.scripts.run(scripts.HEARTBEAT, {"owner": owner, "ttl_s": repr(ttl_s)})
        return float(answer)

    def leave(self, owner: str) -> None:
        """``owner`` stops (a warm shutdown): its heartbeat goes now, not after its TTL."""
        self._ctx.scripts.run(scripts.HEARTBEAT, {"owner": owner, "ttl_s": "0"})
        self._ctx.redis.hdel(self._ctx.keys.shared.worker_schemas, owner)

    def older_workers(self) -> list[str]:
        """Worker processes alive now that run an older schema than this release (one of
        release 1628e5c or before registers none). The schemas of processes whose heartbeat
        ran out are forgotten; one with no heartbeat yet is not: it may be starting (it writes
        its schema, then its heartbeat)."""
        k = self._ctx.keys.shared
        now = repr(self._ctx.now())
        # One transaction: the schemas and the heartbeats are read at the same moment.
        with self._ctx.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.worker_schemas)
            pipe.zrangebyscore(k.heartbeats, f"({now}", "+inf")
            pipe.zrangebyscore(k.heartbeats, "-inf", now)
            schemas, alive, ran_out = pipe.execute()
        gone = [owner for owner in cast(list[str], ran_out) if owner in schemas]
        if gone:
            self._ctx.redis.hdel(k.worker_schemas, *gone)
        return sorted(o for o in cast(list[str], alive) if int(schemas.get(o) or 1) < SCHEMA)

    def check_no_older_worker(self) -> None:
        """Raise :class:`OlderWorkerError` while a worker of an older release is alive: the
        two read each other's state wrongly (docs/operations.md, "Upgrades")."""
        older = self.older_workers()
        if older:
            shown = ", ".join(older[:3]) + (f" and {len(older) - 3} more" if len(older) > 3 else "")
            raise OlderWorkerError(
                f"a worker of an older release is running on this Redis ({shown}): stop every "
                "older worker first (they must not run beside this release; docs/operations.md "
                '"Upgrades"), then start this one'
            )

    def request_stop(self, node: str, ttl_s: float) -> None:
        """The worker ``node`` stops: its pool processes claim no more (for ``ttl_s``, in
        case the node comes back under the same pid)."""
        self._ctx.redis.set(self._ctx.keys.stop_request(node), "1", px=max(1, int(ttl_s * 1000)))

    def stop_requested(self, node: str) -> bool:
        """Whether the worker ``node`` was told to stop."""
        return bool(self._ctx.redis.exists(self._ctx.keys.stop_request(node)))

    def alive(self, owner: str) -> bool:
        """Whether ``owner``'s heartbeat still runs."""
        expires = self._ctx.redis.zscore(self._ctx.keys.shared.heartbeats, owner)
        return expires is not None and float(expires) > self._ctx.now()

    def orphaned(self, now: float | None = None) -> list[tuple[str, ObjectType]]:
        """Batches in flight whose owner's heartbeat is gone (it also forgets the owners of
        settled batches and the heartbeats that ran out)."""
        answer = self._ctx.scripts.run(scripts.ORPHANED, {"now": time_arg(now)})
        return [(answer[i], ObjectType(answer[i + 1])) for i in range(0, len(answer), 2)]

    def still_owned(self, owner: str, batch_ids: Sequence[str]) -> list[tuple[str, ObjectType]]:
        """Which of ``batch_ids`` are in flight in ``owner``'s name. A batch its owner has
        let go of but Redis still holds lost its settle (a failover to a replica that had
        not received it yet): nobody else would ever take it before its lease runs out."""
        if not batch_ids:
            return []
        k = self._ctx.keys.shared
        owners = cast(list[str | None], self._ctx.redis.hmget(k.batch_owners, list(batch_ids)))
        mine = [b for b, o in zip(batch_ids, owners, strict=True) if o == owner]
        if not mine:
            return []
        raws = cast(list[str | None], self._ctx.redis.hmget(k.batches, mine))
        return [(b, Batch.decode(r).object_type) for b, r in zip(mine, raws, strict=True) if r]
