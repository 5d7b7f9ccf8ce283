"""A deployment upgraded to the states table reads and drains what the code before it stored:
tests/data/pre_states_redis.json holds the keys that code left (pending, cooling-free and in
flight paths, records, tracked calls, dead letters, job counts) and what it answered of them
(made by tests/data/make_pre_states_redis.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from cdn_refresh.constants import OBJECT_TYPES, ObjectType
from cdn_refresh.store.records import Batch, Release
from cdn_refresh.store.states import WAITING_STATES, PathState
from tests.harness import store_and_producer

pytestmark = pytest.mark.redis

FIXTURE = Path(__file__).parent / "data" / "pre_states_redis.json"


def _load(client: redis.Redis, keys: dict[str, Any]) -> None:
    for key, entry in keys.items():
        value = entry["value"]
        if entry["type"] == "string":
            client.set(key, value)
        elif entry["type"] == "hash":
            client.hset(key, mapping=value)
        elif entry["type"] == "zset":
            client.zadd(key, {member: score for member, score in value})
        elif entry["type"] == "set":
            client.sadd(key, *value)
        else:
            client.rpush(key, *value)


@pytest.fixture
def stored(redis_client: redis.Redis) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    _load(redis_client, data["keys"])
    return data


def test_lookup_status_and_dead_letters_read_the_old_data_as_the_old_code_did(
    redis_client: redis.Redis, stored: dict[str, Any]
) -> None:
    producer, _ = store_and_producer(redis_client)
    answers = stored["answers"]
    for (path, kind), before in zip(stored["paths"], answers["lookup"], strict=True):
        assert producer.lookup(path, kind).to_dict() == before
    for job, before in zip(stored["jobs"], answers["status"], strict=True):
        assert producer.status(job).to_dict() == before
    assert [d.to_dict() for d in producer.dead_letters()] == answers["dead"]


def _drain(redis_client: redis.Redis, now: float) -> None:
    """Send everything the old code left waiting, and settle it, with today's scripts."""
    producer, store = store_and_producer(redis_client)
    # What a worker of this release does at its start: the old waiters move to their digest.
    store.digesting.pass_once()
    for batch_id, kind in store.batches.expired(now):
        store.batches.release(batch_id, kind, Release.REQUEUE, now, only_if_lease_expired=True)
    assert producer.replay() == 1
    for kind in (ObjectType.DIRECTORY, ObjectType.FILE):
        while isinstance(batch := store.batches.claim(kind, now), Batch):
            if kind is ObjectType.DIRECTORY:
                coverage = store.batches.cover(batch)
                assert coverage is not None
                batch = coverage.batch
            store.batches.submit(batch, (), (f"T-{batch.id}",), "R", now)
    for call in store.tracking.due(100, now + 86_400):
        statuses = {task: "Complete" for task in call.task_ids}
        store.tracking.settle(call, statuses, {}, now + 86_400)


def test_the_old_data_drains_with_every_job_count_settled(
    redis_client: redis.Redis, stored: dict[str, Any]
) -> None:
    # Past every lease and cooldown the old code set (its clock was the real one).
    _drain(redis_client, time.time() + 2 * 86_400)
    producer, store = store_and_producer(redis_client)
    for kind in OBJECT_TYPES:
        assert store.quota.pending_count(kind) == 0
    assert store.batches.count() == 0 and list(producer.dead_letters()) == []
    for job in stored["jobs"]:
        counts = producer.status(job).counts
        assert all(getattr(counts, s.value) == 0 for s in WAITING_STATES), (job, counts)
    raw = redis_client.hgetall(store.keys.shared.job_counts)
    assert all(int(n) >= 0 for n in raw.values()), raw
    *asked, (never, _) = stored["paths"]
    assert never == "http://never.com/seen"
    for path, kind in asked:
        assert producer.lookup(path, kind).state is PathState.COMPLETE, path
