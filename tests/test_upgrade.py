"""An upgrade from release 1628e5c keeps a deployment's queue.

``data/upgrade_from_1628e5c.json`` is a deployment's Redis as that release's own code left it
(``data/make_upgrade_fixture.py`` made it, and says how to make it again). Each test loads it
into a real redis-server, its times moved to now, and reads or drains it with this release's
code: every old path keeps its state and task id, every job reads, the stored quota window and
its reservations still count, a worker drains every pending path exactly once (one stored
spelled with ``..`` moves to this release's spelling at the worker's start, with its jobs, so
that no Directory takes it for lying under it), the old waiters (keyed by path) move to their
digest and the Files' old coverage index goes, the old dead letters replay, and an old
Idempotency-Key still answers its job. A worker of this release refuses to start beside a
live worker of that release (docs/operations.md, "Upgrades").
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cdn_refresh.constants import ObjectType
from cdn_refresh.store.digesting import is_path_field
from cdn_refresh.store.keys import waiter_field
from cdn_refresh.store.liveness import SCHEMA
from cdn_refresh.store.records import JobState, PathState
from emulator import EmulatorConfig, EmulatorServer
from emulator.paths import served_as
from sandbox.local import ApiProcess
from tests.conftest import make_store
from tests.harness import (
    Cluster,
    WorkerProcess,
    celery_worker_argv,
    cluster_values,
    job_counts,
    store_and_producer,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.redis]

FIXTURE = Path(__file__).parent / "data" / "upgrade_from_1628e5c.json"
DOCUMENT: dict[str, Any] = json.loads(FIXTURE.read_text())
EXPECT: dict[str, Any] = DOCUMENT["expect"]
FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY
# Scores and values between these are Unix times (s): moved by the load. Ranks (ms) are not.
SECONDS = (1e9, 1e10)
API_PATH = "https://cdn.example.com/api/one.json"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=3, url_quota=100_000, dir_quota=10_000)) as server:
        yield server


def load_fixture(client: redis.Redis) -> float:
    """Write every key of the fixture, each time moved by (Redis's clock - the export's);
    returns that shift (s)."""
    seconds, micros = client.time()
    shift = seconds + micros / 1e6 - float(DOCUMENT["now"])
    with client.pipeline(transaction=False) as pipe:
        for entry in DOCUMENT["keys"]:
            key, kind, value = entry["key"], entry["type"], entry["value"]
            if kind == "string":
                pipe.set(key, value)
            elif kind == "hash":
                pipe.hset(key, mapping=value)
            elif kind == "zset":
                moved = {m: s + shift if SECONDS[0] < s < SECONDS[1] else s for m, s in value}
                pipe.zadd(key, moved)
            elif kind == "set":
                pipe.sadd(key, *value)
            elif kind == "list":
                pipe.rpush(key, *value)
            if entry["ttl_ms"] > 0:
                pipe.pexpire(key, entry["ttl_ms"])
        pipe.execute()
    return shift


def all_pending() -> list[tuple[str, ObjectType]]:
    return [(p, FILE) for p in EXPECT["files"]["pending"]] + [
        (p, DIRECTORY) for p in EXPECT["directories"]["pending"]
    ]


def test_the_fixture_is_small_and_holds_every_kind_of_old_state() -> None:
    assert FIXTURE.stat().st_size < 300_000
    kinds = {entry["type"] for entry in DOCUMENT["keys"]}
    assert {"string", "hash", "zset"} <= kinds
    assert DOCUMENT["release"] == "1628e5c"
    assert EXPECT["states"]["done"] == "done"  # what that release called submitted


def test_after_an_upgrade_each_old_path_and_job_reads_as_it_stood(
    redis_client: redis.Redis,
) -> None:
    load_fixture(redis_client)
    producer, store = store_and_producer(redis_client)
    for path, kind in all_pending():
        # A path stored with a dot segment is found under its stored spelling (a lookup of
        # that spelling now normalizes it to the path without them).
        found = store.paths.lookup(path, kind) if ".." in path else producer.lookup(path, kind)
        assert found.state is PathState.PENDING, (path, found)
    tasks_of = {job: task for task, job in EXPECT["tasks"].items()}
    for path in EXPECT["files"]["submitted"]:
        found = producer.lookup(path, FILE)
        assert found.state is PathState.SUBMITTED, (path, found)
        job = "done" if "/done/" in path else "mixed"
        assert found.task_id == tasks_of[job]
    static = producer.lookup(EXPECT["directories"]["submitted"][0], DIRECTORY)
    assert (static.state, static.task_id) == (PathState.SUBMITTED, "9201")
    for path in EXPECT["files"]["failed"]:
        assert producer.lookup(path, FILE).state is PathState.FAILED
    dead = {letter.path: letter for letter in producer.dead_letters()}
    assert set(dead) == set(EXPECT["files"]["failed"])
    assert {d.code for d in dead.values()} == {"InvalidObjectPath.Malformed"}
    states = {job: producer.status(j).state for job, j in EXPECT["jobs"].items()}
    assert states == {
        "done": JobState.SUBMITTED,  # "done" in that release
        "mixed": JobState.IN_PROGRESS,
        "bulk": JobState.PENDING,
        "coalesced": JobState.PENDING,
        "dir_sent": JobState.SUBMITTED,
        "dirs": JobState.PENDING,
        "api": JobState.PENDING,
    }
    assert JobState("done") is JobState.SUBMITTED
    assert producer.status(EXPECT["jobs"]["done"]).task_ids == ("9001",)


def test_after_an_upgrade_the_stored_window_and_its_reservations_still_count(
    redis_client: redis.Redis,
) -> None:
    load_fixture(redis_client)
    # A process configured with another window reads the stored one, and is told to use it.
    store = make_store(redis_client, quota_window_s=3600.0, url_daily_quota=40)
    for kind in (FILE, DIRECTORY):
        usage = store.quota.usage(kind)
        assert usage.used == EXPECT["quota_used"][kind.value]
        assert usage.window_s == EXPECT["window_s"]
    assert store.quota.stored_window_s() == EXPECT["window_s"]
    with pytest.raises(Exception, match="window of 86400 s"):
        store.quota.check_window()
    # That release stored no limit: the first claim of this one stores its own.
    assert store.quota.stored_limit(FILE) is None
    make_store(redis_client, url_daily_quota=40).quota.check_limits()


@pytest.mark.e2e
def test_an_upgraded_worker_sends_every_old_pending_path_once_and_replays_old_dead_letters(
    cluster: Cluster,
) -> None:
    load_fixture(cluster.redis)
    limits = EXPECT["limits"]
    cluster.configure(url_daily_quota=limits["File"], directory_daily_quota=limits["Directory"])
    cluster.start_workers(1)
    pending = all_pending()
    wait_for(lambda: len(cluster.accepted()) >= len(pending), 60, cluster.logs)
    time.sleep(1.5)  # several ticks later, nothing goes twice
    sent = Counter(cluster.accepted())
    # A path stored with dot segments goes once, respelled as this release spells it: the
    # object the CDN serves for the stored spelling (served_as), never dropped.
    assert sent == Counter(served_as(p) for p, _ in pending)
    dotted = EXPECT["dotted"]
    for kind in (FILE, DIRECTORY):
        found = cluster.producer.lookup(dotted[kind.value], kind)  # either spelling finds it
        assert found.state in (PathState.SUBMITTED, PathState.COMPLETE), found
    for kind in (FILE, DIRECTORY):
        usage = cluster.store.quota.usage(kind)
        drained = sum(1 for _, k in pending if k is kind)
        assert usage.used == EXPECT["quota_used"][kind.value] + drained <= limits[kind.value]
        assert usage.window_s == EXPECT["window_s"]
    jobs = EXPECT["jobs"]
    ended = {JobState.SUBMITTED, JobState.COMPLETE}
    for job in ("done", "bulk", "coalesced", "dir_sent", "dirs", "api"):
        assert cluster.producer.status(jobs[job]).state in ended, job
    assert cluster.producer.status(jobs["mixed"]).state is JobState.FAILED
    # The worker moved the old waiters to their digest and dropped the Files' old index.
    assert cluster.store.digesting.done()
    assert not cluster.redis.exists(cluster.store.keys.of(FILE).pending_lex)

    assert cluster.producer.replay() == len(EXPECT["files"]["failed"])
    wait_for(
        lambda: cluster.producer.status(jobs["mixed"]).state in ended,
        60,
        lambda: json.dumps(cluster.producer.status(jobs["mixed"]).to_dict()) + cluster.logs(),
    )
    sent = Counter(cluster.accepted())
    assert all(sent[p] == 1 for p in EXPECT["files"]["failed"])
    assert list(cluster.producer.dead_letters()) == []
    assert cluster.store.quota.usage(FILE).used <= limits["File"]


@pytest.mark.e2e
def test_an_upgraded_worker_never_spends_past_the_old_reservations(cluster: Cluster) -> None:
    load_fixture(cluster.redis)
    used = EXPECT["quota_used"]["File"]
    cluster.configure(url_daily_quota=used + 3, directory_daily_quota=EXPECT["limits"]["Directory"])
    cluster.start_workers(1)
    wait_for(lambda: sum(1 for p in cluster.accepted() if p[-1] != "/") >= 3, 60, cluster.logs)
    time.sleep(2)  # several ticks and flushes later, still nothing more goes out
    files = [p for p in cluster.accepted() if not p.endswith("/")]
    assert len(files) == 3
    assert cluster.store.quota.usage(FILE).used == used + 3


def test_a_pending_path_stored_with_dot_segments_moves_to_its_new_spelling_with_its_jobs(
    redis_client: redis.Redis,
) -> None:
    load_fixture(redis_client)
    producer, store = store_and_producer(redis_client)
    stored, spelled = EXPECT["dotted"]["File"], "https://cdn.example.com/logo.png"
    rank = store.redis.zscore(store.keys.of(FILE).pending, stored)
    # Asked for again under the new spelling, by the job that waits on the old one and
    # another: the two spellings are one path once respelled.
    coalesced = EXPECT["jobs"]["coalesced"]
    later = producer.enqueue([spelled]).job_id
    redis_client.hset(store.keys.of(FILE).waiters, spelled, f"{coalesced},{later}")
    redis_client.hincrby(store.keys.shared.job_counts, f"{coalesced}:pending", 1)
    pending_before = producer.status(coalesced).counts.pending
    assert store.respelling.dot_segments() == 2
    assert store.respelling.dot_segments() == 0  # nothing left to move
    tk = store.keys.of(FILE)
    assert store.redis.zscore(tk.pending, stored) is None
    assert store.redis.zscore(tk.pending, spelled) == rank  # the sooner rank: the old one
    assert store.redis.zscore(tk.pending_lex, spelled) is None  # Files keep no index
    # Under the new spelling's digest, whichever form each spelling's jobs were under.
    assert redis_client.hget(tk.waiters, stored) is None
    assert redis_client.hget(tk.waiters, spelled) is None
    jobs = redis_client.hget(tk.waiters, waiter_field(spelled))
    assert set(jobs.split(",")) == {coalesced, later}
    assert producer.status(coalesced).counts.pending == pending_before - 1
    for kind in (FILE, DIRECTORY):
        assert producer.lookup(EXPECT["dotted"][kind.value], kind).state is PathState.PENDING


def test_the_old_waiters_move_to_their_digest_and_the_old_file_index_goes(
    redis_client: redis.Redis,
) -> None:
    load_fixture(redis_client)
    producer, store = store_and_producer(redis_client)
    files = store.keys.of(FILE)
    old_fields = {
        kind: set(redis_client.hkeys(store.keys.of(kind).waiters)) for kind in (FILE, DIRECTORY)
    }
    assert old_fields[FILE] and all(is_path_field(f) for f in old_fields[FILE])
    assert redis_client.zcard(files.pending_lex) > 0
    before = {job: job_counts(producer, j) for job, j in EXPECT["jobs"].items()}
    # Before the upgrade is done, a lookup and a job's counts read the old form as they stood.
    for path, kind in all_pending():
        assert store.paths.lookup(path, kind).state is PathState.PENDING
    moved = store.digesting.pass_once()
    assert moved == len(old_fields[FILE]) + len(old_fields[DIRECTORY])
    assert not store.digesting.done()  # the next pass (a tick) checks that none came back
    assert store.digesting.pass_once() == 0
    assert store.digesting.done()
    assert not redis_client.exists(files.pending_lex)
    for kind in (FILE, DIRECTORY):
        waiters = redis_client.hgetall(store.keys.of(kind).waiters)
        assert set(waiters) == {waiter_field(p) for p in old_fields[kind]}
    assert {job: job_counts(producer, j) for job, j in EXPECT["jobs"].items()} == before


@pytest.mark.e2e
def test_a_directory_never_settles_an_old_dot_spelled_path_that_lies_outside_it(
    cluster: Cluster,
) -> None:
    load_fixture(cluster.redis)
    limits = EXPECT["limits"]
    cluster.configure(url_daily_quota=limits["File"], directory_daily_quota=limits["Directory"])
    # Textually under /img/, served as /logo.png: a refresh of /img/ does not reach it.
    cluster.producer.enqueue(["https://cdn.example.com/img/"], ObjectType.DIRECTORY)
    cluster.start_workers(1)
    wait_for(lambda: "https://cdn.example.com/logo.png" in cluster.accepted(), 60, cluster.logs)
    answer = cluster.emulator.state.refreshed([EXPECT["dotted"]["File"]])
    assert answer[0]["refreshed"] and answer[0]["how"] == "itself", answer


def test_an_old_idempotency_key_still_answers_its_job_after_the_upgrade(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    load_fixture(redis_client)
    token = EXPECT["api_token"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": EXPECT["idempotency_key"]}
    env = worker_env(redis_url=redis_url, api_tokens=token)
    with ApiProcess(env, tmp_path / "api.log") as api, httpx.Client(base_url=api.url) as http:
        # The same body as the POST that made the key (the generator's).
        answer = http.post("/v1/refresh", json={"paths": [API_PATH]}, headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["job_id"] == EXPECT["jobs"]["api"]
    assert redis_client.get("{cdnr}:job_seq") == str(len(EXPECT["jobs"]))  # no second job


def test_a_worker_of_this_release_registers_its_schema_and_sees_no_older_one(
    redis_client: redis.Redis,
) -> None:
    store = make_store(redis_client)
    store.liveness.beat("host:1:current", 30)
    assert redis_client.hget(store.keys.shared.worker_schemas, "host:1:current") == str(SCHEMA)
    assert store.liveness.older_workers() == []
    redis_client.zadd(store.keys.shared.heartbeats, {"host:2:old": store.now() + 30})
    assert store.liveness.older_workers() == ["host:2:old"]
    store.liveness.leave("host:1:current")
    assert redis_client.hget(store.keys.shared.worker_schemas, "host:1:current") is None


@pytest.mark.e2e
def test_a_worker_refuses_to_start_beside_a_live_worker_of_an_older_release(
    redis_client: redis.Redis, redis_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    load_fixture(redis_client)
    store = make_store(redis_client)
    # A 1628e5c worker's heartbeat: its process name, no schema registered.
    old = "old-host:4242:0123abcd"
    redis_client.zadd(store.keys.shared.heartbeats, {old: store.now() + 120})
    env = worker_env(**cluster_values(redis_url, emulator.url, url_daily_quota=40))
    argv = celery_worker_argv(name="w", concurrency=1)
    worker = WorkerProcess(env, tmp_path / "refused.log", name="w", argv=argv)
    try:
        wait_for(lambda: worker.process.poll() is not None, 30, worker.log)
        assert worker.process.returncode != 0
        log = worker.log()
        assert f"a worker of an older release is running on this Redis ({old})" in log
        assert "stop every older worker first" in log
        assert " ready." not in log and "testsecret" not in log
    finally:
        worker.stop()
    assert emulator.state.calls() == []  # nothing was sent
    # Once the old worker is stopped (its heartbeat gone), this release starts.
    redis_client.zrem(store.keys.shared.heartbeats, old)
    worker = WorkerProcess(env, tmp_path / "started.log", name="w", argv=argv)
    try:
        worker.wait_ready()
    finally:
        worker.stop()


def test_a_dot_spelled_path_that_comes_back_to_pending_later_is_respelled_by_the_tick_pass(
    redis_client: redis.Redis,
) -> None:
    store = make_store(redis_client)
    tk = store.keys.of(FILE)
    old = "https://cdn.example.com/img/../late.png"
    # In a batch of a worker killed before the upgrade: not pending at the worker's start.
    redis_client.hset(store.keys.shared.batches, "7", json.dumps({"paths": [old]}))
    assert store.respelling.pass_once() == 0
    assert not store.respelling.done()  # it may come back: the tick keeps looking
    # Reclaimed: back to pending under its old spelling, then the next pass respells it.
    redis_client.hdel(store.keys.shared.batches, "7")
    redis_client.zadd(tk.pending, {old: 1})
    redis_client.zadd(tk.pending_lex, {old: 0})
    assert store.respelling.pass_once() == 1
    assert redis_client.zscore(tk.pending, "https://cdn.example.com/late.png") == 1
    assert store.respelling.done()
    # Finished for good: a pass is one read from now on.
    redis_client.zadd(tk.pending, {old: 2})
    assert store.respelling.pass_once() == 0


def test_the_schema_of_a_starting_worker_is_not_forgotten_before_its_first_heartbeat(
    redis_client: redis.Redis,
) -> None:
    store = make_store(redis_client)
    k = store.keys.shared
    # Its schema is written, its heartbeat not yet; and a killed worker's heartbeat ran out.
    redis_client.hset(k.worker_schemas, "host:2:starting", 2)
    redis_client.hset(k.worker_schemas, "host:3:killed", 2)
    redis_client.zadd(k.heartbeats, {"host:3:killed": 1})
    assert store.liveness.older_workers() == []
    assert redis_client.hget(k.worker_schemas, "host:2:starting") == "2"
    assert redis_client.hget(k.worker_schemas, "host:3:killed") is None
