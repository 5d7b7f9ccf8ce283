"""Jobs: the header an enqueue writes, the chunks it streams in, and the status read back.

A job is *open* while its enqueue streams: its id sits in ``jobs_open`` with a deadline that
each chunk, and the producer's beat in between, push on. ``status`` never calls an open job
done (paths may still come), and a job whose enqueue died (the process killed, Redis refusing
writes) stops being open when its deadline passes, so that it is never left pending forever.
That end is final: once the deadline passed, a chunk of the job is refused and no renewal
opens it again (a producer that was only slow learns its enqueue was interrupted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, cast

import redis

from cdn_refresh.constants import BULK_RANK_OFFSET, ObjectType, Priority
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.places import PlaceStore
from cdn_refresh.store.records import CredentialProblem, JobCounts, JobHeader, JobStatus
from cdn_refresh.store.states import JOB_COUNT_STATES, JobState, job_state

# How long an open job may go without a renewal before it counts as abandoned (its producer
# died). The producer renews it every OPEN_JOB_BEAT_S from a thread of its own, however slow
# its round trips, so a few seconds are plenty; a job whose producer died reads incomplete
# within them, not minutes later.
OPEN_JOB_LEASE_S = 10.0
OPEN_JOB_BEAT_S = 2.0
# How many of the most recent jobs ``jobs --state S`` looks through.
RECENT_SCAN = 1_000


class JobNotFoundError(KeyError):
    """No job with that id (never made, or older than the retention)."""


class ChunksRefusedError(redis.RedisError):
    """Redis refused a chunk of a pipeline; ``done`` holds the answers of the chunks it took
    before, so that the enqueue can say exactly what went in."""

    def __init__(self, done: list[tuple[int, int]], cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.done = done
        self.cause = cause


class ReplicaAckError(redis.RedisError):
    """Fewer replicas than ``REDIS_MIN_REPLICAS_ACK`` confirmed an enqueue's writes in
    time: it is not acknowledged (a failover now could lose it; enqueue it again, which
    coalesces with what did survive)."""

    def __init__(self, confirmed: int, wanted: int) -> None:
        super().__init__(f"{confirmed} of {wanted} replicas confirmed the write (WAIT)")
        self.confirmed = confirmed
        self.wanted = wanted


class JobStore:
    """Writes jobs and their paths, and reads their status."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def new_id(self) -> str:
        """A fresh job id."""
        return str(self._ctx.redis.incr(self._ctx.keys.shared.job_seq))

    def check_writable(self) -> None:
        """Raise the error Redis gives a write when it refuses writes (maxmemory, a read-only
        replica), leaving nothing behind: a write and its removal in one transaction."""
        probe = self._ctx.keys.shared.write_probe
        with self._ctx.redis.pipeline(transaction=True) as pipe:
            pipe.set(probe, "1")
            pipe.delete(probe)
            pipe.execute()

    def open(self, header: JobHeader) -> None:
        """Write the header of a job about to stream in; the job is open until closed."""
        k = self._ctx.keys.shared
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.jobs, header.job_id, header.encode())
            pipe.zadd(k.jobs_by_time, {header.job_id: header.created_at})
            self._touch(header, "new", pipe)
            self._wait_for_replicas(pipe)
            answers = pipe.execute()
        wanted = self._ctx.settings.redis.min_replicas_ack
        if wanted and int(answers[-1]) < wanted:
            raise ReplicaAckError(int(answers[-1]), wanted)

    def renew(self, header: JobHeader) -> bool:
        """Push the open job's deadline on; False when it had passed already (the job ended
        incomplete, for good)."""
        return bool(self._touch(header, "renew"))

    def _touch(
        self, header: JobHeader, mode: str, pipe: redis.client.Pipeline | None = None
    ) -> Any:
        s = self._ctx.settings
        # A round trip that waits for replicas may take their whole timeout.
        lease = OPEN_JOB_LEASE_S + (
            s.redis.replica_ack_timeout_s if s.redis.min_replicas_ack else 0
        )
        return self._ctx.scripts.run(
            scripts.TOUCH_JOB,
            {"job_id": header.job_id, "lease_s": repr(lease), "mode": mode},
            client=pipe,
        )

    @staticmethod
    def rank(now: float, priority: Priority) -> int:
        """The pending rank of paths enqueued at ``now``: sooner first, bulk after
        interactive."""
        return int(now * 1000) + (BULK_RANK_OFFSET if priority is Priority.BULK else 0)

    def enqueue_chunks(
        self,
        header: JobHeader,
        rank: int,
        chunks: Sequence[Sequence[str]],
    ) -> list[tuple[int, int]]:
        """Enqueue chunks of normalized paths in one round trip; (accepted, duplicates) of
        each. Safe from several threads at once: each pipeline takes its own connection."""
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            for chunk in chunks:
                self._ctx.scripts.run(
                    scripts.ENQUEUE,
                    enqueue_args(self._ctx, header.job_id, rank, header.object_type, chunk),
                    header.object_type,
                    client=pipe,
                )
            # The job stays open while chunks keep coming.
            self._touch(header, "renew", pipe)
            self._wait_for_replicas(pipe)
            answers = pipe.execute(raise_on_error=False)
        done: list[tuple[int, int]] = []
        for answer in answers[: len(chunks)]:
            if isinstance(answer, Exception):
                raise ChunksRefusedError(done, answer)
            done.append((int(answer[0]), int(answer[1])))
        wanted = self._ctx.settings.redis.min_replicas_ack
        if wanted and (isinstance(answers[-1], Exception) or int(answers[-1]) < wanted):
            confirmed = 0 if isinstance(answers[-1], Exception) else int(answers[-1])
            # Nothing of this round trip is acknowledged: the receipt does not count it.
            raise ChunksRefusedError([], ReplicaAckError(confirmed, wanted))
        return done

    def _wait_for_replicas(self, pipe: redis.client.Pipeline) -> None:
        """WAIT, last on the pipeline's own connection: it confirms that connection's writes
        (docs/operations.md "High availability")."""
        s = self._ctx.settings
        if s.redis.min_replicas_ack:
            timeout_ms = max(1, int(s.redis.replica_ack_timeout_s * 1000))
            pipe.execute_command("WAIT", s.redis.min_replicas_ack, timeout_ms)  # type: ignore[no-untyped-call]

    def close(self, header: JobHeader) -> None:
        """The enqueue ended (``header.incomplete`` when it gave up part way)."""
        k = self._ctx.keys.shared
        header.complete = True
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(k.jobs_open, header.job_id)
            pipe.hset(k.jobs, header.job_id, header.encode())
            pipe.execute()

    def abandon(self, header: JobHeader) -> None:
        """Close a job whose enqueue failed, as far as Redis lets us.

        The header update may be refused too (Redis out of memory refuses every write that
        grows it); removing the open mark is not (a removal is always allowed), and a job
        that is neither open nor complete reads as incomplete.
        """
        header.incomplete = True
        # close's pipeline is not a transaction: its removal runs even when its HSET is refused.
        with contextlib.suppress(redis.RedisError):
            self.close(header)

    def paths_counted(self, job_id: str) -> int:
        """How many paths the job counts, in every state: each path it waits on, once."""
        k = self._ctx.keys.shared
        raws = self._ctx.redis.hmget(k.job_counts, [f"{job_id}:{s}" for s in JOB_COUNT_STATES])
        return sum(max(0, int(v or 0)) for v in cast(list[Any], raws))

    def header(self, job_id: str) -> JobHeader | None:
        """What the job's enqueue wrote of it; None when there is no such job."""
        raw = self._ctx.redis.hget(self._ctx.keys.shared.jobs, job_id)
        return None if raw is None else JobHeader.decode(str(raw))

    def status(self, job_id: str) -> JobStatus:
        """A job's state, counts by state and task IDs."""
        k = self._ctx.keys.shared
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.jobs, job_id)
            pipe.hmget(k.job_counts, [f"{job_id}:{s}" for s in JOB_COUNT_STATES])
            pipe.hget(k.job_tasks, job_id)
            pipe.get(k.auth_error)
            pipe.zscore(k.jobs_open, job_id)
            pipe.time()  # Redis's clock, the one the open mark runs on: no round trip of its own
            header_raw, counts_raw, tasks_raw, auth_raw, open_until, (seconds, micros) = (
                pipe.execute()
            )
        if header_raw is None:
            raise JobNotFoundError(job_id)
        header = JobHeader.decode(header_raw)
        counts = JobCounts(
            **{s: max(0, int(v or 0)) for s, v in zip(JOB_COUNT_STATES, counts_raw, strict=True)}
        )
        now = seconds + micros / 1e6
        streaming = not header.complete and open_until is not None and float(open_until) > now
        # Neither complete nor open: its enqueue died before it could say so.
        incomplete = header.incomplete or (not header.complete and not streaming)
        problem = CredentialProblem.decode(auth_raw)
        place = None
        if counts.pending:
            rank = self.rank(header.created_at, header.priority)
            place = PlaceStore(self._ctx).of_rank(rank, header.object_type)
        return JobStatus(
            job_id=job_id,
            state=job_state(counts.by_state(), streaming=streaming, incomplete=incomplete),
            counts=counts,
            task_ids=tuple(t for t in (tasks_raw or "").split(",") if t),
            object_type=header.object_type,
            priority=header.priority,
            created_at=header.created_at,
            last_error=problem.describe() if problem and counts.waiting else None,
            incomplete=incomplete,
            error=header.error
            or ("the enqueue ended before every path was in" if incomplete else ""),
            place=place,
        )

    def recent(self, limit: int, state: JobState | None = None) -> list[JobStatus]:
        """The ``limit`` most recent jobs (in ``state``, when given), newest first; with a
        state, at most the ``RECENT_SCAN`` most recent jobs are looked at."""
        found: list[JobStatus] = []
        scan = RECENT_SCAN if state else limit
        for job_id in self._ctx.redis.zrevrange(self._ctx.keys.shared.jobs_by_time, 0, scan - 1):
            try:
                status = self.status(str(job_id))
            except JobNotFoundError:
                continue  # forgotten between the two reads
            if state is None or status.state is state:
                found.append(status)
                if len(found) >= limit:
                    break
        return found


def enqueue_args(
    ctx: StoreContext, job_id: str, rank: int, object_type: ObjectType, paths: Sequence[str]
) -> dict[str, Any]:
    """``enqueue.lua``'s arguments by name. ``window_s`` is the quota window (s) when none is
    stored: a submission that recent makes a path a repeat, which ranks one window later
    (the script reads the stored one)."""
    return {
        "job": job_id,
        "rank": rank,
        "window_s": repr(ctx.settings.quota.window_s),
        "object_type": object_type.value,
        "paths": paths,
    }
