"""Benchmark 3: how long one interactive path takes from enqueue to the provider, when idle.

One worker (with its scheduler) on default timing (FLUSH_DEBOUNCE_S 0.2, FLUSH_INTERVAL_S 5).
Each path is enqueued through ``Producer.from_settings`` (which wakes the workers, as a
backend service's enqueue does), then the bench waits for the emulator to record the call and
pauses 50-100 ms before the next. Latency is the emulator's recorded time of the call minus
the time just before ``enqueue`` was called (one clock: both run on this machine).
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

from bench.infra import (
    EmulatorProcess,
    RedisServer,
    Workers,
    bench_settings,
    make_settings,
    wait_until,
)
from bench.report import Result
from producer.producer import Producer

WORKERS = 1
CONCURRENCY = 2
TARGET_P50_S = 1.0
CALL_TIMEOUT_S = 15


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    count = 30 if quick else 200
    result = Result(
        "latency",
        f"3. Latency of {count} single interactive enqueues on an idle system "
        f"({WORKERS} worker x concurrency {CONCURRENCY}, default FLUSH_DEBOUNCE_S 0.2)",
    )
    rng = random.Random(3)
    with EmulatorProcess(100_000_000) as emulator:
        values = bench_settings(redis_server.url, emulator.url, url_daily_quota=100_000_000)
        settings = make_settings(values)
        producer = Producer.from_settings(settings)
        (workdir / "latency").mkdir(exist_ok=True)
        with Workers(values, workdir / "latency") as pool:
            pool.start(WORKERS, CONCURRENCY)
            sent: dict[str, float] = {}
            for i in range(count + 1):
                path = f"https://live.shop-example.com/products/{i:06d}/detail.html"
                if i:  # the first one warms up the worker's connections: not counted
                    sent[path] = time.time()
                producer.enqueue([path])
                wait_until(
                    lambda n=i + 1: emulator.stats()["calls"] >= n,
                    CALL_TIMEOUT_S,
                    f"call for enqueue {i}",
                    interval_s=0.005,
                )
                time.sleep(rng.uniform(0.05, 0.1))
        calls = emulator.calls()
    latencies: list[float] = []
    for call in calls:
        for path in call["paths"]:
            if path in sent:
                latencies.append(call["time"] - sent.pop(path))
    if sent:
        raise AssertionError(f"{len(sent)} paths never reached the emulator")
    p50 = percentile(latencies, 0.5)
    result.add("p50", p50 * 1000, "ms", target=f"< {TARGET_P50_S * 1000:.0f} ms", ok=p50 < 1)
    result.add("p90", percentile(latencies, 0.9) * 1000, "ms")
    result.add("p99", percentile(latencies, 0.99) * 1000, "ms")
    result.add("max", max(latencies) * 1000, "ms")
    result.add("mean", statistics.fmean(latencies) * 1000, "ms")
    result.notes.append(
        f"{len(calls) - 1} calls for {count} paths: each enqueue was flushed on its own. "
        "The debounce (0.2 s countdown on the flush task) is most of the latency."
    )
    result.details = {"latencies_ms": [round(x * 1000, 1) for x in latencies]}
    return result
