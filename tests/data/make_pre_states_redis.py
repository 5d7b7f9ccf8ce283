"""Write tests/data/pre_states_redis.json: a deployment's Redis as the code before the states
table (main at c5ae608) left it, and what lookup, status and dead-letter list said of it.

Run once, from a checkout of that code with a redis-server on PATH::

    python tests/data/make_pre_states_redis.py OUT.json

tests/test_upgrade_states.py loads the keys into a fresh Redis and holds today's code to the
same answers. The quota window's keys are left out: what they say depends on the clock.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.local import RedisServer
from cdn_refresh.store.records import Release
from tests.harness import claim_batch, store_and_producer

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY


def dump(client: redis.Redis) -> dict[str, Any]:
    """Every key with its type, value and time to live (ms, -1: none)."""
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        value: Any = {
            "string": lambda k: client.get(k),
            "hash": lambda k: client.hgetall(k),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "set": lambda k: sorted(client.smembers(k)),
            "list": lambda k: client.lrange(k, 0, -1),
        }[kind](key)
        out[key] = {"type": kind, "value": value, "pttl": client.pttl(key)}
    return out


def scenario(client: redis.Redis) -> tuple[list[tuple[str, ObjectType]], list[str]]:
    """Paths in every state, jobs in every state; returns the paths and jobs to read back."""
    producer, store = store_and_producer(client)
    t0 = time.time()
    a = producer.enqueue([f"a.com/{i}" for i in range(1, 9)]).job_id
    batch = claim_batch(store, FILE, t0)
    covered = producer.enqueue(["b.com/d/x.png"], FILE, Priority.BULK).job_id
    paths = batch.paths
    store.batches.submit(batch, paths[:3], ("T1", "T2"), "R1", t0)
    store.batches.release(batch.id, FILE, Release.FAILED, t0, paths=paths[3:5], code="Bad")
    store.batches.release(batch.id, FILE, Release.RETRY, t0, paths=paths[5:6], code="Slow")
    (call,) = store.tracking.due(10, t0 + 3600)
    task_of = {paths[0]: "T1", paths[1]: "T1", paths[2]: "T2"}
    store.tracking.settle(call, {"T1": "Complete", "T2": "Failed"}, task_of, t0 + 60)
    directory = producer.enqueue(["b.com/d/"], DIRECTORY).job_id
    coverage = store.batches.cover(claim_batch(store, DIRECTORY, t0 + 61))
    assert coverage is not None and coverage.files == 1
    store.batches.submit(coverage.batch, (), ("D1",), "R2", t0 + 61)
    again = producer.enqueue(["a.com/1", "a.com/4", "c.com/new"]).job_id
    # An enqueue that died part way: the job reads incomplete.
    header = store.jobs.header(producer.enqueue(["e.com/1"]).job_id)
    assert header is not None
    store.jobs.abandon(header)
    known = [(p, FILE) for p in paths] + [
        ("http://b.com/d/x.png", FILE),
        ("http://b.com/d/", DIRECTORY),
        ("http://c.com/new", FILE),
        ("http://never.com/seen", FILE),
    ]
    return known, [a, covered, directory, again, header.job_id]


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            client = redis.Redis.from_url(server.url, decode_responses=True)
            known, jobs = scenario(client)
            for key in list(client.scan_iter("*quota*")):
                client.delete(key)
            producer, _ = store_and_producer(client)
            answers = {
                "lookup": [producer.lookup(p, k).to_dict() for p, k in known],
                "status": [producer.status(j).to_dict() for j in jobs],
                "dead": [d.to_dict() for d in producer.dead_letters()],
            }
            data = {"keys": dump(client), "paths": known, "jobs": jobs, "answers": answers}
            out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        finally:
            server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
