"""Forgetting what is older than ``RECORD_RETENTION_DAYS``: submission records, and jobs
that have ended. A job whose paths still wait is kept however old it is: a million-path job
at 2,000 a day takes longer than any retention, and its status must last as long."""

from __future__ import annotations

import time
from typing import cast

from cdn_refresh.constants import OBJECT_TYPES
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.states import JOB_COUNT_STATES, WAITING_STATES

# How many old records or jobs one trim looks at (the tick trims again every interval).
TRIM_BATCH = 1000


class Retention:
    """Trims old records and finished jobs."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def trim(self, now: float | None = None, limit: int = TRIM_BATCH) -> int:
        """Forget records and finished jobs older than the retention; returns how many."""
        now = time.time() if now is None else now
        cutoff = now - self._ctx.settings.tracking.record_retention_days * 86400
        return (
            self._trim_records(cutoff, limit)
            + self._trim_jobs(cutoff, now, limit)
            + self._trim_task_ends(cutoff, limit)
        )

    def _trim_task_ends(self, cutoff: float, limit: int) -> int:
        """How tracked tasks ended is kept as long as the records that name them."""
        r, k = self._ctx.redis, self._ctx.keys.shared
        old = cast(list[str], r.zrangebyscore(k.task_status_by_time, "-inf", cutoff, 0, limit))
        if old:
            with r.pipeline(transaction=False) as pipe:
                pipe.hdel(k.task_status, *old)
                pipe.zrem(k.task_status_by_time, *old)
                pipe.execute()
        return len(old)

    def _trim_records(self, cutoff: float, limit: int) -> int:
        r, trimmed = self._ctx.redis, 0
        for object_type in OBJECT_TYPES:
            tk = self._ctx.keys.of(object_type)
            old = cast(list[str], r.zrangebyscore(tk.records_by_time, "-inf", cutoff, 0, limit))
            if old:
                with r.pipeline(transaction=False) as pipe:
                    pipe.hdel(tk.records, *old)
                    pipe.zrem(tk.records_by_time, *old)
                    pipe.execute()
                trimmed += len(old)
        return trimmed

    def _trim_jobs(self, cutoff: float, now: float, limit: int) -> int:
        r, k = self._ctx.redis, self._ctx.keys.shared
        old = cast(list[str], r.zrangebyscore(k.jobs_by_time, "-inf", cutoff, 0, limit))
        if not old:
            return 0
        waiting = [s.value for s in WAITING_STATES]
        with r.pipeline(transaction=False) as pipe:
            pipe.hmget(k.job_counts, [f"{j}:{s}" for j in old for s in waiting])
            for job in old:
                pipe.zscore(k.jobs_open, job)
            waiting_raw, *open_marks = pipe.execute()
        n = len(waiting)
        ended = [
            job
            for i, job in enumerate(old)
            # An open mark past its deadline is an enqueue that died: the job has ended.
            if (open_marks[i] is None or float(open_marks[i]) <= now)
            and all(int(v or 0) <= 0 for v in waiting_raw[n * i : n * (i + 1)])
        ]
        if ended:
            with r.pipeline(transaction=False) as pipe:
                pipe.hdel(k.jobs, *ended)
                pipe.hdel(k.job_tasks, *ended)
                pipe.hdel(k.job_counts, *[f"{j}:{s}" for j in ended for s in JOB_COUNT_STATES])
                pipe.zrem(k.jobs_by_time, *ended)
                pipe.execute()
        return len(ended)
