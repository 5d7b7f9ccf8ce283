"""Batches in flight: claim (with the quota reservation), submit, release, reclaim.

The Redis side is ``lua/claim.lua``, ``lua/submit.lua`` and ``lua/release.lua``; this module
passes them their arguments and turns their answers into records.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from cdn_refresh.constants import (
    BULK_RANK_OFFSET,
    MAX_MESSAGE_CHARS,
    PROVIDER_COUNT_MARGIN_S,
    REPEAT_RANK_OFFSET,
    ObjectType,
)
from cdn_refresh.operations import (
    OPERATIONS,
    Operation,
    covered_by,
    daily_quota,
    domains_per_call,
    paths_per_call,
)
from cdn_refresh.provider_day import last_reset
from cdn_refresh.settings import Settings
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext, time_arg
from cdn_refresh.store.keys import keeps_coverage_index
from cdn_refresh.store.metrics import CallSample, call_increments, submitted_field
from cdn_refresh.store.records import Batch, Coverage, Release, Settled, Wait, WaitReason

# How many pending paths one claim may look at to fill a batch within the domain limit.
SCAN_LIMIT = 20_000
# Submissions a path's record keeps (the latest and the ones before it), for ``lookup``.
SUBMISSION_HISTORY = 10
# Index entries one run of ``cover.lua`` reads under a batch's Directories: each run is
# short, so that other clients never wait long on Redis; runs repeat until all is covered.
COVER_STEP = 5_000
# Paths one batch covers at most: its submit (or release) settles them in one script, which
# must stay well under a second. What lies beyond waits, and goes by itself or under a later
# Directory (promotion chooses it again while the File window is short).
COVER_LIMIT = 50_000


def claim_args(s: Settings, op: Operation, now: float | None, owner: str) -> dict[str, Any]:
    """``claim.lua``'s arguments by name: ``now`` (``None``: Redis's clock), this worker's
    settings, the operation's row (its limits) and the batch's ``owner``."""
    # Only a path some operation covers waits for a pending covering path (a File under a
    # Directory); the script skips the check for the others. The coverage keys it reads are
    # the paired operation's (``other.*``), so the limit it checks is that one's too.
    covering = covered_by(op.name)
    return {
        "now": time_arg(now),
        "window_s": repr(s.quota.window_s),
        "limit": daily_quota(s, op.name),
        # A share: the script takes it of the stored limit (quota --set-url-quota).
        "reserve_share": repr(s.quota.interactive_reserve),
        "max_paths": paths_per_call(s, op),
        "max_domains": domains_per_call(s, op),
        "lease_s": repr(s.flush.batch_lease_s),
        "bulk_floor": BULK_RANK_OFFSET,
        "object_type": str(op.name),
        "scan_limit": SCAN_LIMIT,
        "cooldown_s": repr(s.quota.refresh_cooldown_s),
        "file_claim": "1" if covering else "0",
        # The covering operation's limit and reserve (a File's Directories); unread without.
        "covering_limit": daily_quota(s, covering[0]) if covering else 0,
        "covering_reserve": repr(s.quota.interactive_reserve),
        "last_reset": repr(last_reset(time.time() if now is None else now)),
        "count_margin_s": repr(PROVIDER_COUNT_MARGIN_S),
        "owner": owner,
    }


class BatchStore:
    """Claims, settles and reclaims batches for every worker on every host."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def claim(
        self,
        object_type: ObjectType,
        now: float | None = None,
        *,
        owner: str = "",
        token: str | None = None,
    ) -> Batch | Wait | None:
        """Claim the next batch and reserve its quota; ``None`` when nothing is pending.

        ``now`` defaults to Redis's clock, which every worker on every host shares. A File
        under a pending Directory that can go now is left for that Directory to cover.
        ``owner`` names the worker process whose heartbeat keeps the batch its own
        (:mod:`~cdn_refresh.store.liveness`). Each claim carries a fresh ``token``: when
        its reply is lost and redis-py sends it again, the retry gets the batch the first
        run took instead of claiming a second one that nobody would own.
        """
        answer = self._ctx.scripts.run(
            scripts.CLAIM,
            claim_args(self._ctx.settings, OPERATIONS[object_type], now, owner),
            object_type,
            extra_keys={"claim_token": self._ctx.keys.claim_token(token or uuid.uuid4().hex)},
        )
        if answer[0] == "empty":
            return None
        if answer[0] == "wait":
            return Wait(WaitReason(answer[1]), float(answer[2]))
        return Batch.decode(answer[2])

    def cover(self, batch: Batch) -> Coverage | None:
        """Move the pending paths under a claimed Directory batch into it (settled with it,
        or sent back with it). Returns the batch as it now stands, or ``None`` when it was
        settled or reclaimed meanwhile (then it must not be sent)."""
        files = directories = nested = 0
        more = True
        while more:
            answer = self._ctx.scripts.run(
                scripts.COVER,
                {
                    "id": batch.id,
                    "budget": COVER_STEP,
                    "cap": COVER_LIMIT,
                    "bulk_floor": BULK_RANK_OFFSET,
                    "repeat_offset": REPEAT_RANK_OFFSET,
                },
                batch.object_type,
            )
            if answer[0] == "gone":
                return None
            files += int(answer[0])
            directories += int(answer[1])
            nested += int(answer[2])
            more = int(answer[3]) == 1
            if answer[4]:
                batch = Batch.decode(answer[4])
            if more:
                self.extend_lease(batch.id)
        return Coverage(batch, files, directories, nested)

    def submit(
        self,
        batch: Batch,
        paths: tuple[str, ...],
        task_ids: tuple[str, ...],
        request_id: str,
        now: float | None = None,
        *,
        calls: Sequence[CallSample] = (),
    ) -> Settled:
        """Record ``paths`` of ``batch`` (all of them when empty) as submitted.

        Settles nothing when the batch's lease ran out first and its paths went back to
        pending (a stalled worker): then, see :meth:`record_late`. ``calls`` are the
        provider calls this answer ends, for the metrics counters. The call is tracked to
        completion.
        """
        answer = self._submit(batch, "batch", paths, task_ids, request_id, now, calls)
        return Settled(int(answer[0]), 0, int(answer[1]), int(answer[2]))

    def record_late(
        self, batch: Batch, paths: tuple[str, ...], task_ids: tuple[str, ...], request_id: str
    ) -> None:
        """Keep the task IDs of an answer that came after its batch was reclaimed (the
        paths are pending again and may go out again)."""
        self._submit(batch, "late", paths or batch.paths, task_ids, request_id, None, ())

    def _submit(
        self,
        batch: Batch,
        mode: str,
        paths: tuple[str, ...],
        task_ids: tuple[str, ...],
        request_id: str,
        now: float | None,
        calls: Sequence[CallSample],
    ) -> Any:
        op = OPERATIONS[batch.object_type]
        # Paths the batch covers count as the operation they are (the script calls that
        # counter "File": the one covered operation there is).
        covered = op.covers[0] if op.covers else op.name
        info = {
            "task_ids": list(task_ids),
            "request_id": request_id,
            "history": SUBMISSION_HISTORY,
            "metrics": call_increments(batch.object_type, calls),
            "submitted_fields": {
                "own": submitted_field(batch.object_type),
                "File": submitted_field(covered),
            },
        }
        # A late answer's paths are pending again: only the batch's own answer is tracked,
        # and only of an operation whose calls are tracked.
        if mode == "batch" and op.tracked:
            info["track_after"] = self._ctx.settings.tracking.task_first_check_s
        return self._ctx.scripts.run(
            scripts.SUBMIT,
            {
                "id": batch.id,
                "now": time_arg(now),
                "info": json.dumps(info),
                "mode": mode,
                "paths": paths,
            },
            batch.object_type,
        )

    def release(
        self,
        batch_id: str,
        object_type: ObjectType,
        release: Release,
        now: float | None = None,
        *,
        paths: tuple[str, ...] = (),
        code: str = "",
        message: str = "",
        return_quota: bool = False,
        only_if_lease_expired: bool = False,
        calls: Sequence[CallSample] = (),
    ) -> Settled:
        """Send ``paths`` of a batch (all of it when empty) back to pending or into the
        dead-letter set; see ``lua/release.lua``. ``calls`` are the provider calls this
        answer ends, for the metrics counters."""
        info = {
            "code": code,
            "message": message[:MAX_MESSAGE_CHARS],
            "return_quota": return_quota,
            "max_attempts": self._ctx.settings.retry.max_attempts,
            "only_if_lease_expired": only_if_lease_expired,
            "metrics": call_increments(object_type, calls),
        }
        answer = self._ctx.scripts.run(
            scripts.RELEASE,
            {
                "id": batch_id,
                "now": time_arg(now),
                "mode": release.value,
                "info": json.dumps(info),
                "paths": paths,
            },
            object_type,
        )
        return Settled(int(answer[0]), int(answer[1]), int(answer[2]))

    def extend_lease(self, batch_id: str, now: float | None = None) -> None:
        """Keep a batch ours while a long piece of work (a split) goes on."""
        now = self._ctx.now() if now is None else now
        lease = now + self._ctx.settings.flush.batch_lease_s
        self._ctx.redis.zadd(self._ctx.keys.shared.leases, {batch_id: lease}, xx=True)

    def expired(self, now: float | None = None) -> list[tuple[str, ObjectType]]:
        """Batches whose lease ran out: their worker died or hung mid-call."""
        k = self._ctx.keys.shared
        now = self._ctx.now() if now is None else now
        ids = cast(list[str], self._ctx.redis.zrangebyscore(k.leases, "-inf", now))
        if not ids:
            return []
        found: list[tuple[str, ObjectType]] = []
        raws = cast(list[str | None], self._ctx.redis.hmget(k.batches, ids))
        for batch_id, raw in zip(ids, raws, strict=True):
            if raw is not None:  # else settled between the two reads
                found.append((batch_id, Batch.decode(raw).object_type))
        return found

    def in_flight(self, path: str, object_type: ObjectType) -> bool:
        """Whether ``path`` is in a batch in flight, or covered by a Directory in flight."""
        # Batches in flight are few (one per busy worker process): a scan is cheap.
        k = self._ctx.keys.shared
        for _, raw in self._ctx.redis.hscan_iter(k.batches, count=100):
            batch = Batch.decode(raw)
            if batch.object_type == object_type and path in batch.paths:
                return True
        # A covering batch keeps what it covers as "files" and its own kind's as "dirs".
        group = "files" if covered_by(object_type) else "dirs"
        for field, raw in self._ctx.redis.hscan_iter(k.covered, count=10):
            directory = field.split("|", 1)[1].rsplit("|", 1)[0]  # "batch|directory|step"
            if path.startswith(directory) and path in json.loads(raw)[group]["paths"]:
                return True
        return False

    def repair_coverage_index(self) -> int:
        """Put every pending path of an operation that keeps a coverage index (Directories,
        ``keys.keeps_coverage_index``) into it (``pending_lex``) when the two disagree in
        size, as after an upgrade from a version without the index. Returns how many paths
        were added. The Files keep no index (``lua/cover.lua`` scans them)."""
        added = 0
        for kind in (k for k in OPERATIONS if keeps_coverage_index(k)):
            tk = self._ctx.keys.of(kind)
            if self._ctx.redis.zcard(tk.pending) == self._ctx.redis.zcard(tk.pending_lex):
                continue
            batch: list[str] = []
            for path, _ in self._ctx.redis.zscan_iter(tk.pending, count=1000):
                batch.append(path)
                if len(batch) >= 1000:
                    added += self._index(tk.pending_lex, batch)
                    batch = []
            added += self._index(tk.pending_lex, batch)
        return added

    def _index(self, key: str, paths: list[str]) -> int:
        if not paths:
            return 0
        return cast(int, self._ctx.redis.zadd(key, dict.fromkeys(paths, 0)))

    def count(self) -> int:
        """How many batches are in flight."""
        return int(self._ctx.redis.hlen(self._ctx.keys.shared.batches))
