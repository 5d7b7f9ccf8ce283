"""Benchmark 8: knowing that it finished (completion tracking, issue 11).

1. **Describe calls.** 10,000 paths over 10 domains go through a real worker and the
   emulator (tasks Complete after 0.2 s, the first check after 0.3 s) until every path is
   complete: DescribeRefreshTaskById requests per 100 submitted paths (goal: at most 1).
2. **Redis cost per submission.** The submit script of a 1,000-path batch, which tracks the
   call to completion (every submit does: there is no untracked one to compare with).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.data import unique_paths
from bench.infra import (
    EmulatorProcess,
    RedisServer,
    Workers,
    bench_settings,
    make_settings,
    twin_stores,
    wait_until,
)
from bench.report import Result
from cdn_refresh.constants import ObjectType
from cdn_refresh.store.records import Batch
from producer.producer import Producer
from worker.tracking import next_check_s

FILE = ObjectType.FILE


def _describe_calls(redis_server: RedisServer, workdir: Path, result: Result, total: int) -> None:
    redis_server.flush()
    with EmulatorProcess(100_000_000, "--complete-after-s", "0.2") as emulator:
        values = bench_settings(
            redis_server.url,
            emulator.url,
            url_daily_quota=10**9,
            task_first_check_s=0.3,
            task_check_max_s=2,
            flush_interval_s=0.5,
        )
        settings = make_settings(values)
        logdir = workdir / "tracking"
        logdir.mkdir(exist_ok=True)
        with Workers(values, logdir) as pool:
            pool.start(1, 4)
            producer = Producer.from_settings(settings)
            job = producer.enqueue(unique_paths(total, domains=10, offset=9_000_000)).job_id
            wait_until(
                lambda: producer.status(job).counts.complete == total, 120, "all complete", 0.2
            )
            producer.close()
        by_action = emulator.stats()["by_action"]
    describes = sum(by_action.get("DescribeRefreshTaskById", {}).values())
    refreshes = sum(by_action.get("RefreshObjectCaches", {}).values())
    per_100 = describes / total * 100
    result.add(
        f"Describe requests per 100 paths ({total:,} paths)",
        per_100,
        "calls",
        target="<= 1",
        ok=per_100 <= 1,
    )
    result.notes.append(
        f"{total:,} paths in {refreshes} RefreshObjectCaches calls (10 domains: one task per "
        f"domain) needed {describes} DescribeRefreshTaskById requests until every path was "
        "complete: one per call, ten task IDs in each."
    )


def _schedule_at_defaults(result: Result) -> None:
    """The check schedule at the default settings, for tasks that end after 1 s to 1 h:
    the worst lag between a task's end and its notice (each check a tick late), against
    max(15 s, a tenth of the task's age), and the requests it took."""
    settings = make_settings({})
    worst, requests_5_min = 0.0, 0
    for ends_at in (1, 10, 60, 150, 300, 330, 600, 1800, 3500):
        due, checks = settings.tracking.task_first_check_s, 1
        while (ran := due + settings.flush.interval_s) < ends_at:
            due, checks = ran + next_check_s(ran, settings), checks + 1
        worst = max(worst, (ran - ends_at) / max(15.0, 0.1 * ends_at))
        requests_5_min = checks if ends_at == 300 else requests_5_min
    result.add(
        "completion noticed, worst lag / max(15 s, 10 % of age), defaults",
        worst,
        "x",
        target="<= 1",
        ok=worst <= 1,
    )
    result.notes.append(
        f"At the defaults a call whose tasks end after 5 minutes is asked about {requests_5_min} "
        f"times (one request per 10 task IDs): {requests_5_min / 10:g} requests per 100 paths "
        "for a call of 1,000 paths over 10 domains; the measured workload above, whose tasks "
        "end at once, needs one a call."
    )


def _submit_cost(redis_server: RedisServer, result: Result, reps: int) -> None:
    timings: list[float] = []
    task_ids = tuple(str(17_000_000_000 + i) for i in range(10))
    for rep in range(reps):
        # One store of the twins: every submit is tracked, there is no side without it.
        store = twin_stores(redis_server, "submit")[True]
        Producer(store).enqueue(unique_paths(20_000, domains=10, offset=rep * 100_000))
        for _ in range(10):
            batch = store.batches.claim(FILE)
            assert isinstance(batch, Batch)
            started = time.perf_counter()
            store.batches.submit(batch, (), task_ids, "bench")
            timings.append(time.perf_counter() - started)
    result.add(
        "submit of 1,000 paths, tracked to completion",
        statistics.median(timings) * 1000,
        "ms",
    )
    result.notes.append(
        "Tracking adds, per call, one JSON of the call's paths, ranks and jobs (kept until its "
        "tasks end) and one sorted-set entry; the settle (track.lua) then touches each path "
        "once more."
    )


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    result = Result("tracking", "8. Knowing that it finished: completion tracking")
    _describe_calls(redis_server, workdir, result, 2_000 if quick else 10_000)
    _schedule_at_defaults(result)
    _submit_cost(redis_server, result, 2 if quick else 6)
    return result
