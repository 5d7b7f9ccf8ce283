"""Benchmark: enqueue over the HTTP API (a real uvicorn on loopback), against the Python
``Producer`` in this process, in the same run and on the same Redis.

Throughput: bodies of 1,000 distinct paths each, POSTed one after the other on one
keep-alive connection, as a backend would send a batch; the baseline enqueues the same
lists with ``Producer.enqueue``. Latency: the p50 (and p95) of a one-path POST, against a
one-path ``Producer.enqueue``. The API wakes the workers as in production (a debounced
Celery message; no worker runs here), the baseline does not: the API pays that too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.data import unique_paths
from bench.infra import RedisServer, bench_settings, child_env, make_settings
from bench.report import Result
from cdn_refresh.store import Store, redis_from_settings
from producer.producer import Producer
from sandbox.local import ApiProcess

TOKEN = "bench-token"
PATHS_PER_BODY = 1_000
TARGET_RATIO = 0.5


def _timed_bodies(send: Callable[[list[str]], None], bodies: list[list[str]]) -> float:
    started = time.perf_counter()
    for paths in bodies:
        send(paths)
    return time.perf_counter() - started


def _latencies_ms(send: Callable[[list[str]], None], singles: list[str]) -> list[float]:
    out = []
    for path in singles:
        started = time.perf_counter()
        send([path])
        out.append((time.perf_counter() - started) * 1000)
    return out


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    bodies_n = 20 if quick else 200
    singles_n = 100 if quick else 1_000
    repeats = 1 if quick else 3
    result = Result(
        "http-api", f"HTTP API: {bodies_n} POSTs of {PATHS_PER_BODY:,} paths, one-path POSTs"
    )
    # A quota large enough that the backlog warning stays quiet: it is not what is measured.
    values = bench_settings(
        redis_server.url, "http://127.0.0.1:9", api_tokens=TOKEN, url_daily_quota=10**9
    )
    settings = make_settings(values)
    everything = unique_paths(bodies_n * PATHS_PER_BODY + singles_n)
    bodies = [
        everything[i : i + PATHS_PER_BODY]
        for i in range(0, bodies_n * PATHS_PER_BODY, PATHS_PER_BODY)
    ]
    singles = everything[bodies_n * PATHS_PER_BODY :]
    producer = Producer(Store(redis_from_settings(settings.redis), settings))

    def by_producer(paths: list[str]) -> None:
        producer.enqueue(paths)

    with (
        ApiProcess(child_env(values), workdir / "api.log") as api,
        httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as http,
    ):

        def by_http(paths: list[str]) -> None:
            answer = http.post("/v1/refresh", json={"paths": paths})
            if answer.status_code != 202:
                raise RuntimeError(f"POST answered {answer.status_code}: {answer.text[:500]}")

        by_http(["warm.example.com/up"])  # first request: imports, connections
        producer_s = http_s = float("inf")
        for _ in range(repeats):
            redis_server.flush()
            producer_s = min(producer_s, _timed_bodies(by_producer, bodies))
            redis_server.flush()
            http_s = min(http_s, _timed_bodies(by_http, bodies))
        redis_server.flush()
        base_ms = _latencies_ms(by_producer, singles)
        redis_server.flush()
        http_ms = _latencies_ms(by_http, singles)
    producer.close()
    _report(result, bodies_n, producer_s, http_s, base_ms, http_ms, repeats)
    return result


def _report(
    result: Result,
    bodies_n: int,
    producer_s: float,
    http_s: float,
    base_ms: list[float],
    http_ms: list[float],
    repeats: int,
) -> None:
    total = bodies_n * PATHS_PER_BODY
    producer_rate, http_rate = total / producer_s, total / http_s
    result.add("Producer.enqueue, 1,000-path lists", producer_rate, "paths/s")
    result.add(
        "POST /v1/refresh, 1,000-path bodies",
        http_rate,
        "paths/s",
        "Producer.enqueue",
        http_rate / producer_rate,
        f">= {TARGET_RATIO}",
        http_rate / producer_rate >= TARGET_RATIO,
    )
    p50_base, p50_http = statistics.median(base_ms), statistics.median(http_ms)
    p95_http = statistics.quantiles(http_ms, n=20)[-1]
    result.add("Producer.enqueue, one path: p50", p50_base, "ms")
    result.add(
        "POST /v1/refresh, one path: p50", p50_http, "ms", "Producer.enqueue", p50_http / p50_base
    )
    result.notes.append(
        f"Best of {repeats} runs. One 1,000-path body: {http_s / bodies_n * 1000:.2f} ms over "
        f"HTTP, {producer_s / bodies_n * 1000:.2f} ms in process. One-path enqueue p50 "
        f"{p50_http:.2f} ms over HTTP (p95 {p95_http:.2f} ms), {p50_base:.2f} ms in process."
    )
