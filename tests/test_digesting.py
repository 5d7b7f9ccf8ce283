"""Waiters keyed by a digest of the path, Files found for coverage without an index, and the
upgrade from schema 2 (waiters keyed by path, a File index) that moves them without loss."""

from __future__ import annotations

import json
import time

import pytest
import redis

from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.store import Store, scripts
from cdn_refresh.store.digesting import is_path_field
from cdn_refresh.store.keys import waiter_field
from cdn_refresh.store.records import Batch, PathState
from cdn_refresh.store.states import Release
from tests.harness import claim_batch, job_counts, store_and_producer

pytestmark = pytest.mark.redis

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY


def _to_schema_2(client: redis.Redis, store: Store) -> None:
    """The state as a schema-2 release left it: waiters keyed by path, the Files indexed."""
    for kind in (FILE, DIRECTORY):
        tk = store.keys.of(kind)
        for path in client.zrange(tk.pending, 0, -1):
            jobs = client.hget(tk.waiters, waiter_field(path))
            if jobs is not None:
                client.hdel(tk.waiters, waiter_field(path))
                client.hset(tk.waiters, path, jobs)
    files = store.keys.of(FILE)
    client.zadd(files.pending_lex, dict.fromkeys(client.zrange(files.pending, 0, -1), 0))


def test_python_and_lua_name_a_waiters_field_alike(redis_client: redis.Redis) -> None:
    paths = ["http://a.com/", "https://b.com:8080/img[1]/a*b?.png?v=1&w=\\", "http://c.com/%E4"]
    field = redis_client.register_script(scripts.shared() + "\nreturn waiter_field(ARGV[1])")
    for path in paths:
        assert field(keys=[], args=[path]) == waiter_field(path)
        assert len(waiter_field(path)) == 16 and not is_path_field(waiter_field(path))
        assert is_path_field(path)


def test_waiters_are_keyed_by_digest_and_only_directories_keep_an_index(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    one = producer.enqueue(["a.com/x.png", "a.com/y.png"])
    two = producer.enqueue(["a.com/x.png"])
    producer.enqueue(["a.com/d/"], DIRECTORY)
    files, dirs = store.keys.of(FILE), store.keys.of(DIRECTORY)
    assert redis_client.hgetall(files.waiters) == {
        waiter_field("http://a.com/x.png"): f"{one.job_id},{two.job_id}",
        waiter_field("http://a.com/y.png"): one.job_id,
    }
    assert not redis_client.exists(files.pending_lex)
    assert redis_client.zrange(dirs.pending_lex, 0, -1) == ["http://a.com/d/"]
    batch = claim_batch(store, FILE)
    stored = json.loads(redis_client.hget(store.keys.shared.batches, batch.id))
    assert stored["waiters"] == [f"{one.job_id},{two.job_id}", one.job_id]
    assert redis_client.hlen(files.waiters) == 0


def test_coverage_takes_the_files_under_directories_with_glob_characters_and_queries(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0)
    under = [
        "a.com/img[ab]/p*.png",
        "a.com/img[ab]/q?.png?v=1",
        "a.com/img[ab]/",  # the Directory's own path as a File ("with itself")
        "a.com/img[ab]/deep/r\\s.png",
        "b.com/s*/t.png?x=/other/",
    ]
    outside = [
        "a.com/imga/p.png",
        "a.com/img[ab]x/p.png",
        "a.com/other?/img[ab]/",
        "c.com/s*/t.png",
    ]
    job = producer.enqueue(under + outside, FILE, Priority.BULK)
    # Enough others that the Files' pending set is a hash table: the scan goes in steps.
    producer.enqueue([f"z.com/{i}.png" for i in range(300)], FILE, Priority.BULK)
    producer.enqueue(["a.com/img[ab]/", "b.com/s*/"], DIRECTORY)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage is not None and coverage.files == len(under)
    pending = set(redis_client.zrange(store.keys.of(FILE).pending, 0, -1))
    assert {f"http://{p}" for p in outside} <= pending
    assert not {f"http://{p}" for p in under} & pending
    # Each File in the entries of the Directory it lies under.
    entries = redis_client.hgetall(store.keys.shared.covered)
    by_directory: dict[str, set[str]] = {}
    for field, raw in entries.items():
        by_directory.setdefault(field.split("|")[1], set()).update(
            json.loads(raw)["files"]["paths"]
        )
    assert by_directory == {
        "http://a.com/img[ab]/": {f"http://{p}" for p in under[:4]},
        "http://b.com/s*/": {f"http://{under[4]}"},
    }
    store.batches.submit(coverage.batch, (), ("T",), "R")
    assert job_counts(producer, job.job_id) == {"submitted": len(under), "pending": len(outside)}
    for path in under:
        assert producer.lookup(path, FILE).state is PathState.SUBMITTED


@pytest.mark.parametrize("directory", ["a.com/x[1]/", "a.com/x*/", "a.com/x]/", "a.com/x\\/"])
def test_a_directory_alone_in_its_batch_takes_its_files_whatever_glob_characters_it_holds(
    redis_client: redis.Redis, directory: str
) -> None:
    # Alone in its batch, the Directory is the scan's whole MATCH prefix: unescaped, "x[1]"
    # would match "x1" and miss "x[1]" itself. (A Directory holds no "?": no query.)
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0)
    under = [f"{directory}{i}.png" for i in range(200)] + [f"{directory}q.png?v=[1]*"]
    job = producer.enqueue([*under, "a.com/x1/p.png", "a.com/xx/p.png"], FILE, Priority.BULK)
    producer.enqueue([directory], DIRECTORY)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage is not None and coverage.files == len(under)
    assert job_counts(producer, job.job_id) == {"in_flight": len(under), "pending": 2}


def test_coverage_in_small_steps_takes_every_file_once(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0)
    job = producer.enqueue([f"a.com/d/{i}.png" for i in range(2_000)], FILE, Priority.BULK)
    producer.enqueue([f"a.com/e/{i}.png" for i in range(500)], FILE, Priority.BULK)
    producer.enqueue(["a.com/d/"], DIRECTORY)
    monkeypatch.setattr("cdn_refresh.store.batches.COVER_STEP", 64)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage is not None and coverage.files == 2_000
    assert redis_client.zcard(store.keys.of(FILE).pending) == 500
    assert redis_client.hlen(store.keys.of(FILE).waiters) == 500
    assert job_counts(producer, job.job_id) == {"in_flight": 2_000}


def test_a_partial_upgrade_loses_no_waiter_and_the_jobs_complete(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0, urls_per_call=100)
    # More fields than a small hash keeps in one listpack: the scan goes in pages.
    jobs = [producer.enqueue([f"a.com/{j}/{i}.png" for i in range(250)]) for j in range(3)]
    shared = producer.enqueue(["a.com/0/0.png", "a.com/1/0.png"])
    producer.enqueue(["a.com/2/"], DIRECTORY)
    _to_schema_2(redis_client, store)
    files = store.keys.of(FILE)
    assert redis_client.zcard(files.pending_lex) == 750
    # One small page moved, as a worker killed mid-pass leaves it: both forms side by side.
    store.digesting.begin()
    cursor, moved = store.digesting.step(FILE, 0, count=10)
    assert cursor != 0 and 0 < moved < 750
    fields = redis_client.hkeys(files.waiters)
    assert any(is_path_field(f) for f in fields) and not all(is_path_field(f) for f in fields)
    assert producer.lookup("a.com/1/5.png", FILE).state is PathState.PENDING
    # Claims, coverage and a release read either form and write the new one.
    first = claim_batch(store, FILE)
    stored = json.loads(redis_client.hget(store.keys.shared.batches, first.id))
    assert len(stored["waiters"]) == 100 and all(stored["waiters"])
    store.batches.release(first.id, FILE, Release.REQUEUE)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage is not None and coverage.files == 250
    store.batches.submit(coverage.batch, (), ("TD",), "RD")
    assert not store.digesting.done()
    assert store.digesting.pass_once() >= 0
    assert store.digesting.pass_once() == 0  # a full pass found none left: done
    assert store.digesting.done()
    assert not redis_client.exists(files.pending_lex)
    assert not any(is_path_field(f) for f in redis_client.hkeys(files.waiters))
    while isinstance(batch := store.batches.claim(FILE), Batch):
        store.batches.submit(batch, (), (f"T{batch.id}",), "R")
    assert redis_client.zcard(files.pending) == 0
    for job in (*jobs, shared):
        assert producer.status(job.job_id).counts.pending == 0
        assert set(job_counts(producer, job.job_id)) == {"submitted"}


def test_a_producer_before_the_upgrade_writes_beside_the_old_form_and_the_pass_merges(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    old = producer.enqueue(["a.com/x.png", "a.com/y.png"])
    _to_schema_2(redis_client, store)
    # No worker of this release started yet: the enqueue writes the new form, beside the old
    # one or over it (while an old-form writer is left, scripts read both forms always).
    new = producer.enqueue(["a.com/x.png"])
    tk = store.keys.of(FILE)
    forms = [
        redis_client.hget(tk.waiters, f)
        for f in ("http://a.com/x.png", waiter_field("http://a.com/x.png"))
    ]
    assert {job for jobs in forms if jobs for job in jobs.split(",")} == {old.job_id, new.job_id}
    assert store.digesting.pass_once() >= 1
    assert store.digesting.pass_once() == 0 and store.digesting.done()
    assert not redis_client.exists(store.keys.shared.digesting)
    merged = {f: set(jobs.split(",")) for f, jobs in redis_client.hgetall(tk.waiters).items()}
    assert merged == {
        waiter_field("http://a.com/x.png"): {new.job_id, old.job_id},
        waiter_field("http://a.com/y.png"): {old.job_id},
    }
    store.batches.submit(claim_batch(store, FILE), (), ("T",), "R")
    assert job_counts(producer, old.job_id) == {"submitted": 2}
    assert job_counts(producer, new.job_id) == {"submitted": 1}


def test_the_upgrade_counts_a_job_under_both_forms_once(redis_client: redis.Redis) -> None:
    producer, store = store_and_producer(redis_client)
    job = producer.enqueue(["a.com/x.png"])
    tk = store.keys.of(FILE)
    # As a schema-2 writer would leave it beside a current one: the job under both forms.
    redis_client.hset(tk.waiters, "http://a.com/x.png", job.job_id)
    redis_client.hincrby(store.keys.shared.job_counts, f"{job.job_id}:pending", 1)
    assert store.digesting.pass_once() == 1
    assert redis_client.hgetall(tk.waiters) == {waiter_field("http://a.com/x.png"): job.job_id}
    assert job_counts(producer, job.job_id) == {"pending": 1}


def test_the_jobs_of_a_failed_task_follow_its_paths_back_after_the_upgrade(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, max_attempts=3)
    assert store.digesting.pass_once() == 0 and store.digesting.done()
    job = producer.enqueue(["a.com/1"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    (call,) = store.tracking.due(10, t0 + 60)
    store.tracking.settle(call, {"T1": "Failed"}, {"http://a.com/1": "T1"}, t0 + 60)
    assert not redis_client.exists(store.keys.of(FILE).pending_lex)
    batch = claim_batch(store, FILE, t0 + 61)
    store.batches.submit(batch, (), ("T2",), "R", t0 + 61)
    assert job_counts(producer, job) == {"submitted": 1}
