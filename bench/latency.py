"""Benchmark 3: how long one interactive path takes from enqueue to the provider, idle and
under bulk load (issue 13: the leading edge).

One worker (with its scheduler) on default timing (FLUSH_DEBOUNCE_S 0.2, FLUSH_INTERVAL_S 5).
Each path is enqueued through ``Producer.from_settings`` (which wakes the workers, as a
backend service's enqueue does), then the bench waits for the emulator to record the call and
pauses before the next: 250-350 ms when idle (longer than the debounce: no enqueue in the
window), 50-100 ms under load. Latency is the emulator's recorded time of the call minus the
time just before ``enqueue`` was called (one clock: both run on this machine). Idle: the first
path after a quiet window goes at once (leading edge). Under load: a bulk producer enqueues
500 paths every 50 ms meanwhile; its paths should still go in full calls.
Baseline: one bare RefreshObjectCaches call to the same emulator, timed the same way.
"""

from __future__ import annotations

import math
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from bench.infra import (
    EmulatorProcess,
    RedisServer,
    Workers,
    bench_settings,
    make_settings,
    wait_until,
)
from bench.report import Result
from cdn_refresh.constants import ObjectType
from producer.producer import Producer
from worker.client import CdnClient

WORKERS = 1
CONCURRENCY = 2
TARGET_P50_S = 0.05
CALL_TIMEOUT_S = 15
BULK_CHUNK = 500
BULK_EVERY_S = 0.05
# Idle means no enqueue within the last FLUSH_DEBOUNCE_S (0.2 s): the paths come further apart.
IDLE_PAUSE_S = (0.25, 0.35)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _bare_call_s(settings: Any, count: int) -> float:
    """The median of ``count`` direct calls: what no queue can beat."""
    client = CdnClient(settings.provider)
    times = []
    for i in range(count):
        started = time.time()
        client.refresh_object_caches([f"https://bare.example.com/{i}"], ObjectType.FILE)
        times.append(time.time() - started)
    client.close()
    return statistics.median(times)


def _interactive(
    producer: Producer,
    emulator: EmulatorProcess,
    count: int,
    tag: str,
    rng: random.Random,
    pause_s: tuple[float, float],
) -> dict[str, float]:
    """Enqueue ``count`` single paths one after another; when each was sent before the call."""
    sent: dict[str, float] = {}
    for i in range(count):
        path = f"https://live.shop-example.com/{tag}/{i:06d}/detail.html"
        sent[f"{path}"] = time.time()
        producer.enqueue([path])
        wait_until(
            lambda p=path: p in _accepted(emulator),
            CALL_TIMEOUT_S,
            f"call for {tag} enqueue {i}",
            interval_s=0.005,
        )
        time.sleep(rng.uniform(*pause_s))
    return sent


_seen: set[str] = set()


def _accepted(emulator: EmulatorProcess) -> set[str]:
    # The emulator lists every call; re-reading the list is the bench's cost, not ours.
    for call in emulator.calls()[-50:]:
        _seen.update(call["paths"])
    return _seen


def _latencies(calls: list[dict[str, Any]], sent: dict[str, float]) -> list[float]:
    found = []
    for call in calls:
        for path in call["paths"]:
            if path in sent:
                found.append(call["time"] - sent[path])
    return found


def _bulk_load(producer: Producer, stop: threading.Event, enqueued: list[int]) -> None:
    i = 0
    while not stop.is_set():
        paths = [f"https://bulk.example.com/b/{i}/{k}" for k in range(BULK_CHUNK)]
        producer.enqueue(paths, priority="bulk")
        enqueued[0] += BULK_CHUNK
        i += 1
        time.sleep(BULK_EVERY_S)


def _rows(result: Result, label: str, latencies: list[float], bare_s: float) -> None:
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    ratio = {"baseline": f"bare call {bare_s * 1000:.1f} ms"}
    result.add(f"{label} p50", p50 * 1000, "ms", ratio=p50 / bare_s, **ratio)
    result.add(f"{label} p99", p99 * 1000, "ms", ratio=p99 / bare_s, **ratio)
    result.add(f"{label} mean", statistics.fmean(latencies) * 1000, "ms")


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    count = 30 if quick else 200
    result = Result(
        "latency",
        f"3. Latency of {count} single interactive enqueues, idle and under bulk load "
        f"({WORKERS} worker x concurrency {CONCURRENCY}, default FLUSH_DEBOUNCE_S 0.2)",
    )
    rng = random.Random(3)
    _seen.clear()
    with EmulatorProcess(100_000_000) as emulator:
        values = bench_settings(redis_server.url, emulator.url, url_daily_quota=100_000_000)
        settings = make_settings(values)
        bare_s = _bare_call_s(settings, 20)
        producer = Producer.from_settings(settings)
        bulk_producer = Producer.from_settings(settings)
        (workdir / "latency").mkdir(exist_ok=True)
        with Workers(values, workdir / "latency") as pool:
            pool.start(WORKERS, CONCURRENCY)
            # Connections warm first: not counted.
            _interactive(producer, emulator, 1, "warm", rng, IDLE_PAUSE_S)
            idle = _interactive(producer, emulator, count, "idle", rng, IDLE_PAUSE_S)
            calls_before = len(emulator.calls())
            stop, enqueued = threading.Event(), [0]
            loader = threading.Thread(target=_bulk_load, args=(bulk_producer, stop, enqueued))
            loader.start()
            try:
                loaded = _interactive(
                    producer, emulator, max(10, count // 2), "load", rng, (0.05, 0.1)
                )
            finally:
                stop.set()
                loader.join()
            wait_until(
                lambda: sum(p.startswith("https://bulk.") for p in _all(emulator)) >= enqueued[0],
                120,
                "the bulk paths",
            )
            calls = emulator.calls()
        producer.close()
        bulk_producer.close()
    _rows(result, "idle", _latencies(calls, idle), bare_s)
    under = _latencies(calls, loaded)
    _rows(result, "under load", under, bare_s)
    idle_p50 = percentile(_latencies(calls, idle), 0.5)
    result.rows[0].target, result.rows[0].ok = f"< {TARGET_P50_S * 1000:.0f} ms", idle_p50 < 0.05
    load_calls = len(calls) - calls_before
    fewest = math.ceil(enqueued[0] / 1000) + len(loaded)
    result.add(
        "calls under load",
        load_calls,
        "calls",
        baseline=f"fewest {fewest} ({enqueued[0]:,} bulk + {len(loaded)} interactive paths)",
        ratio=load_calls / fewest,
    )
    result.notes.append(
        "Idle: the first enqueue after a quiet debounce window wakes a flush at once (no "
        "countdown); under load the wake-ups batch as before (one trailing flush per "
        "FLUSH_DEBOUNCE_S), so bulk paths still go in full calls."
    )
    result.details = {
        "idle_ms": [round(x * 1000, 1) for x in _latencies(calls, idle)],
        "under_load_ms": [round(x * 1000, 1) for x in under],
    }
    return result


def _all(emulator: EmulatorProcess) -> list[str]:
    return [p for call in emulator.calls() for p in call["paths"]]
