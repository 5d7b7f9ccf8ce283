"""Benchmark 1: enqueue a large file of paths, through the API and the CLI, against the floor.

The floor writes the same normalized members with the primitive the store is built on
(``ZADD NX`` into one sorted set, 2,000 members a command, 4 commands a pipeline round trip,
as the producer does): no validation, no waiters, no job counts. The CLI's peak memory for a
small and a large file shows whether it streams (bounded) or holds the file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.data import enqueue_lines, write_lines
from bench.infra import (
    RedisServer,
    bench_settings,
    child_env,
    cpu_seconds,
    make_settings,
    run_measured,
)
from bench.report import Result
from cdn_refresh.store import Store, redis_from_settings
from producer.producer import Producer

FLOOR_CHUNK = 2_000
FLOOR_CHUNKS_PER_PIPELINE = 4
TARGET_RATIO = 0.5
TARGET_MEMORY_RATIO = 1.5
CLI_TIMEOUT_S = 120


def floor(client: redis.Redis, members: list[str], key: str) -> float:
    """Seconds to ZADD NX ``members`` (already normalized) in pipelined chunks."""
    rank = int(time.time() * 1000)
    started = time.perf_counter()
    step = FLOOR_CHUNK * FLOOR_CHUNKS_PER_PIPELINE
    for start in range(0, len(members), step):
        with client.pipeline(transaction=False) as pipe:
            for at in range(start, min(start + step, len(members)), FLOOR_CHUNK):
                pipe.zadd(key, dict.fromkeys(members[at : at + FLOOR_CHUNK], rank), nx=True)
            pipe.execute()
    return time.perf_counter() - started


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("cdn-refresh")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cdn_refresh"]


def run_cli(path: Path, env: dict[str, str]) -> tuple[dict[str, Any], float, int]:
    """``cdn-refresh enqueue --from-file PATH --json``: (receipt, seconds, peak RSS KiB)."""
    code, out, seconds, peak_kib = run_measured(
        [*cli_command(), "enqueue", "--from-file", str(path), "--json"], env, CLI_TIMEOUT_S
    )
    if code != 0:
        raise RuntimeError(f"cdn-refresh enqueue exited {code}: {out[-2000:]!r}")
    return json.loads(out), seconds, peak_kib


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    total = 100_000 if quick else 1_000_000
    small = 20_000 if quick else 200_000
    repeats = 1 if quick else 3
    result = Result("enqueue", f"1. Enqueue {total:,} File paths (half duplicates, 20 domains)")
    lines, normalized = enqueue_lines(total)
    unique = len(set(normalized))
    values = bench_settings(redis_server.url, "http://127.0.0.1:9")
    settings = make_settings(values)
    client = redis_from_settings(settings.redis)
    redis_pid = redis_server.process.pid

    # The floor: the same members, the store's primitive, nothing else.
    floor_runs = []
    for _ in range(repeats):
        redis_server.flush()
        rcpu0 = cpu_seconds(redis_pid)
        floor_runs.append(
            (floor(client, normalized, "bench:floor"), cpu_seconds(redis_pid) - rcpu0)
        )
    floor_s, rcpu_floor = min(floor_runs)
    floor_rate = total / floor_s
    result.add("floor: pipelined ZADD NX", floor_rate, "paths/s")

    # The producer API in this process (no flush notification: no Celery in the way).
    producer = Producer(Store(client, settings))
    api_runs = []
    for _ in range(repeats):
        redis_server.flush()
        marks: dict[str, float] = {}

        def progress(phase: str, n: int, marks: dict[str, float] = marks) -> None:
            marks[phase] = time.perf_counter()

        cpu0, rcpu0 = time.process_time(), cpu_seconds(redis_pid)
        started = time.perf_counter()
        receipt = producer.enqueue(lines, progress=progress)
        api_s = time.perf_counter() - started
        cpu = (time.process_time() - cpu0, cpu_seconds(redis_pid) - rcpu0)
        if (receipt.accepted, receipt.duplicates) != (unique, total - unique):
            raise AssertionError(f"API receipt {receipt.to_dict()} for {unique} unique paths")
        api_runs.append((api_s, marks["validated"] - started, cpu))
    api_s, validate_s, (cpu_api, rcpu_api) = min(api_runs)
    result.add(
        "Producer.enqueue",
        total / api_s,
        "paths/s",
        "floor",
        (total / api_s) / floor_rate,
        f">= {TARGET_RATIO}",
        (total / api_s) / floor_rate >= TARGET_RATIO,
    )
    result.notes.append(
        f"Best of {repeats} runs each. Producer.enqueue took {api_s:.2f} s: validation pass "
        f"{validate_s:.2f} s, Redis write pass {api_s - validate_s:.2f} s; CPU: this process "
        f"{cpu_api:.2f} s, redis-server {rcpu_api:.2f} s. The floor took {floor_s:.2f} s "
        f"(redis-server CPU {rcpu_floor:.2f} s)."
    )

    # The CLI, a child process reading a file, as a nightly job runs it.
    env = child_env(values)
    big_file = workdir / f"paths-{total}.txt"
    write_lines(big_file, lines)
    cli_runs = []
    for _ in range(repeats):
        redis_server.flush()
        cli_runs.append(run_cli(big_file, env))
    receipt_big = cli_runs[0][0]
    cli_s = min(seconds for _, seconds, _ in cli_runs)
    peak_big = max(peak for _, _, peak in cli_runs)
    if (receipt_big["accepted"], receipt_big["duplicates"]) != (unique, total - unique):
        raise AssertionError(f"CLI receipt {receipt_big} for {unique} unique paths")
    cli_rate = total / cli_s
    result.add(
        "cdn-refresh enqueue --from-file",
        cli_rate,
        "paths/s",
        "floor",
        cli_rate / floor_rate,
        f">= {TARGET_RATIO}",
        cli_rate / floor_rate >= TARGET_RATIO,
    )

    small_lines, _ = enqueue_lines(small)
    small_file = workdir / f"paths-{small}.txt"
    write_lines(small_file, small_lines)
    redis_server.flush()
    _, small_s, peak_small = run_cli(small_file, env)
    one_file = workdir / "paths-1.txt"
    write_lines(one_file, small_lines[:1])
    redis_server.flush()
    _, one_s, peak_one = run_cli(one_file, env)
    result.add(f"CLI peak RSS, {small:,} lines", peak_small / 1024, "MiB")
    result.add(
        f"CLI peak RSS, {total:,} lines",
        peak_big / 1024,
        "MiB",
        f"{small:,} lines",
        peak_big / peak_small,
        f"< {TARGET_MEMORY_RATIO}",
        peak_big / peak_small < TARGET_MEMORY_RATIO,
    )
    result.notes.append(
        f"CLI wall time includes interpreter start and imports: {one_s:.2f} s for a one-line "
        f"file, so {total:,} lines ran at {total / (cli_s - one_s):,.0f} paths/s once started. "
        f"{small:,} lines took {small_s:.2f} s."
    )
    result.notes.append(
        f"Peak RSS of the CLI on a one-line file: {peak_one / 1024:.0f} MiB (Python, redis-py, "
        "pydantic, click, Celery's client). Normalized paths are spooled in memory up to 8 MiB "
        "(about 120k paths), then in a temporary file: a larger file adds nothing."
    )
    redis_server.flush()
    client.close()
    for path in (big_file, small_file, one_file):
        path.unlink(missing_ok=True)
    return result
