"""Benchmark 4: does the rolling quota hold when many worker processes race for it?

4 worker processes x concurrency 4 share URL_DAILY_QUOTA 2,000 and 20,000 pending paths;
the emulator's own quota is far higher, so it accepts whatever we send and counts it. Two
rounds: the default 1,000 paths per call (two claims can win), and 100 paths per call (twenty
claims race). After the quota is spent the bench waits through several ticks and flushes,
then counts what the emulator accepted.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from bench.data import unique_paths
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
from cdn_refresh.store import Store
from producer.producer import Producer

WORKERS = 4
CONCURRENCY = 4
QUOTA = 2_000
SETTLE_S = 3.0
FILL_TIMEOUT_S = 60


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    total = 20_000
    result = Result(
        "overshoot",
        f"4. Quota overshoot: {WORKERS} workers x concurrency {CONCURRENCY}, "
        f"URL_DAILY_QUOTA {QUOTA:,}, {total:,} unique paths",
    )
    rounds = [1_000] if quick else [1_000, 100]
    for per_call in rounds:
        redis_server.flush()
        with EmulatorProcess(100_000_000) as emulator:
            values = bench_settings(
                redis_server.url,
                emulator.url,
                url_daily_quota=QUOTA,
                urls_per_call=per_call,
                flush_interval_s=0.5,
                flush_debounce_s=0.05,
            )
            settings = make_settings(values)
            logdir = workdir / f"overshoot-{per_call}"
            logdir.mkdir(exist_ok=True)
            with Workers(values, logdir) as pool:
                pool.start(WORKERS, CONCURRENCY)
                producer = Producer.from_settings(settings)
                producer.enqueue(unique_paths(total, offset=per_call * 100_000))

                def accepted() -> int:
                    return int(emulator.stats()["quota"].get("url_used", 0))

                wait_until(lambda: accepted() >= QUOTA, FILL_TIMEOUT_S, "quota fill", 0.05)
                # Several ticks (0.5 s) and flushes later, nothing more may go out.
                time.sleep(SETTLE_S)
                store = Store(redis_server.client, settings)
                ours = store.quota.usage(ObjectType.FILE).used
                pending = store.quota.pending_count(ObjectType.FILE)
            calls = emulator.calls()
            requests = emulator.refresh_requests()
        paths = Counter(p for call in calls for p in call["paths"])
        sent = sum(paths.values())
        result.add(
            f"paths accepted, {per_call} paths/call",
            sent,
            "paths",
            target=f"= {QUOTA:,}",
            ok=sent == QUOTA,
        )
        result.notes.append(
            f"{per_call} paths/call: {len(calls)} calls accepted of {requests} made, "
            f"{len(paths):,} distinct paths (a path sent twice would show here), our own "
            f"count of the window {ours:,}, {pending:,} paths still pending "
            f"({total - QUOTA:,} expected)."
        )
    return result
