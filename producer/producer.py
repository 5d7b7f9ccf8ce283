"""The producer API for backend services: validate, normalize, enqueue; ask about jobs/paths.

Enqueue runs in two passes so that a bad path rejects the whole request before anything is
written: the first normalizes every input into a spool (memory until it grows, then a temp
file), the second streams the spool into Redis in pipelined chunks, two pipelines in flight
so that this process packs one while Redis runs the other (``bench/`` measures both passes).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any, cast

import redis

from cdn_refresh.beat import Beat
from cdn_refresh.constants import OBJECT_TYPES, TASK_FLUSH, ObjectType, Priority
from cdn_refresh.paths import InvalidPathError, normalize_path, shown_path
from cdn_refresh.planning import days_to_drain
from cdn_refresh.settings import Settings
from cdn_refresh.store import (
    JobNotFoundError,
    RedisEvictsError,
    Store,
    broker_transport_options,
    broker_url,
    celery_names,
)
from cdn_refresh.store.jobs import OPEN_JOB_BEAT_S, ChunksRefusedError, JobStore
from cdn_refresh.store.records import DeadLetter, JobHeader, JobStatus, PathLookup

__all__ = [
    "EnqueueInterruptedError",
    "EnqueueRejectedError",
    "JobNotFoundError",
    "Producer",
    "Receipt",
    "RedisEvictsError",
    "RedisRefusesWritesError",
    "Rejection",
]

log = logging.getLogger("cdn_refresh.producer")

# Paths per enqueue script call, and script calls per pipeline round trip.
CHUNK_PATHS = 2_000
CHUNKS_PER_PIPELINE = 4
# Pipelines in flight at once during a large enqueue (one connection and thread each).
PIPELINES_IN_FLIGHT = 2
# Spool in memory up to this size, then on disk: a million paths never sit in a list.
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024
SPOOL_READ_CHARS = 1024 * 1024
# Rejections listed one by one at most; beyond this only the count grows.
MAX_LISTED_REJECTIONS = 10_000
PROGRESS_EVERY = 10_000
# Pending work of one type beyond this many days of quota makes the receipt warn.
BACKLOG_WARNING_DAYS = 30


@dataclass(frozen=True, slots=True)
class Rejection:
    """One input path refused, with its 1-based line (position) and the reason."""

    line: int
    path: str
    reason: str


@dataclass
class Receipt:
    """What an enqueue did. ``job_id`` is empty when nothing was enqueued."""

    job_id: str
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    rejected_count: int = 0
    # The enqueue failed part way: only ``accepted`` paths went in (see ``error``).
    incomplete: bool = False
    error: str = ""
    # Days of quota the pending work of this type needs (None: never, the quota is 0), and a
    # warning when that is long.
    backlog_days: float | None = 0.0
    warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape."""
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [asdict(r) for r in self.rejected],
        }
        if self.incomplete:
            data.update(incomplete=True, error=self.error)
        if self.warning:
            days = None if self.backlog_days is None else round(self.backlog_days, 1)
            data.update(backlog_days=days, warning=self.warning)
        return data


class EnqueueRejectedError(ValueError):
    """Invalid paths rejected the whole request: nothing was enqueued."""

    def __init__(self, receipt: Receipt) -> None:
        first = receipt.rejected[0]
        super().__init__(
            f"{receipt.rejected_count} invalid path(s), nothing enqueued; "
            f"first at line {first.line}: {first.reason}"
        )
        self.receipt = receipt


class RedisRefusesWritesError(RuntimeError):
    """Redis refused the first write of an enqueue (out of memory, a read-only replica):
    nothing was enqueued."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(
            f"Redis refuses writes, nothing enqueued: {cause} (free memory or raise "
            "maxmemory; point CDN_REFRESH_REDIS_URL at the primary)"
        )


class EnqueueInterruptedError(RuntimeError):
    """Redis failed part way through an enqueue: ``receipt`` says what went in.

    The job is closed as incomplete: its accepted paths go out as usual, and its status
    ends (``done`` or ``failed``, with ``"incomplete": true``) instead of staying pending.
    """

    def __init__(self, receipt: Receipt, cause: Exception) -> None:
        super().__init__(
            f"Redis failed after {receipt.accepted} path(s) of job {receipt.job_id or '-'} "
            f"went in: {type(cause).__name__}: {cause}"
        )
        self.receipt = receipt


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
        self._allowed: frozenset[str] = frozenset(self._settings.allowed_domains)

    @classmethod
    def from_settings(cls, settings: Settings, *, notify_workers: bool = True) -> Producer:
        """A producer on ``CDN_REFRESH_REDIS_URL`` that wakes the workers after each enqueue."""
        store = Store.from_settings(settings)
        notify = FlushNotifier(store) if notify_workers else None
        return cls(store, notify=notify)

    @property
    def store(self) -> Store:
        """The store this producer writes to."""
        return self._store

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
            max_size=SPOOL_MEMORY_BYTES, mode="w+", encoding="utf-8", newline="\n"
        ) as spool:
            valid = self._validate(paths, kind, receipt, spool, progress)
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
            self._write(cast(IO[str], spool), header, receipt, progress, base)
        try:
            self._warn_of_backlog(kind, receipt)
        except redis.RedisError as exc:
            # The job is in: failing now would make a caller retry what is already queued.
            log.warning("could not measure the backlog (%s); the job is enqueued", exc)
        if self._notify is not None:
            self._notify()
        return receipt

    def _validate(
        self,
        paths: Iterable[str],
        object_type: ObjectType,
        receipt: Receipt,
        spool: IO[str],
        progress: Callable[[str, int], None] | None,
    ) -> int:
        valid = 0
        allowed = self._allowed
        # Normalized paths go to the spool a block at a time: one write per path would cost
        # as much as the normalization of the common, already canonical path.
        block: list[str] = []
        line = 0
        for line, raw in enumerate(paths, start=1):
            try:
                block.append(normalize_path(raw, object_type, allowed))
            except InvalidPathError as exc:
                receipt.rejected_count += 1
                if len(receipt.rejected) < MAX_LISTED_REJECTIONS:
                    receipt.rejected.append(Rejection(line, shown_path(raw), exc.reason))
            if line % PROGRESS_EVERY == 0:
                valid += _spill(block, spool)
                if progress is not None:
                    progress("validated", PROGRESS_EVERY)
        valid += _spill(block, spool)
        if progress is not None and line % PROGRESS_EVERY:
            progress("validated", line % PROGRESS_EVERY)
        return valid

    def _check_writable(self) -> None:
        # Before any input is read: a Redis that refuses writes says so at once, not after a
        # million lines were validated.
        try:
            self._store.jobs.check_writable()
        except (redis.ResponseError, redis.ReadOnlyError) as exc:
            raise RedisRefusesWritesError(exc) from exc

    def _write(
        self,
        spool: IO[str],
        header: JobHeader,
        receipt: Receipt,
        progress: Callable[[str, int], None] | None,
        base: tuple[int, int] = (0, 0),
    ) -> None:
        """Stream the spool in as ``header``'s job; ``base``: the (accepted, duplicates) it
        had before (a resumed job's)."""
        jobs = self._store.jobs
        receipt.job_id = header.job_id
        rank = JobStore.rank(header.created_at, header.priority)
        jobs.open(header)

        refused: list[list[tuple[int, int]]] = []

        def send(group: list[list[str]]) -> list[tuple[int, int]]:
            try:
                return jobs.enqueue_chunks(header, rank, group)
            except ChunksRefusedError as exc:
                refused.append(exc.done)  # what the refused pipeline took still counts
                raise

        def tally(group: list[list[str]], answers: list[tuple[int, int]]) -> None:
            for accepted, duplicates in answers:
                receipt.accepted += accepted
                receipt.duplicates += duplicates
            if progress is not None:
                progress("enqueued", sum(len(chunk) for chunk in group))

        # The job stays open while this enqueue lives, however long a round trip takes.
        beat = Beat(lambda: jobs.renew(header), OPEN_JOB_BEAT_S, f"job-open-{header.job_id}")
        try:
            with beat:
                _stream(_grouped(_chunks(spool, CHUNK_PATHS), CHUNKS_PER_PIPELINE), send, tally)
        except redis.RedisError as exc:
            for done in refused:
                receipt.accepted += sum(a for a, _ in done)
                receipt.duplicates += sum(d for _, d in done)
            header.accepted = base[0] + receipt.accepted
            header.duplicates = base[1] + receipt.duplicates
            header.error = f"{type(exc).__name__}: {exc}"[:500]
            jobs.abandon(header)
            receipt.incomplete, receipt.error = True, header.error
            raise EnqueueInterruptedError(receipt, exc) from exc
        header.accepted = base[0] + receipt.accepted
        header.duplicates = base[1] + receipt.duplicates
        jobs.close(header)

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


_CELERY_IMPORT = threading.Lock()


class FlushNotifier:
    """Wakes the workers after an enqueue: at once when the system was idle (leading
    edge), else one trailing flush per debounce interval (see ``request_wake_up``)."""

    def __init__(self, store: Store) -> None:
        # Celery's package builds its names on first access, and two threads doing so at
        # once can see it half-built ("cannot import name 'Celery'"): one at a time.
        with _CELERY_IMPORT:
            from celery import Celery

        self._store = store
        self._debounce_s = store.settings.flush_debounce_s
        self._celery = Celery(broker=broker_url(store.settings), set_as_current=False)
        self._celery.conf.task_serializer = "json"
        self._celery.conf.broker_connection_retry_on_startup = True
        self._celery.conf.broker_transport_options = broker_transport_options(store.settings)
        # The workers' queue (KEY_PREFIX's own, or Celery's "celery" for the default prefix).
        self._celery.conf.task_default_queue = celery_names(store.settings).queue

    def close(self) -> None:
        """Release the broker connection pool."""
        self._celery.close()

    def __call__(self) -> None:
        try:
            delay_s = self._store.quota.request_wake_up(self._debounce_s)
            if delay_s is not None:
                # No countdown at all for the leading edge: a countdown of 0 still makes the
                # worker treat it as a scheduled task, a timer's tick later.
                self._celery.send_task(TASK_FLUSH, countdown=delay_s or None)
        except Exception as exc:
            # The enqueue succeeded: failing it now would make a caller retry what is already
            # queued. The workers' periodic tick finds the paths without this wake-up.
            log.warning("could not wake the workers (%s); the periodic tick will", exc)


def _object_type(value: ObjectType | str) -> ObjectType:
    try:
        return ObjectType.parse(str(value))
    except ValueError:
        raise ValueError(f"object_type must be one of {[t.value for t in OBJECT_TYPES]}") from None


def _priority(value: Priority | str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise ValueError(f"priority must be one of {[p.value for p in Priority]}") from None


def _stream(
    groups: Iterator[list[list[str]]],
    send: Callable[[list[list[str]]], list[tuple[int, int]]],
    tally: Callable[[list[list[str]], list[tuple[int, int]]], None],
) -> None:
    """Send every group, several pipelines in flight at once when there is more than one.

    Each in-flight pipeline runs on its own connection: while Redis runs the scripts of one,
    this process packs the next, and neither side waits for the other.
    """
    first = next(groups)
    second = next(groups, None)
    if second is None:
        tally(first, send(first))
        return
    window: deque[tuple[list[list[str]], Future[list[tuple[int, int]]]]] = deque()

    def tally_oldest() -> None:
        group, future = window.popleft()
        tally(group, future.result())

    with ThreadPoolExecutor(PIPELINES_IN_FLIGHT, thread_name_prefix="enqueue") as pool:
        try:
            for group in itertools.chain((first, second), groups):
                if len(window) >= PIPELINES_IN_FLIGHT:
                    tally_oldest()
                window.append((group, pool.submit(send, group)))
            while window:
                tally_oldest()
        except redis.RedisError:
            # The other pipeline in flight may have gone in: count it, so that the receipt
            # of a failed enqueue says exactly what was accepted.
            while window:
                with contextlib.suppress(redis.RedisError):
                    tally_oldest()
            raise


def _spill(block: list[str], spool: IO[str]) -> int:
    """Write ``block`` to the spool, one path a line, and empty it; returns its length."""
    count = len(block)
    if count:
        block.append("")  # the last line's newline
        spool.write("\n".join(block))
        block.clear()
    return count


def _chunks(spool: IO[str], size: int) -> Iterator[list[str]]:
    """The spool's lines, ``size`` at a time, read in large blocks."""
    chunk: list[str] = []
    tail = ""
    while block := spool.read(SPOOL_READ_CHARS):
        lines = (tail + block).split("\n")
        tail = lines.pop()
        start = 0
        while len(chunk) + len(lines) - start >= size:
            end = start + size - len(chunk)
            chunk.extend(lines[start:end])
            yield chunk
            chunk = []
            start = end
        chunk.extend(lines[start:])
    if tail:
        chunk.append(tail)
    if chunk:
        yield chunk


def _grouped(chunks: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    group: list[list[str]] = []
    for chunk in chunks:
        group.append(chunk)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
