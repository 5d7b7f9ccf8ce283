"""The producer API for backend services: validate, normalize, enqueue; ask about jobs/paths.

Enqueue runs in two passes so that a bad path rejects the whole request before anything is
written: the first normalizes every input into a spool (memory until it grows, then a temp
file), the second streams the spool into Redis in pipelined chunks, two pipelines in flight
so that this process packs one while Redis runs the other (``bench/`` measures both passes).
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, Any, cast

import redis

from cdn_refresh.constants import (
    BULK_RANK_OFFSET,
    OBJECT_TYPES,
    PRIORITIES,
    TASK_FLUSH,
    ObjectType,
    Priority,
)
from cdn_refresh.keys import Keys
from cdn_refresh.paths import InvalidPathError, normalize_path, shown_path
from cdn_refresh.redis_conn import broker_url, load_script, redis_from_settings
from cdn_refresh.settings import Settings

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

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape."""
        return {
            "job_id": self.job_id,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [asdict(r) for r in self.rejected],
        }


class EnqueueRejectedError(ValueError):
    """Invalid paths rejected the whole request: nothing was enqueued."""

    def __init__(self, receipt: Receipt) -> None:
        first = receipt.rejected[0]
        super().__init__(
            f"{receipt.rejected_count} invalid path(s), nothing enqueued; "
            f"first at line {first.line}: {first.reason}"
        )
        self.receipt = receipt


class JobNotFoundError(KeyError):
    """No job with that id (never made, or older than the retention)."""


class Producer:
    """Enqueues refresh requests and answers questions about them."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        notify: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._settings = settings
        self._clock = clock
        self._notify = notify
        self.keys = Keys(settings.key_prefix)
        self._enqueue = load_script(client, "producer", "enqueue.lua")
        self._replay = load_script(client, "producer", "replay.lua")
        self._allowed: frozenset[str] = frozenset(settings.allowed_domains)

    @classmethod
    def from_settings(cls, settings: Settings, *, notify_workers: bool = True) -> Producer:
        """A producer on ``CDN_REFRESH_REDIS_URL`` that wakes the workers after each enqueue."""
        client = redis_from_settings(settings)
        notify = FlushNotifier(client, settings) if notify_workers else None
        return cls(client, settings, notify=notify)

    def close(self) -> None:
        """Release the Redis connections (and the workers' wake-up channel)."""
        if isinstance(self._notify, FlushNotifier):
            self._notify.close()
        self._redis.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(
        self,
        paths: Iterable[str],
        object_type: ObjectType = "File",
        priority: Priority = "interactive",
        *,
        skip_invalid: bool = False,
        progress: Callable[[str, int], None] | None = None,
    ) -> Receipt:
        """Validate and enqueue ``paths`` as one job.

        Raises :class:`EnqueueRejectedError` (nothing enqueued) if a path is invalid, unless
        ``skip_invalid``: then the valid paths go in and the receipt lists the rest.
        ``progress(phase, n)`` reports ``n`` more inputs handled in phase ``"validated"``
        or ``"enqueued"``.
        """
        if object_type not in OBJECT_TYPES:
            raise ValueError(f"object_type must be one of {OBJECT_TYPES}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}")
        receipt = Receipt(job_id="")
        with tempfile.SpooledTemporaryFile(
            max_size=SPOOL_MEMORY_BYTES, mode="w+", encoding="utf-8", newline="\n"
        ) as spool:
            valid = self._validate(paths, object_type, receipt, spool, progress)
            if receipt.rejected_count and not skip_invalid:
                raise EnqueueRejectedError(receipt)
            if valid == 0:
                return receipt
            spool.seek(0)
            self._write(cast(IO[str], spool), object_type, priority, receipt, valid, progress)
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

    def _write(
        self,
        spool: IO[str],
        object_type: ObjectType,
        priority: Priority,
        receipt: Receipt,
        total: int,
        progress: Callable[[str, int], None] | None,
    ) -> None:
        k, tk = self.keys, self.keys.of(object_type)
        now = self._clock()
        job_id = str(self._redis.incr(k.job_seq))
        receipt.job_id = job_id
        rank = int(now * 1000) + (BULK_RANK_OFFSET if priority == "bulk" else 0)
        header = {
            "job_id": job_id,
            "object_type": object_type,
            "priority": priority,
            "created_at": now,
            "paths": total,
            "rejected": receipt.rejected_count,
            # Until the last chunk is in, status must not call the job done.
            "complete": False,
        }
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.jobs, job_id, json.dumps(header))
            pipe.zadd(k.jobs_by_time, {job_id: now})
            pipe.execute()
        script_keys = [tk.pending, tk.waiters, k.job_counts, tk.dead]

        def send(group: list[list[str]]) -> list[Any]:
            with self._redis.pipeline(transaction=False) as pipe:
                for chunk in group:
                    self._enqueue(keys=script_keys, args=[job_id, rank, *chunk], client=pipe)
                return pipe.execute()

        def tally(group: list[list[str]], answers: list[Any]) -> None:
            for accepted, duplicates in answers:
                receipt.accepted += int(accepted)
                receipt.duplicates += int(duplicates)
            if progress is not None:
                progress("enqueued", sum(len(chunk) for chunk in group))

        groups = _grouped(_chunks(spool, CHUNK_PATHS), CHUNKS_PER_PIPELINE)
        first = next(groups)
        second = next(groups, None)
        if second is None:
            tally(first, send(first))
        else:
            self._stream_overlapped(first, second, groups, send, tally)
        header.update(complete=True, accepted=receipt.accepted, duplicates=receipt.duplicates)
        self._redis.hset(k.jobs, job_id, json.dumps(header))

    @staticmethod
    def _stream_overlapped(
        first: list[list[str]],
        second: list[list[str]],
        groups: Iterator[list[list[str]]],
        send: Callable[[list[list[str]]], list[Any]],
        tally: Callable[[list[list[str]], list[Any]], None],
    ) -> None:
        # Several pipelines in flight, each on its own connection: while Redis runs the
        # scripts of one, this process packs the next, and neither side waits for the other.
        window: deque[tuple[list[list[str]], Future[list[Any]]]] = deque()

        def tally_oldest() -> None:
            group, future = window.popleft()
            tally(group, future.result())

        with ThreadPoolExecutor(PIPELINES_IN_FLIGHT, thread_name_prefix="enqueue") as pool:
            for group in itertools.chain((first, second), groups):
                if len(window) >= PIPELINES_IN_FLIGHT:
                    tally_oldest()
                window.append((group, pool.submit(send, group)))
            while window:
                tally_oldest()

    def status(self, job_id: str) -> dict[str, Any]:
        """A job's state, counts by state and task IDs (the ``status --json`` shape)."""
        k = self.keys
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.jobs, job_id)
            pipe.hmget(
                k.job_counts,
                [f"{job_id}:{s}" for s in ("pending", "in_flight", "submitted", "failed")],
            )
            pipe.hget(k.job_tasks, job_id)
            pipe.get(k.auth_error)
            header_raw, counts_raw, tasks_raw, auth_raw = pipe.execute()
        if header_raw is None:
            raise JobNotFoundError(job_id)
        header = json.loads(header_raw)
        pending, in_flight, submitted, failed = (max(0, int(v or 0)) for v in counts_raw)
        if pending + in_flight == 0 and header.get("complete", True):
            state = "failed" if failed else "done"
        elif pending + in_flight == 0:
            state = "pending"  # still being enqueued
        elif in_flight or submitted or failed:
            state = "in_progress"
        else:
            state = "pending"
        result: dict[str, Any] = {
            "job_id": job_id,
            "state": state,
            "counts": {
                "pending": pending,
                "in_flight": in_flight,
                "submitted": submitted,
                "failed": failed,
            },
            "task_ids": [t for t in (tasks_raw or "").split(",") if t],
            "object_type": header["object_type"],
            "priority": header["priority"],
            "created_at": header["created_at"],
            "last_error": None,
        }
        if auth_raw and pending + in_flight:
            result["last_error"] = _auth_error(auth_raw)
        return result

    def lookup(self, path: str, object_type: ObjectType = "File") -> dict[str, Any]:
        """Where one path stands: pending, in flight, submitted (with task IDs) or failed."""
        normalized = normalize_path(path, object_type, self._allowed)
        k, tk = self.keys, self.keys.of(object_type)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zscore(tk.pending, normalized)
            pipe.hget(tk.pathinfo, normalized)
            pipe.hget(tk.records, normalized)
            pipe.hget(tk.dead, normalized)
            pipe.get(k.auth_error)
            pending, info_raw, record_raw, dead_raw, auth_raw = pipe.execute()
        info = json.loads(info_raw) if info_raw else {}
        record = json.loads(record_raw) if record_raw else {}
        dead = json.loads(dead_raw) if dead_raw else {}
        if pending is not None:
            state = "pending"
        elif self._in_flight(normalized, object_type):
            state = "in_flight"
        elif dead and (not record or dead.get("at", 0) >= record.get("submitted_at", 0)):
            # Both can exist for a path enqueued again: the newer outcome is its state.
            state = "failed"
        elif record:
            state = "submitted"
        else:
            state = "unknown"
        last_error = dead.get("code") or info.get("last_error") or None
        if auth_raw and state in ("pending", "in_flight"):
            last_error = _auth_error(auth_raw)
        return {
            "path": normalized,
            "object_type": object_type,
            "state": state,
            "task_id": ",".join(record.get("task_ids", [])) or None,
            "request_id": record.get("request_id") or None,
            "submitted_at": record.get("submitted_at"),
            "attempts": dead.get("attempts") or info.get("attempts") or record.get("attempts", 0),
            "last_error": last_error,
        }

    def _in_flight(self, normalized: str, object_type: ObjectType) -> bool:
        # Batches in flight are few (one per busy worker process): a scan is cheap.
        for _, raw in self._redis.hscan_iter(self.keys.batches, count=100):
            batch = json.loads(raw)
            if batch["object_type"] == object_type and normalized in batch["paths"]:
                return True
        return False

    def dead_letters(self) -> Iterator[dict[str, Any]]:
        """Every dead-lettered path with its last error."""
        for object_type in OBJECT_TYPES:
            for path, raw in self._redis.hscan_iter(self.keys.of(object_type).dead, count=500):
                entry = json.loads(raw)
                yield {
                    "path": path,
                    "object_type": object_type,
                    "code": entry.get("code", ""),
                    "message": entry.get("message", ""),
                    "attempts": entry.get("attempts", 0),
                    "failed_at": entry.get("at"),
                }

    def replay(
        self, paths: Collection[str] | None = None, object_type: ObjectType | None = None
    ) -> int:
        """Return dead-lettered paths (all of them when ``paths`` is None) to pending, with
        the jobs that waited on them, and lift a credential hold: an operator acted."""
        k = self.keys
        rank = int(self._clock() * 1000)
        replayed = 0
        types = [object_type] if object_type else list(OBJECT_TYPES)
        for kind in types:
            tk = k.of(kind)
            if paths is None:
                chosen: list[str] = [p for p, _ in self._redis.hscan_iter(tk.dead, count=1000)]
            else:
                chosen = [normalize_path(p, kind, self._allowed) for p in paths]
            for start in range(0, len(chosen), CHUNK_PATHS):
                replayed += int(
                    self._replay(
                        keys=[tk.dead, tk.pending, tk.waiters, tk.pathinfo, k.job_counts],
                        args=[rank, *chosen[start : start + CHUNK_PATHS]],
                    )
                )
        self._redis.delete(k.auth_hold, k.auth_failures)
        if self._notify is not None:
            self._notify()
        return replayed


class FlushNotifier:
    """Wakes the workers after an enqueue: at most one flush per debounce interval."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        from celery import Celery

        self._redis = client
        self._settings = settings
        self._key = Keys(settings.key_prefix).flush_requested
        self._celery = Celery(broker=broker_url(settings), set_as_current=False)
        self._celery.conf.task_serializer = "json"
        self._celery.conf.broker_connection_retry_on_startup = True

    def close(self) -> None:
        """Release the broker connection pool."""
        self._celery.close()

    def __call__(self) -> None:
        debounce_s = self._settings.flush_debounce_s
        try:
            if self._redis.set(self._key, "1", nx=True, px=max(1, int(debounce_s * 1000))):
                self._celery.send_task(TASK_FLUSH, countdown=debounce_s)
        except Exception as exc:
            # The enqueue succeeded: failing it now would make a caller retry what is already
            # queued. The workers' periodic tick finds the paths without this wake-up.
            log.warning("could not wake the workers (%s); the periodic tick will", exc)


def _auth_error(raw: str) -> str:
    data = json.loads(raw)
    return f"{data.get('code', 'CredentialError')}: {data.get('message', '')}".rstrip(": ")


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
