"""One path's story (``lookup``), the dead-letter set, and replaying it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

from cdn_refresh.constants import ObjectType
from cdn_refresh.store import scripts
from cdn_refresh.store.batches import BatchStore
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.records import (
    CredentialProblem,
    DeadLetter,
    PathInfo,
    PathLookup,
    PathState,
    SubmissionRecord,
)
from cdn_refresh.store.tracking import TrackingStore

# Paths per replay script call.
REPLAY_CHUNK = 2_000


class PathStore:
    """Reads a path's state and records; moves dead letters back to pending."""

    def __init__(self, ctx: StoreContext, batches: BatchStore, tracking: TrackingStore) -> None:
        self._ctx = ctx
        self._batches = batches
        self._tracking = tracking

    def lookup(self, path: str, object_type: ObjectType) -> PathLookup:
        """Where one normalized path stands: pending, in flight, submitted or failed."""
        k, tk = self._ctx.keys.shared, self._ctx.keys.of(object_type)
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(tk.pending, path)
            pipe.zscore(tk.cooling, path)
            pipe.hget(tk.pathinfo, path)
            pipe.hget(tk.records, path)
            pipe.hget(tk.dead, path)
            pipe.get(k.auth_error)
            pending, cooling, info_raw, record_raw, dead_raw, auth_raw = pipe.execute()
        info = PathInfo.decode(info_raw)
        record = SubmissionRecord.decode(record_raw)
        dead = DeadLetter.decode(path, object_type, dead_raw)
        if pending is not None or cooling is not None:
            state = PathState.PENDING
        elif self._batches.in_flight(path, object_type):
            state = PathState.IN_FLIGHT
        elif dead and (record is None or (dead.failed_at or 0) >= record.submitted_at):
            # Both can exist for a path enqueued again: the newer outcome is its state.
            state = PathState.FAILED
        elif record:
            state = PathState.SUBMITTED
        else:
            state = PathState.UNKNOWN
        last_error = (dead.code if dead else "") or (info.last_error if info else "") or None
        problem = CredentialProblem.decode(auth_raw)
        if problem and state in (PathState.PENDING, PathState.IN_FLIGHT):
            last_error = problem.describe()
        attempts = (
            (dead.attempts if dead else 0)
            or (info.attempts if info else 0)
            or (record.attempts if record else 0)
        )
        tasks, completed_at = self._tasks_of(record)
        if state is PathState.SUBMITTED and completed_at is not None:
            state = PathState.COMPLETE
        return PathLookup(
            path=path,
            object_type=object_type,
            state=state,
            task_id=",".join(tasks) or None,
            request_id=(record.request_id or None) if record else None,
            submitted_at=record.submitted_at if record else None,
            attempts=attempts,
            last_error=last_error,
            submissions=record.submissions if record else (),
            covered_by=record.covered_by if record else None,
            cooling_until=float(cooling) if cooling is not None and pending is None else None,
            completed_at=completed_at if state is PathState.COMPLETE else None,
        )

    def _tasks_of(self, record: SubmissionRecord | None) -> tuple[tuple[str, ...], float | None]:
        """A path's own task (once the provider said which; a covered path's is its
        Directory's), else every task of its call; and when they all ended Complete."""
        if record is None:
            return (), None
        tasks = record.task_ids
        if record.task_id:
            tasks = (record.task_id,)
        elif record.covered_by:
            raw = self._ctx.redis.hget(
                self._ctx.keys.of(ObjectType.DIRECTORY).records, record.covered_by
            )
            directory = SubmissionRecord.decode(cast(str | None, raw))
            if directory and directory.task_id and directory.task_id in record.task_ids:
                tasks = (directory.task_id,)
        ends = self._tracking.ends(tasks)
        if tasks and all(t in ends and ends[t].status == "Complete" for t in tasks):
            return tasks, max(ends[t].at for t in tasks)
        return tasks, None

    def dead_letters(self, object_types: Iterable[ObjectType]) -> Iterator[DeadLetter]:
        """Every dead-lettered path with its last error."""
        for kind in object_types:
            for path, raw in self._ctx.redis.hscan_iter(self._ctx.keys.of(kind).dead, count=500):
                entry = DeadLetter.decode(path, kind, raw)
                if entry is not None:
                    yield entry

    def dead_paths(self, object_type: ObjectType) -> list[str]:
        """The dead-lettered paths of one type."""
        dead = self._ctx.keys.of(object_type).dead
        return [p for p, _ in self._ctx.redis.hscan_iter(dead, count=1000)]

    def replay(self, paths: list[str], object_type: ObjectType, rank: int) -> int:
        """Move dead-lettered ``paths`` back to pending with the jobs that waited on them;
        returns how many were dead-lettered."""
        replayed = 0
        for start in range(0, len(paths), REPLAY_CHUNK):
            replayed += int(
                self._ctx.scripts.run(
                    scripts.REPLAY, [rank, *paths[start : start + REPLAY_CHUNK]], object_type
                )
            )
        return replayed
