"""The measuring script of ``bench/redesign.py``: run inside one source tree, print JSON.

``python -P bench/redesign_probe.py '<json options>'`` with the tree to measure as the working
directory and as ``PYTHONPATH`` (``-P``: this file's own folder is not put on ``sys.path``).
It uses only what release 1628e5c and the working tree both have: ``Settings``,
``Store(client, settings)``, ``redis_from_settings``, ``store.batches.claim(ObjectType.FILE)``,
``store.batches.submit(batch, (), task_ids, request_id)`` and ``Producer(store).enqueue``. It
imports nothing from ``bench`` (the old tree's bench is not this one), and expects the Redis
database to be empty; it leaves it empty.

Options: ``redis_url``; ``paths_file`` (unique normalized File paths, one a line: enqueued for
the memory figure, then claimed and settled); ``lines_file`` (enqueue input: timed through
``Producer.enqueue``); ``claims`` (batches to claim, at most); ``pinned`` (settings by
name, the same in every tree).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis

import cdn_refresh
from cdn_refresh.constants import ObjectType
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store, redis_from_settings
from cdn_refresh.store.records import Batch
from producer.producer import Producer

TASK_ID = "90000001"


def _settings(redis_url: str, pinned: dict[str, Any]) -> Settings:
    # No .env, nothing from the environment; a quota no claim reaches; ``pinned``: the
    # settings whose default differs between the trees, given the same value in both.
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "endpoint": "http://127.0.0.1:9",
        "access_key_id": "testid",
        "access_key_secret": "testsecret",
        "log_level": "WARNING",
        "url_daily_quota": 10**9,
        **pinned,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _read(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def _script_usec(client: redis.Redis) -> tuple[int, int]:
    """(calls, microseconds) of every script run since the last ``CONFIG RESETSTAT``."""
    stats = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall"):
        if name in stats:
            calls += int(stats[name]["calls"])
            usec += int(stats[name]["usec"])
    return calls, usec


def _warm_up(client: redis.Redis, store: Store, producer: Producer, path: str) -> None:
    """Load every script this probe runs, so that neither the memory figure nor the first
    claim pays for it (``FLUSHALL`` keeps the script cache)."""
    producer.enqueue([path])
    batch = store.batches.claim(ObjectType.FILE)
    if not isinstance(batch, Batch):
        raise RuntimeError(f"warm-up claim answered {batch!r}")
    store.batches.submit(batch, (), (TASK_ID,), "warm-up")
    client.flushall()


def _key_sizes(client: redis.Redis, prefix: str) -> dict[str, int]:
    """``MEMORY USAGE`` of every key, named without the prefix and hash tag."""
    sizes: dict[str, int] = {}
    for key in client.scan_iter(count=1000):
        name = key.split("}", 1)[-1] if "}" in key else key.removeprefix(prefix)
        sizes[name.lstrip(":")] = int(client.memory_usage(key, samples=0) or 0)
    return sizes


def memory(client: redis.Redis, producer: Producer, paths: list[str]) -> dict[str, Any]:
    """Grow of ``used_memory`` while ``paths`` go in, as bench/memory.py measures it."""
    before = int(client.info("memory")["used_memory"])
    receipt = producer.enqueue(paths)
    after = int(client.info("memory")["used_memory"])
    if receipt.accepted != len(paths):
        raise RuntimeError(f"{receipt.accepted} of {len(paths)} unique paths accepted")
    return {"paths": len(paths), "used_memory": after - before}


def claim_and_settle(client: redis.Redis, store: Store, claims: int) -> dict[str, Any]:
    """Claim up to ``claims`` batches, timing each claim, then submit each, timing each."""
    batches: list[Batch] = []
    claim_s: list[float] = []
    client.config_resetstat()
    for _ in range(claims):
        started = time.perf_counter()
        batch = store.batches.claim(ObjectType.FILE)
        elapsed = time.perf_counter() - started
        if batch is None:
            break
        if not isinstance(batch, Batch):
            raise RuntimeError(f"claim answered {batch!r}")
        batches.append(batch)
        claim_s.append(elapsed)
    claim_calls, claim_usec = _script_usec(client)
    client.config_resetstat()
    settle_s: list[float] = []
    for n, batch in enumerate(batches):
        started = time.perf_counter()
        settled = store.batches.submit(batch, (), (TASK_ID,), f"bench-request-{n}")
        settle_s.append(time.perf_counter() - started)
        if settled.settled != len(batch.paths):
            raise RuntimeError(f"submit settled {settled} of {len(batch.paths)} paths")
    settle_calls, settle_usec = _script_usec(client)
    sizes = [len(b.paths) for b in batches]
    paths = sum(sizes)
    return {
        "batches": len(batches),
        "paths": paths,
        # Per batch: seconds per path; the caller takes the median.
        "claim_s_per_path": [t / n for t, n in zip(claim_s, sizes, strict=True)],
        "settle_s_per_path": [t / n for t, n in zip(settle_s, sizes, strict=True)],
        "claim_redis_us_per_path": claim_usec / paths if paths else 0.0,
        "settle_redis_us_per_path": settle_usec / paths if paths else 0.0,
        "claim_script_calls": claim_calls,
        "settle_script_calls": settle_calls,
    }


def enqueue(client: redis.Redis, producer: Producer, lines: list[str]) -> dict[str, Any]:
    """``Producer.enqueue`` of ``lines`` into an empty database."""
    client.flushall()
    started = time.perf_counter()
    receipt = producer.enqueue(lines)
    seconds = time.perf_counter() - started
    client.flushall()
    return {
        "lines": len(lines),
        "seconds": seconds,
        "accepted": receipt.accepted,
        "duplicates": receipt.duplicates,
    }


def main(options: dict[str, Any]) -> dict[str, Any]:
    settings = _settings(options["redis_url"], options.get("pinned", {}))
    client = redis_from_settings(settings)
    store = Store(client, settings)
    producer = Producer(store)
    paths = _read(options["paths_file"])
    lines = _read(options["lines_file"])
    client.flushall()
    _warm_up(client, store, producer, paths[0])
    out: dict[str, Any] = {"root": str(Path(cdn_refresh.__file__).resolve().parent.parent)}
    out["memory"] = memory(client, producer, paths)
    out["keys"] = _key_sizes(client, settings.key_prefix)
    out["claim"] = claim_and_settle(client, store, int(options["claims"]))
    out["enqueue"] = enqueue(client, producer, lines)
    out["claim"]["median_claim_s_per_path"] = statistics.median(out["claim"]["claim_s_per_path"])
    out["claim"]["median_settle_s_per_path"] = statistics.median(out["claim"]["settle_s_per_path"])
    client.close()
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
