"""Benchmark 7: getting more out of the quota (coverage, cooldown, promotion).

Three parts, each compared with a baseline measured in the same run:

1. **Nightly purge.** 50,000 URLs over 3 domains in a realistic tree: dated article pages
   (``/YYYY/MM/DD/slug/``) with 5-20 assets each, plus shared ``/static/`` files; quota
   2,000 URLs and 100 directories a day. The drain runs on the store itself (claim, cover,
   submit) on a simulated clock, so 25 days take seconds: days to drain and units spent,
   without promotion (the baseline) and with it.
2. **Claim cost.** File claims of 1,000 paths while Directories are pending on the same
   hosts (so every claimed File is checked against them), as a ratio to the same claims
   with no Directory pending (the check is then one ZCARD).
3. **Repeats.** 4 producers request 2,500 distinct paths twice each over about 7 s, with a
   real worker and the emulator: units spent per distinct path with no cooldown (the
   baseline) and with a 60 s cooldown (the default), counted when the burst has drained.
4. **Repeats under quota pressure**, at the default settings: 1,250 distinct paths twice
   each (2,500 requests) and a quota of 1,000 URLs: units that went to a repeat while a path
   never refreshed waited (goal: none).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path

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
from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch, Wait
from producer.producer import Producer
from worker.promotion import Promoter

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY
HOSTS = ("www.news.example", "img.news.example", "cdn.shop.example")
DAY_S = 86_400.0


def nightly_tree(total: int, seed: int = 7) -> list[str]:
    """``total`` File paths: article pages with their assets, and shared static files."""
    rng = random.Random(seed)
    paths: list[str] = []
    static = [
        f"https://{h}/static/{kind}/{i}.{kind}"
        for h in HOSTS
        for kind in ("css", "js")
        for i in range(total // 200)
    ]
    paths += static
    article = 0
    while len(paths) < total:
        host = HOSTS[article % len(HOSTS)]
        day = 1 + rng.randrange(60)
        month, day = (11, day) if day <= 30 else (12, day - 30)
        base = f"https://{host}/2026/{month:02d}/{day:02d}/story-{article}/"
        paths.append(base + "index.html")
        paths += [f"{base}img/{a}.jpg" for a in range(rng.randint(5, 20))]
        article += 1
    return paths[:total]


def _drain(store: Store, promote: bool, start: float) -> tuple[float, int, int]:
    """Claim, cover and submit until nothing is pending, moving a simulated clock past
    each quota wait. Returns (days, URL units, Directory units)."""
    promoter = Promoter(store, store.settings, interval_s=0.001)
    now, units = start, {FILE: 0, DIRECTORY: 0}
    while store.quota.types_pending():
        if promote:
            promoter.maybe_promote(now)
            time.sleep(0.002)  # the promotion turn is a real-time TTL
        waits: list[float] = []
        for kind in (DIRECTORY, FILE):
            while True:
                claimed = store.batches.claim(kind, now)
                if isinstance(claimed, Batch):
                    if kind is DIRECTORY:
                        claimed = store.batches.cover(claimed).batch
                    units[kind] += len(claimed.paths)
                    store.batches.submit(claimed, (), ("1",), "bench", now)
                    continue
                if isinstance(claimed, Wait):
                    waits.append(claimed.seconds)
                break
        if store.quota.types_pending():
            now += max(1.0, min(waits, default=DAY_S))
    return (now - start) / DAY_S, units[FILE], units[DIRECTORY]


def _purge(redis_server: RedisServer, result: Result, total: int) -> None:
    paths = nightly_tree(total)
    figures = {}
    for promote in (False, True):
        redis_server.flush()
        settings = make_settings(
            bench_settings(
                redis_server.url, "http://127.0.0.1:9", promote="auto" if promote else "off"
            )
        )
        store = Store(redis_server.client, settings)
        Producer(store).enqueue(paths, FILE, Priority.BULK)
        figures[promote] = _drain(store, promote, store.now())
    (base_days, base_urls, base_dirs), (days, urls, dirs) = figures[False], figures[True]
    result.add("nightly purge: days to drain, no promotion", base_days, "days", baseline="baseline")
    result.add(
        "nightly purge: days to drain, promotion",
        days,
        "days",
        baseline=f"{days / base_days:.3f}x" if base_days else "",
        target="<= 1 day",
        ok=days <= 1,
    )
    result.notes.append(
        f"Nightly purge of {total:,} URLs over {len(HOSTS)} domains: without promotion "
        f"{base_urls:,} URL units and {base_dirs} Directory units; with promotion {urls:,} "
        f"URL units and {dirs} Directory units (every path settled, by itself or under a "
        "Directory)."
    )


def _claim_cost(redis_server: RedisServer, result: Result, reps: int) -> None:
    files = nightly_tree(20_000, seed=11)
    # Pending Directories on the same hosts, none above the claimed Files, on one side only:
    # there every claimed File is checked and none waits; on the other no Directory is
    # pending, so the check is one ZCARD. Both sides claim the same batches.
    dirs = [f"https://{h}/archive/{i}/" for h in HOSTS for i in range(30)]
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(reps):
        stores = twin_stores(redis_server, "claim")
        Producer(stores[True]).enqueue(dirs, DIRECTORY, Priority.BULK)
        for store in stores.values():
            Producer(store).enqueue(files, FILE, Priority.BULK)
        for _ in range(10):
            for directories_pending, store in stores.items():
                started = time.perf_counter()
                claimed = store.batches.claim(FILE)
                timings[directories_pending].append(time.perf_counter() - started)
                assert isinstance(claimed, Batch) and len(claimed.paths) == 1_000
    with_checks, without = statistics.median(timings[True]), statistics.median(timings[False])
    result.add(
        "claim of 1,000 Files, no Directory pending",
        without * 1000,
        "ms",
        baseline="baseline",
    )
    result.add(
        f"claim of 1,000 Files, {len(dirs)} Directories pending (each File checked)",
        with_checks * 1000,
        "ms",
        baseline=f"{with_checks / without:.2f}x",
        target="<= 1.2x",
        ok=with_checks / without <= 1.2,
    )
    result.notes.append(
        f"Claim cost: the median of {len(timings[True])} claims each way, taken in turn on two "
        f"queues of the same {len(files):,} Files, one with {len(dirs)} Directories pending on "
        "the same hosts (none above the Files), one with none."
    )


def _repeats(redis_server: RedisServer, workdir: Path, result: Result, unique: int) -> None:
    distinct = [f"https://www.cms.example/page/{i}.html" for i in range(unique)]
    per_path: dict[float, float] = {}
    for cooldown in (0.0, 60.0):
        sent, cooling = _repeat_round(redis_server, workdir, distinct, cooldown)
        per_path[cooldown] = sent / unique
        if cooldown:
            result.notes.append(
                f"Repeats with a 60 s cooldown: {sent:,} URL units for {unique:,} distinct "
                f"paths once the burst drained; {cooling:,} repeats wait for their cooldown "
                "and go out once each when it ends (the last request is always followed by a "
                "refresh), so the day's total is at most 2 per path, against one per request."
            )
    result.add(
        "repeats: URL units per distinct path, no cooldown",
        per_path[0.0],
        "units",
        baseline="baseline",
    )
    result.add(
        "repeats: URL units per distinct path, 60 s cooldown",
        per_path[60.0],
        "units",
        baseline=f"{per_path[60.0] / per_path[0.0]:.2f}x",
        target="1.0",
        ok=per_path[60.0] <= 1.0,
    )


def _repeats_under_pressure(
    redis_server: RedisServer, workdir: Path, result: Result, unique: int
) -> None:
    """At the default settings: ``unique`` distinct paths asked for twice, seconds apart, with
    a quota of 80 % of them: no unit may go to a repeat while a first refresh waits."""
    redis_server.flush()
    quota = unique * 4 // 5
    distinct = [f"https://www.cms.example/news/{i}.html" for i in range(unique)]
    with EmulatorProcess(100_000_000) as emulator:
        values = bench_settings(redis_server.url, emulator.url, url_daily_quota=quota)
        settings = make_settings(values)
        logdir = workdir / "repeats-pressure"
        logdir.mkdir(exist_ok=True)
        with Workers(values, logdir) as pool:
            pool.start(1, 4)
            _burst(settings, distinct)
            store = Store(redis_server.client, settings)
            wait_until(lambda: store.quota.usage(FILE).used >= quota, 60, "quota spent", 0.1)
            wait_until(lambda: store.batches.count() == 0, 30, "calls settled", 0.1)
            sent = [p for call in emulator.calls() for p in call["paths"]]
    repeats = len(sent) - len(set(sent))
    result.add(
        f"quota pressure at the defaults: units on repeats ({unique:,} paths x2, quota {quota:,})",
        repeats,
        "units",
        target="0",
        ok=repeats == 0,
    )
    result.notes.append(
        f"Quota pressure at the default settings: {unique:,} distinct paths, each asked for "
        f"twice seconds apart by 4 producers, {quota:,} URL units: {len(sent):,} units spent, "
        f"{len(set(sent)):,} on distinct paths and {repeats} on repeats; the repeats wait for "
        "the window to free, after the first refreshes."
    )


def _repeat_round(
    redis_server: RedisServer, workdir: Path, distinct: list[str], cooldown: float
) -> tuple[int, int]:
    """One burst with a real worker: (URL units sent once it drained, paths cooling)."""
    redis_server.flush()
    with EmulatorProcess(100_000_000) as emulator:
        values = bench_settings(
            redis_server.url,
            emulator.url,
            refresh_cooldown_s=cooldown,
            url_daily_quota=1_000_000,
            flush_interval_s=0.5,
            flush_debounce_s=0.2,
        )
        settings = make_settings(values)
        logdir = workdir / f"repeats-{cooldown:g}"
        logdir.mkdir(exist_ok=True)
        with Workers(values, logdir) as pool:
            pool.start(1, 4)
            _burst(settings, distinct)
            store = Store(redis_server.client, settings)
            wait_until(
                lambda: store.quota.pending_count(FILE) == 0 and store.batches.count() == 0,
                60,
                "burst drained",
                0.1,
            )
            time.sleep(1.0)
            sent = sum(len(call["paths"]) for call in emulator.calls())
            return sent, store.quota.cooling_count(FILE)


def _burst(settings: Settings, distinct: list[str]) -> None:
    """4 producers, every path twice, in 10-path jobs spread over about 7 s."""
    requests = distinct * 2
    random.Random(3).shuffle(requests)
    streams = [requests[i::4] for i in range(4)]

    def produce(stream: list[str]) -> None:
        producer = Producer.from_settings(settings)
        jobs = [stream[i : i + 10] for i in range(0, len(stream), 10)]
        gap = 7.0 / len(jobs)
        for job in jobs:
            producer.enqueue(job)
            time.sleep(gap)
        producer.close()

    threads = [threading.Thread(target=produce, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    total = 10_000 if quick else 50_000
    unique = 500 if quick else 2_500
    result = Result("savings", "7. Getting more out of the quota: coverage, cooldown, promotion")
    _purge(redis_server, result, total)
    _claim_cost(redis_server, result, 3 if quick else 7)
    _repeats(redis_server, workdir, result, unique)
    _repeats_under_pressure(redis_server, workdir, result, unique // 2)
    return result
