"""One path's story (``lookup``), the dead-letter set, and replaying it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import cast

from cdn_refresh.constants import ObjectType
from cdn_refresh.operations import OPERATIONS, Operation, covered_by
from cdn_refresh.store import scripts
from cdn_refresh.store.batches import BatchStore
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.places import PlaceStore
from cdn_refresh.store.records import (
    CredentialProblem,
    DeadLetter,
    PathInfo,
    PathLookup,
    PathState,
    SubmissionRecord,
)
from cdn_refresh.store.states import LOOKUP_ORDER, WAITING_STATES
from cdn_refresh.store.tracking import TrackingStore

# Paths per replay script call.
REPLAY_CHUNK = 2_000


class PathStore:
    """Reads a path's state and records; moves dead letters back to pending."""

    def __init__(self, ctx: StoreContext, batches: BatchStore, tracking: TrackingStore) -> None:
        self._ctx = ctx
        self._places = PlaceStore(ctx)
        self._batches = batches
        self._tracking = tracking

    def lookup(self, path: str, object_type: ObjectType) -> PathLookup:
        """Where one normalized path stands: pending (with its place in the queue), in
        flight, submitted, complete, failed, or unknown (with a near spelling that is
        known, if any: the other scheme, the other type)."""
        found = self._lookup(path, object_type)
        if found.state is PathState.PENDING and found.cooling_until is None:
            return replace(found, place=self._places.of_path(path, object_type))
        if found.state is PathState.UNKNOWN:
            return replace(found, hint=self._hint(path, object_type))
        return found

    def _hint(self, path: str, object_type: ObjectType) -> str | None:
        """``try <path> (<type>, <state>)`` for the first near spelling that is known."""
        for near, kind in near_spellings(path, object_type):
            state = self._lookup(near, kind).state
            if state is not PathState.UNKNOWN:
                return f"never seen as {object_type}; known: {near} ({kind}, {state})"
        return None

    def _lookup(self, path: str, object_type: ObjectType) -> PathLookup:
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
        # Whether each state's keys hold the path, asked in the table's order (the batches
        # are scanned only when the path is not pending).
        held: dict[PathState, Callable[[], bool]] = {
            PathState.PENDING: lambda: pending is not None or cooling is not None,
            PathState.IN_FLIGHT: lambda: self._batches.in_flight(path, object_type),
            # Both can exist for a path enqueued again: the newer outcome is its state.
            PathState.FAILED: lambda: (
                dead is not None
                and (record is None or (dead.failed_at or 0) >= record.submitted_at)
            ),
            PathState.SUBMITTED: lambda: record is not None,
        }
        state = next((s for s, _ in LOOKUP_ORDER if held[s]()), PathState.UNKNOWN)
        last_error = (dead.code if dead else "") or (info.last_error if info else "") or None
        problem = CredentialProblem.decode(auth_raw)
        if problem and state in WAITING_STATES:
            last_error = problem.describe()
        attempts = (
            (dead.attempts if dead else 0)
            or (info.attempts if info else 0)
            or (record.attempts if record else 0)
        )
        tasks, completed_at = self._tasks_of(record, object_type)
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

    def _tasks_of(
        self, record: SubmissionRecord | None, object_type: ObjectType
    ) -> tuple[tuple[str, ...], float | None]:
        """A path's own task (once the provider said which; a covered path's is its
        Directory's), else every task of its call; and when they all ended Complete."""
        if record is None:
            return (), None
        tasks = record.task_ids
        if record.task_id:
            tasks = (record.task_id,)
        elif record.covered_by:
            # The covering path's record is under an operation that covers this one.
            for kind in covered_by(object_type):
                raw = self._ctx.redis.hget(self._ctx.keys.of(kind).records, record.covered_by)
                covering = SubmissionRecord.decode(cast(str | None, raw))
                if covering and covering.task_id and covering.task_id in record.task_ids:
                    tasks = (covering.task_id,)
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
                    scripts.REPLAY,
                    {
                        "rank": rank,
                        "object_type": object_type.value,
                        "paths": paths[start : start + REPLAY_CHUNK],
                    },
                    object_type,
                )
            )
        return replayed


def near_spellings(path: str, object_type: ObjectType) -> list[tuple[str, ObjectType]]:
    """Normalized paths a user may have meant: the other scheme, another type (a Directory
    ends with ``/``, an IgnoreParams URL has no query), and both. A regular expression is
    only ever near its other scheme."""
    scheme, sep, rest = path.partition("://")
    other = {"http": "https", "https": "http"}.get(scheme)
    schemes = [path] + ([f"{other}{sep}{rest}"] if other else [])
    found: list[tuple[str, ObjectType]] = [(p, object_type) for p in schemes[1:]]
    own = OPERATIONS[object_type]
    for op in OPERATIONS.values():
        if op.name is not object_type and not (op.pattern_path or own.pattern_path):
            found += [(p, op.name) for p in _spelled_as(schemes, own, op)]
    return [(p, k) for p, k in dict.fromkeys(found) if p != path or k != object_type]


def _spelled_as(schemes: list[str], own: Operation, op: Operation) -> list[str]:
    """``schemes`` (paths of ``own``) as paths of ``op`` would be spelled."""
    if op.prefix_path:
        return [p if p.endswith("/") else p + "/" for p in schemes if "?" not in p]
    if own.prefix_path:
        return schemes + [p.rstrip("/") for p in schemes]
    return [p.partition("?")[0] for p in schemes] if op.query_ignored else schemes
