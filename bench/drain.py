"""Benchmark 2: drain 200,000 pending paths through real Celery workers into the emulator.

The quota is out of the way (a very high URL_DAILY_QUOTA, an emulator quota to match, zero
latency), so the figure is the pipeline's own cost: claim, sign, call, settle. The floor
posts the same 1,000-path batches to the same emulator with our CdnClient from this one
process, one after another: what the workers must at least match with their parallelism.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from bench.data import unique_paths
from bench.infra import (
    EmulatorProcess,
    RedisServer,
    Workers,
    bench_settings,
    cpu_seconds,
    make_settings,
    wait_until,
)
from bench.report import Result
from cdn_refresh.constants import URLS_PER_CALL
from cdn_refresh.store import Store, redis_from_settings
from producer.producer import FlushNotifier, Producer
from worker.client import CdnClient

# Worker processes x pool processes each. On the 2-core machine of RESULTS.md, 2x1, 2x2 and
# 3x1 drained equally fast (~49k paths/s), 1x1 at 29k, 1x2 at 44k, 4x1 at 41k: the workers,
# redis-server and the emulator share two cores, and they are all busy.
WORKERS = 2
CONCURRENCY = 2
TARGET_RATIO = 0.5
DRAIN_TIMEOUT_S = 150


def floor(settings: Any, paths: list[str]) -> float:
    """Seconds to post every batch of ``paths`` sequentially with one CdnClient."""
    with CdnClient(settings.provider) as client:
        client.refresh_object_caches(paths[:1])  # connect and warm up, not timed
        started = time.perf_counter()
        for start in range(0, len(paths), URLS_PER_CALL):
            client.refresh_object_caches(paths[start : start + URLS_PER_CALL])
        return time.perf_counter() - started


def run(
    redis_server: RedisServer,
    workdir: Path,
    quick: bool,
    workers: int = WORKERS,
    concurrency: int = CONCURRENCY,
) -> Result:
    total = 20_000 if quick else 200_000
    result = Result(
        "drain",
        f"2. Drain {total:,} unique paths, quota unlimited, zero-latency emulator "
        f"({workers} worker(s) x concurrency {concurrency})",
    )
    # Sorted as the claim takes them (one rank, then by member): 1,000-path batches of at
    # most two domains, the same batches the workers will make.
    paths = sorted(unique_paths(total))
    minimum_calls = math.ceil(total / URLS_PER_CALL)
    with EmulatorProcess(100_000_000) as emulator:
        values = bench_settings(
            redis_server.url,
            emulator.url,
            url_daily_quota=1_000_000_000,
            # The tick is a safety net; here the flush chain does the work.
            flush_interval_s=30,
            flush_debounce_s=0,
        )
        settings = make_settings(values)

        floor_s = floor(settings, paths)
        floor_rate = total / floor_s
        result.add("floor: sequential CdnClient posts", floor_rate, "paths/s")
        emulator.reset()

        redis_server.flush()
        client = redis_from_settings(settings.redis)
        Producer(Store(client, settings)).enqueue(paths)
        notify = FlushNotifier(Store(client, settings))
        (workdir / "drain").mkdir(exist_ok=True)
        with Workers(values, workdir / "drain") as pool:
            pool.start(workers, concurrency)
            pids = pool.pids()
            before = {pid: cpu_seconds(pid) for pid in pids}
            redis_pid, emulator_pid = redis_server.process.pid, emulator.process.pid
            redis_cpu0, emulator_cpu0 = cpu_seconds(redis_pid), cpu_seconds(emulator_pid)
            redis_server.client.config_resetstat()
            started = time.time()
            notify()
            wait_until(
                lambda: emulator.stats()["quota"].get("url_used", 0) >= total,
                DRAIN_TIMEOUT_S,
                "drain",
                interval_s=0.1,
            )
            worker_cpu = sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in pool.pids())
            redis_cpu = cpu_seconds(redis_pid) - redis_cpu0
            emulator_cpu = cpu_seconds(emulator_pid) - emulator_cpu0
            commandstats = redis_server.client.info("commandstats")
        client.close()
        calls = emulator.calls()
        requests = emulator.refresh_requests()
    drain_s = calls[-1]["time"] - started
    rate = total / drain_s
    accepted = [p for call in calls for p in call["paths"]]
    if len(accepted) != total or set(accepted) != set(paths):
        raise AssertionError(f"{len(accepted)} paths accepted, {len(set(accepted))} unique")
    result.add(
        "RefreshObjectCaches calls",
        requests,
        "calls",
        "minimum ceil(paths/1000)",
        requests / minimum_calls,
        f"= {minimum_calls}",
        requests == minimum_calls,
    )
    result.add(
        "drain through Celery workers",
        rate,
        "paths/s",
        "floor",
        rate / floor_rate,
        f">= {TARGET_RATIO}",
        rate / floor_rate >= TARGET_RATIO,
    )
    first_call = calls[0]["time"] - started
    evalsha = commandstats.get("cmdstat_evalsha", {})
    result.notes.append(
        f"Drained in {drain_s:.2f} s (first call {first_call * 1000:.0f} ms after the flush "
        f"was requested); the floor took {floor_s:.2f} s. CPU during the drain: workers "
        f"{worker_cpu:.2f} s, redis-server {redis_cpu:.2f} s, emulator {emulator_cpu:.2f} s "
        f"(of {2 * drain_s:.2f} s on 2 cores)."
    )
    result.notes.append(
        f"Redis scripts (claim + settle): {evalsha.get('calls', 0)} calls, "
        f"{evalsha.get('usec', 0) / 1e6:.2f} s inside Redis, "
        f"{evalsha.get('usec', 0) / max(1, total):.2f} us per path."
    )
    result.details = {
        "drain_s": drain_s,
        "floor_s": floor_s,
        "worker_cpu_s": worker_cpu,
        "redis_cpu_s": redis_cpu,
        "emulator_cpu_s": emulator_cpu,
        "commandstats": {k: v for k, v in commandstats.items() if v.get("usec", 0) > 1000},
    }
    return result
