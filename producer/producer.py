"""The producer API for backend services: validate, normalize, enqueue; ask about jobs/paths.

Enqueue runs in two passes (:mod:`producer.enqueue`) so that a bad path rejects the whole
request before anything is written. What it answers is in :mod:`producer.receipts`; an
enqueue once per Idempotency-Key, with its callback, in :mod:`producer.idempotent`. Every
read a caller needs is a named method here: the store stays private.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import replace
from typing import IO, Any, cast

import redis

from cdn_refresh.constants import OBJECT_TYPES, ObjectType, Priority
from cdn_refresh.documents import quota_document
from cdn_refresh.paths import InvalidPathError, normalize_path
from cdn_refresh.planning import days_to_drain
from cdn_refresh.settings import Settings
from cdn_refresh.store import JobNotFoundError, RedisEvictsError, Store
from cdn_refresh.store.jobs import JobStore
from cdn_refresh.store.records import (
    DeadLetter,
    JobHeader,
    JobState,
    JobStatus,
    PathLookup,
    QuotaUsage,
)
from cdn_refresh.store.tracking import TaskEnd
from producer import enqueue, idempotent
from producer.idempotent import Answers, RefreshOrder, Reply
from producer.notify import FlushNotifier
from producer.receipts import (
    EnqueueInterruptedError,
    EnqueueRejectedError,
    Receipt,
    RedisRefusesWritesError,
    Rejection,
)

__all__ = [
    "EnqueueInterruptedError",
    "EnqueueRejectedError",
    "FlushNotifier",
    "JobNotFoundError",
    "Producer",
    "Receipt",
    "RedisEvictsError",
    "RedisRefusesWritesError",
    "Rejection",
]

log = logging.getLogger("cdn_refresh.producer")
# Pending work of one type beyond this many days of quota makes the receipt warn.
BACKLOG_WARNING_DAYS = 30


class Producer:
    """Enqueues refresh requests and answers questions about them."""

    def __init__(
        self,
        store: Store,
        *,
        notify: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = store.settings
        self._clock = clock
        self._notify = notify
        self._allowed: frozenset[str] = frozenset(self._settings.provider.allowed_domains)

    @classmethod
    def from_settings(cls, settings: Settings, *, notify_workers: bool = True) -> Producer:
        """A producer on ``CDN_REFRESH_REDIS_URL`` that wakes the workers after each enqueue."""
        store = Store.from_settings(settings)
        notify = FlushNotifier(store) if notify_workers else None
        return cls(store, notify=notify)

    def close(self) -> None:
        """Release the Redis connections (and the workers' wake-up channel)."""
        if isinstance(self._notify, FlushNotifier):
            self._notify.close()
        self._store.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(
        self,
        paths: Iterable[str],
        object_type: ObjectType | str = ObjectType.FILE,
        priority: Priority | str = Priority.INTERACTIVE,
        *,
        skip_invalid: bool = False,
        progress: Callable[[str, int], None] | None = None,
        job_id: str | None = None,
        resumed: int | None = None,
    ) -> Receipt:
        """Validate and enqueue ``paths`` as one job.

        Raises :class:`EnqueueRejectedError` (nothing enqueued) if a path is invalid, unless
        ``skip_invalid``: then the valid paths go in and the receipt lists the rest.
        Raises :class:`EnqueueInterruptedError` if Redis fails part way (its receipt says
        what went in), and :class:`RedisEvictsError` (nothing read, nothing enqueued) when
        Redis may evict keys (docs/behaviour.md "Redis must not evict"). ``progress(phase, n)``
        reports ``n`` more inputs handled in phase ``"validated"`` or ``"enqueued"``.
        ``job_id``: one reserved beforehand (the HTTP API registers a callback or an
        Idempotency-Key under it before the job exists); by default a fresh one.
        ``resumed``: ``job_id`` is a job whose enqueue died after its first ``resumed`` valid
        paths went in, and ``paths`` are the rest: the job keeps its header (its time, its
        place, the paths asked for), whose counts grow by what this enqueue adds.
        """
        kind, rank_priority = _object_type(object_type), _priority(priority)
        # Read once a minute, not at each enqueue: an evicting Redis would drop what we accept.
        self._store.eviction.check()
        self._check_writable()
        receipt = Receipt(job_id="")
        with tempfile.SpooledTemporaryFile(
            max_size=enqueue.SPOOL_MEMORY_BYTES, mode="w+", encoding="utf-8", newline="\n"
        ) as spool:
            valid = enqueue.validate(paths, kind, self._allowed, receipt, spool, progress)
            if receipt.rejected_count and not skip_invalid:
                raise EnqueueRejectedError(receipt)
            if valid == 0:
                return receipt
            spool.seek(0)
            header = JobHeader(
                job_id=job_id or self._store.jobs.new_id(),
                object_type=kind,
                priority=rank_priority,
                created_at=self._clock(),
                paths=valid,
                rejected=receipt.rejected_count,
            )
            base = (0, 0) if resumed is None else self._carry_over(header, resumed)
            enqueue.write(self._store.jobs, cast(IO[str], spool), header, receipt, progress, base)
        try:
            self._warn_of_backlog(kind, receipt)
        except redis.RedisError as exc:
            # The job is in: failing now would make a caller retry what is already queued.
            log.warning("could not measure the backlog (%s); the job is enqueued", exc)
        if self._notify is not None:
            self._notify()
        return receipt

    def _check_writable(self) -> None:
        # Before any input is read: a Redis that refuses writes says so at once, not after a
        # million lines were validated.
        try:
            self._store.jobs.check_writable()
        except (redis.ResponseError, redis.ReadOnlyError) as exc:
            raise RedisRefusesWritesError(exc) from exc

    def _carry_over(self, header: JobHeader, resumed: int) -> tuple[int, int]:
        """Give ``header`` (of a resumed job) what the job's first header said: its time
        (and so its place), the paths and rejections of the request. The (accepted,
        duplicates) the job had: as its header said when its enqueue ended there, else
        (the enqueue was killed) the paths the job counts, of the ``resumed`` that went in."""
        before = self._store.jobs.header(header.job_id)
        if before is None:
            return 0, 0
        header.created_at, header.paths = before.created_at, max(before.paths, header.paths)
        header.rejected = max(before.rejected, header.rejected)
        if before.complete:
            return before.accepted, before.duplicates
        counted = self._store.jobs.paths_counted(header.job_id)
        return counted, max(0, resumed - counted)

    def refresh(self, order: RefreshOrder, key: tuple[str, str] | None, answers: Answers) -> Reply:
        """Enqueue ``order`` once per Idempotency-Key ``key`` (scope, key sent; None: no key),
        registering its callback: see :mod:`producer.idempotent`. Raises
        :class:`CallbackNotAllowedError` and :class:`IdempotencyConflictError`."""
        return idempotent.refresh(self, self._store, order, key, answers)

    def finish_resumed(self, job_id: str, resumed: int) -> JobHeader:
        """Close a job every path of which is in already (its enqueue died before it could
        say so): its header, as if its enqueue had ended."""
        header = self._store.jobs.header(job_id)
        if header is None:
            raise JobNotFoundError(job_id)
        fresh = replace(header, complete=False, incomplete=False, error="")
        fresh.accepted, fresh.duplicates = self._carry_over(fresh, resumed)
        self._store.jobs.close(fresh)
        return fresh

    def split_valid(
        self, paths: list[str], object_type: ObjectType | str, count: int
    ) -> tuple[int, int]:
        """Where the first ``count`` valid paths of ``paths`` end (an index), and how many
        valid paths come after: what a resumed enqueue with ``skip_invalid`` skips."""
        kind = _object_type(object_type)
        cut, valid = 0, 0
        for index, raw in enumerate(paths):
            try:
                normalize_path(raw, kind, self._allowed)
            except InvalidPathError:
                continue
            valid += 1
            if valid == count:
                cut = index + 1
        if valid < count:
            cut = len(paths)
        return cut, max(0, valid - count)

    def _warn_of_backlog(self, object_type: ObjectType, receipt: Receipt) -> None:
        # The window and limit every worker runs on (stored by the first claim, or changed
        # with `quota --set-window` / `--set-url-quota`), not this process's settings.
        pending, window, quota = self._store.quota.backlog(object_type)
        days = days_to_drain(pending, quota, window)
        if days is not None and days <= BACKLOG_WARNING_DAYS:
            return
        receipt.backlog_days = days
        needed = (
            "never go: their quota is 0"
            if days is None
            else f"need about {days:,.0f} days of quota ({quota:,} per window)"
        )
        receipt.warning = (
            f"{object_type.label} paths pending {needed}: consider directories, or a larger quota"
        )
        log.warning("%s", receipt.warning)

    def status(self, job_id: str) -> JobStatus:
        """A job's state, counts by state and task IDs (``to_dict()``: ``status --json``)."""
        return self._store.jobs.status(job_id)

    def lookup(self, path: str, object_type: ObjectType | str = ObjectType.FILE) -> PathLookup:
        """Where one path stands: pending, in flight, submitted (with task IDs) or failed.

        Any spelling finds it: the path is normalized first (InvalidPathError if it cannot be).
        """
        kind = _object_type(object_type)
        return self._store.paths.lookup(normalize_path(path, kind, self._allowed), kind)

    def recent_jobs(self, limit: int, state: JobState | None = None) -> list[JobStatus]:
        """The most recent jobs, newest first (in ``state``, when given): ``jobs --json``."""
        return self._store.jobs.recent(limit, state)

    def quota(self) -> dict[str, Any]:
        """Our count of the rolling quota window: the ``quota --json`` document."""
        return quota_document(self._store)

    def usage(self, object_type: ObjectType | str = ObjectType.FILE) -> QuotaUsage:
        """The quota window of ``object_type`` now: used, remaining, limit."""
        return self._store.quota.usage(_object_type(object_type))

    def task_ends(self, task_ids: Collection[str]) -> dict[str, TaskEnd]:
        """How each of ``task_ids`` ended at the provider (those not ended are absent)."""
        return self._store.tracking.ends(task_ids)

    def queued_paths(self, object_type: ObjectType) -> set[str]:
        """Every path of ``object_type`` still to go out: pending, or cooling down before it
        may be refreshed again (what ``plan`` drains)."""
        paths = set(self._store.promotion.pending_paths(object_type))
        paths.update(self._store.promotion.cooling_paths(object_type))
        return paths

    def daily_limit(self, object_type: ObjectType) -> int:
        """The daily quota of ``object_type`` every worker runs on: the stored one (set by
        the first claim or ``quota --set-url-quota``), not this process's settings."""
        return self._store.quota.effective(object_type)[1]

    def ping(self) -> None:
        """Raise a ``redis.RedisError`` unless Redis answers."""
        self._store.ping()

    def dead_letters(self) -> Iterator[DeadLetter]:
        """Every dead-lettered path with its last error."""
        return self._store.paths.dead_letters(OBJECT_TYPES)

    def replay(
        self, paths: Collection[str] | None = None, object_type: ObjectType | str | None = None
    ) -> int:
        """Return dead-lettered paths (all of them when ``paths`` is None) to pending, with
        the jobs that waited on them, and lift a credential hold: an operator acted."""
        rank = JobStore.rank(self._clock(), Priority.INTERACTIVE)
        types = [_object_type(object_type)] if object_type else list(OBJECT_TYPES)
        if paths is None:
            chosen = {kind: self._store.paths.dead_paths(kind) for kind in types}
        else:
            # Every path is checked before anything moves: a path valid as no type asked for
            # raises here, and nothing is replayed.
            chosen = self._replayable(paths, types)
        replayed = 0
        for kind, kind_paths in chosen.items():
            replayed += self._store.paths.replay(kind_paths, kind, rank)
        self._store.quota.lift_auth_hold()
        if self._notify is not None:
            self._notify()
        return replayed

    def _replayable(
        self, paths: Collection[str], types: list[ObjectType]
    ) -> dict[ObjectType, list[str]]:
        """Each path normalized as every type it is valid as (of ``types``); the first path
        valid as none of them raises its reason for the first type."""
        chosen: dict[ObjectType, list[str]] = {kind: [] for kind in types}
        for raw in paths:
            errors: list[InvalidPathError] = []
            for kind in types:
                try:
                    chosen[kind].append(normalize_path(raw, kind, self._allowed))
                except InvalidPathError as exc:
                    errors.append(exc)
            if len(errors) == len(types):
                raise errors[0]
        return chosen


def _object_type(value: ObjectType | str) -> ObjectType:
    try:
        return ObjectType.parse(str(value))
    except ValueError:
        names = [t.label for t in OBJECT_TYPES]  # or the wire spelling, in any case
        raise ValueError(f"object_type must be one of {names}") from None


def _priority(value: Priority | str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise ValueError(f"priority must be one of {[p.value for p in Priority]}") from None
