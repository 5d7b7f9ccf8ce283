"""Benchmark 5: Redis memory per pending path, against the length of the path itself.

200,000 unique paths of about 65 characters are enqueued into an empty Redis; the growth of
``INFO memory`` ``used_memory`` is divided by the paths pending. ``MEMORY USAGE`` of the two
keys that hold a pending File path (the ``pending`` sorted set, and the ``waiters`` hash keyed
by a 16-hex digest of the path) splits the figure. The Files keep no coverage index (the
benchmark fails if one appears): only the few Directories do.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.data import unique_paths
from bench.infra import RedisServer, bench_settings, make_settings
from bench.report import Result
from cdn_refresh.constants import ObjectType
from cdn_refresh.store import Store, redis_from_settings
from producer.producer import Producer


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    total = 20_000 if quick else 200_000
    result = Result("memory", f"5. Redis memory per pending path ({total:,} unique paths)")
    paths = unique_paths(total, offset=7_000_000)
    settings = make_settings(bench_settings(redis_server.url, "http://127.0.0.1:9"))
    client = redis_from_settings(settings.redis)
    store = Store(client, settings)
    producer = Producer(store)
    producer.enqueue(paths[:1])  # load the script: its memory is not the paths'
    redis_server.flush()
    info = redis_server.client
    before = int(info.info("memory")["used_memory"])
    producer.enqueue(paths)
    after = int(info.info("memory")["used_memory"])
    keys = store.keys.of(ObjectType.FILE)
    pending = int(info.zcard(keys.pending))
    zset = int(info.memory_usage(keys.pending, samples=0) or 0)
    indexed = int(info.exists(keys.pending_lex))
    waiters = int(info.memory_usage(keys.waiters, samples=0) or 0)
    client.close()
    if pending != total:
        raise AssertionError(f"{pending} pending of {total}")
    if indexed:
        raise AssertionError("the Files have a coverage index again: a second copy of each path")
    length = statistics.fmean(len(p) for p in paths)
    result.add("average path length", length, "B")
    for metric, size in (
        ("used_memory per pending path", after - before),
        ("  of which the pending ZSET", zset),
        ("  of which the waiters HASH", waiters),
    ):
        result.add(metric, size / pending, "B/path", "path length", size / pending / length)
    result.notes.append(
        "Each pending File path is stored once, as a member of the pending sorted set (hash "
        "table entry + skiplist node, one shared string); the waiters hash holds a 16-hex "
        "digest of it (SHA-1, 64 bits: two of 200,000 paths share one with odds of about "
        "1e-9) with the waiting job ids as value. The Files keep no coverage index (schema 2 "
        "kept a second copy of each path, in byte order, for ZRANGEBYLEX): the Files under a "
        "claimed Directory are found by a bounded ZSCAN of the pending set. used_memory also "
        "grows with Redis's own allocator and hash-table overheads (tables grow by powers of "
        "two)."
    )
    return result
