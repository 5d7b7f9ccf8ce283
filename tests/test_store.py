"""The Redis side of the pipeline, against a real redis-server: coalescing, claiming within
the per-call and quota limits, settling, crash recovery, job status and lookup."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch, Release, Wait
from producer.producer import EnqueueRejectedError, Producer
from tests.conftest import make_settings

pytestmark = pytest.mark.redis


def _setup(redis_client: redis.Redis, **overrides: object) -> tuple[Producer, Store]:
    settings = make_settings(**overrides)
    return Producer(Store(redis_client, settings)), Store(redis_client, settings)


def _claim(store: Store, kind: str = "File", now: float | None = None) -> Batch:
    claimed = store.batches.claim(kind, time.time() if now is None else now)  # type: ignore[arg-type]
    assert isinstance(claimed, Batch), claimed
    return claimed


def test_enqueue_coalesces_spellings_and_repeats_within_and_across_jobs(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    first = producer.enqueue(["example.com/a.png", "HTTP://Example.COM:80/a.png#x", "b.com/1"])
    second = producer.enqueue(["http://example.com/a.png", "c.com/2"])
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (second.accepted, second.duplicates) == (1, 1)
    assert store.quota.pending_count("File") == 3
    # The later job follows the shared path: it waits on 2 paths, not 1.
    assert producer.status(second.job_id).to_dict()["counts"]["pending"] == 2
    assert producer.status(first.job_id).to_dict()["counts"]["pending"] == 2


def test_an_invalid_path_rejects_the_whole_request_and_enqueues_nothing(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    with pytest.raises(EnqueueRejectedError) as info:
        producer.enqueue(["a.com/ok", "a.com/x\nb.com/injected", "ftp://a.com/y"])
    rejected = info.value.receipt.rejected
    assert [(r.line, r.reason) for r in rejected] == [
        (2, "control character U+000A"),
        (3, "scheme ftp not allowed"),
    ]
    assert store.quota.pending_count("File") == 0
    assert redis_client.dbsize() == 0


def test_skip_invalid_enqueues_the_valid_paths_and_lists_the_rest(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    receipt = producer.enqueue(["a.com/ok", "", "*.a.com/x"], skip_invalid=True)
    assert receipt.accepted == 1
    assert [r.line for r in receipt.rejected] == [2, 3]
    assert store.quota.pending_count("File") == 1


def test_claim_packs_up_to_the_per_call_limit_oldest_first(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, urls_per_call=3, url_daily_quota=100)
    producer.enqueue([f"a.com/{i}" for i in range(5)])
    batch = _claim(store)
    assert len(batch.paths) == 3
    rest = _claim(store)
    assert len(rest.paths) == 2
    assert set(batch.paths) | set(rest.paths) == {f"http://a.com/{i}" for i in range(5)}
    assert store.batches.claim("File", time.time()) is None


def test_claim_never_puts_more_than_max_domains_in_one_call(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, max_domains_per_call=10, url_daily_quota=1000)
    producer.enqueue([f"d{i % 25}.example.com/{i}" for i in range(100)])
    seen: set[str] = set()
    while (claimed := store.batches.claim("File", time.time())) is not None:
        assert isinstance(claimed, Batch)
        assert len(claimed.domains) <= 10
        seen.update(claimed.paths)
    assert len(seen) == 100


def test_directories_use_their_own_limit_and_quota(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, directories_per_call=2, directory_daily_quota=3)
    producer.enqueue([f"a.com/d{i}/" for i in range(5)], object_type="Directory")
    assert len(_claim(store, "Directory").paths) == 2
    assert len(_claim(store, "Directory").paths) == 1
    wait = store.batches.claim("Directory", time.time())
    assert isinstance(wait, Wait) and wait.reason == "quota"
    assert store.quota.usage("File", time.time()).used == 0


def test_quota_is_a_rolling_window(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, url_daily_quota=2, quota_window_s=100)
    producer.enqueue([f"a.com/{i}" for i in range(4)])
    t0 = time.time()
    assert len(_claim(store, now=t0).paths) == 2
    wait = store.batches.claim("File", t0 + 10)
    assert isinstance(wait, Wait) and wait.reason == "quota"
    assert 89 <= wait.seconds <= 91
    assert len(_claim(store, now=t0 + 101).paths) == 2


def test_concurrent_claims_never_overshoot_the_quota(redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url, url_daily_quota=250, urls_per_call=7)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    Producer(Store(client, settings)).enqueue([f"h{i % 13}.com/{i}" for i in range(2000)])
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        local = redis.Redis.from_url(redis_url, decode_responses=True)
        store = Store(local, settings)
        while True:
            got = store.batches.claim("File", time.time())
            if not isinstance(got, Batch):
                break
            with lock:
                claimed.append(len(got.paths))
        local.close()

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(claimed) == 250
    assert Store(client, settings).quota.pending_count("File") == 1750
    client.close()


def test_bulk_work_cannot_spend_the_interactive_reserve(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, url_daily_quota=10, interactive_reserve=0.3)
    producer.enqueue([f"bulk.com/{i}" for i in range(20)], priority="bulk")
    assert len(_claim(store).paths) == 7
    wait = store.batches.claim("File", time.time())
    assert isinstance(wait, Wait) and wait.reason == "reserve"
    producer.enqueue(["live.com/1", "live.com/2", "live.com/3", "live.com/4"])
    batch = _claim(store)
    assert batch.paths == ("http://live.com/1", "http://live.com/2", "http://live.com/3")
    assert store.quota.usage("File", time.time()).remaining == 0


def test_interactive_enqueue_moves_a_pending_bulk_path_forward(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, urls_per_call=1)
    producer.enqueue(["a.com/1", "a.com/2"], priority="bulk")
    producer.enqueue(["a.com/2"])
    assert _claim(store).paths == ("http://a.com/2",)


def test_submitted_paths_are_recorded_with_task_ids_and_jobs_finish(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    job = producer.enqueue(["a.com/1", "b.com/2"]).job_id
    batch = _claim(store)
    assert producer.lookup("a.com/1").to_dict()["state"] == "in_flight"
    store.batches.submit(batch, (), ("7", "8"), "R1", time.time())
    status = producer.status(job).to_dict()
    assert status["state"] == "submitted"
    assert status["counts"] == {
        "pending": 0,
        "in_flight": 0,
        "submitted": 2,
        "failed": 0,
        "complete": 0,
    }
    assert status["task_ids"] == ["7", "8"]
    found = producer.lookup("http://a.com/1").to_dict()
    assert (found["state"], found["task_id"], found["request_id"]) == ("submitted", "7,8", "R1")
    # Settling again (a task run twice) changes nothing.
    again = store.batches.submit(batch, (), ("9",), "", time.time())
    assert again.settled == 0
    assert producer.status(job).to_dict()["task_ids"] == ["7", "8"]


def test_a_definite_error_returns_the_reservation_and_an_unknown_outcome_keeps_it(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client, url_daily_quota=10)
    producer.enqueue([f"a.com/{i}" for i in range(4)])
    batch = _claim(store)
    store.batches.release(
        batch.id, "File", Release.RETRY, time.time(), code="InternalError", return_quota=True
    )
    assert store.quota.usage("File", time.time()).used == 0
    batch = _claim(store)
    store.batches.release(
        batch.id, "File", Release.RETRY, time.time(), code="ReadTimeout", return_quota=False
    )
    assert store.quota.usage("File", time.time()).used == 4
    assert store.quota.pending_count("File") == 4
    assert producer.lookup("a.com/0").to_dict()["attempts"] == 2


def test_paths_are_dead_lettered_at_the_attempt_cap_and_replay_brings_them_back(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client, max_attempts=2)
    job = producer.enqueue(["a.com/1"]).job_id
    for _ in range(2):
        batch = _claim(store)
        store.batches.release(batch.id, "File", Release.RETRY, time.time(), code="InternalError")
    assert store.quota.pending_count("File") == 0
    assert producer.status(job).to_dict()["state"] == "failed"
    dead = [e.to_dict() for e in producer.dead_letters()]
    assert [(d["path"], d["code"], d["attempts"]) for d in dead] == [
        ("http://a.com/1", "InternalError", 2)
    ]
    assert producer.lookup("a.com/1").to_dict()["state"] == "failed"
    assert producer.replay() == 1
    assert producer.status(job).to_dict()["counts"]["pending"] == 1
    assert producer.lookup("a.com/1").to_dict()["attempts"] == 0


def test_an_expired_lease_returns_the_paths_to_pending_and_keeps_the_quota(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client, batch_lease_s=5)
    job = producer.enqueue(["a.com/1", "a.com/2"]).job_id
    t0 = time.time()
    batch = _claim(store, now=t0)
    assert store.batches.expired(t0 + 1) == []
    assert store.batches.expired(t0 + 6) == [(batch.id, "File")]
    done = store.batches.release(
        batch.id, "File", Release.RETRY, t0 + 6, code="WorkerLost", only_if_lease_expired=True
    )
    assert done.settled == 2
    assert store.quota.pending_count("File") == 2
    assert store.quota.usage("File", t0 + 6).used == 2
    assert producer.status(job).to_dict()["counts"]["pending"] == 2


def test_a_live_lease_is_not_reclaimed(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, batch_lease_s=60)
    producer.enqueue(["a.com/1"])
    batch = _claim(store)
    done = store.batches.release(
        batch.id, "File", Release.RETRY, time.time(), code="WorkerLost", only_if_lease_expired=True
    )
    assert done.settled == 0


def test_a_path_enqueued_again_while_in_flight_is_counted_once_when_it_returns(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    job = producer.enqueue(["a.com/1"]).job_id
    batch = _claim(store)
    producer.enqueue(["a.com/1"])  # new job
    producer.enqueue(["a.com/1"])  # the first job's path again, from a third job
    store.batches.release(batch.id, "File", Release.RETRY, time.time(), code="InternalError")
    assert store.quota.pending_count("File") == 1
    assert producer.status(job).to_dict()["counts"] == {
        "pending": 1,
        "in_flight": 0,
        "submitted": 0,
        "failed": 0,
        "complete": 0,
    }


def test_holds_stop_claims_until_they_expire(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client)
    producer.enqueue(["a.com/1"])
    store.quota.set_hold("File", 0.2, "QuotaExceeded.Refresh")
    wait = store.batches.claim("File", time.time())
    assert isinstance(wait, Wait) and wait.reason == "provider_quota"
    time.sleep(0.25)
    store.quota.set_auth_hold("SignatureDoesNotMatch", "bad", seconds=0.2, failures=1)
    wait = store.batches.claim("File", time.time())
    assert isinstance(wait, Wait) and wait.reason == "credentials"
    assert "SignatureDoesNotMatch" in str(producer.lookup("a.com/1").to_dict()["last_error"])
    time.sleep(0.25)
    assert isinstance(store.batches.claim("File", time.time()), Batch)


def test_old_records_and_jobs_are_trimmed_after_the_retention(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, record_retention_days=1)
    job = producer.enqueue(["a.com/1"]).job_id
    batch = _claim(store)
    store.batches.submit(batch, (), ("1",), "", time.time())
    assert store.retention.trim(time.time()) == 0
    assert store.retention.trim(time.time() + 2 * 86400) == 2
    assert producer.lookup("a.com/1").to_dict()["state"] == "unknown"
    with pytest.raises(KeyError):
        producer.status(job).to_dict()


def test_a_credential_error_stays_visible_between_holds_until_a_call_goes_through(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    job = producer.enqueue(["a.com/1"]).job_id
    store.quota.set_auth_hold(
        "InvalidAccessKeyId.NotFound", "no such key", seconds=0.05, failures=1
    )
    time.sleep(0.1)  # the hold is over; the next claim may try again
    assert "InvalidAccessKeyId.NotFound" in producer.status(job).to_dict()["last_error"]
    batch = _claim(store)
    store.batches.submit(batch, (), ("1",), "", time.time())
    assert producer.status(job).to_dict()["last_error"] is None
    assert producer.lookup("a.com/1").to_dict()["last_error"] is None


def test_a_producer_used_as_a_context_manager_closes_its_connections(redis_url: str) -> None:
    settings = make_settings(redis_url=redis_url)
    store = Store.from_settings(settings)
    with Producer(store) as producer:
        assert producer.enqueue(["a.com/1"]).accepted == 1
        pool = store.redis.connection_pool
        opened = list(pool._available_connections)
        assert opened and all(c._sock is not None for c in opened)
    assert all(c._sock is None for c in opened)


def test_a_short_backoff_never_cuts_a_longer_one_short(redis_client: redis.Redis) -> None:
    _, store = _setup(redis_client)
    store.quota.set_backoff("File", 30)  # the provider asked for 30 s
    store.quota.set_backoff("File", 0.05)  # another worker's jittered backoff
    assert redis_client.pttl(store.keys.of("File").backoff) > 29_000
    store.quota.set_hold("File", 60, "QuotaExceeded.Refresh")
    store.quota.set_hold("File", 1, "QuotaExceeded.Refresh")
    assert redis_client.pttl(store.keys.of("File").hold) > 59_000


def test_claims_use_redis_clock_not_the_workers(redis_client: redis.Redis) -> None:
    producer, store = _setup(redis_client, url_daily_quota=10)
    producer.enqueue(["a.com/1"])
    _claim_default = store.batches.claim("File")
    assert isinstance(_claim_default, Batch)
    ((_, reserved_at),) = redis_client.zrange(store.keys.of("File").quota, 0, -1, withscores=True)
    seconds, micros = redis_client.time()
    assert abs(reserved_at - (seconds + micros / 1e6)) < 5


def test_a_path_dead_lettered_for_two_jobs_keeps_both_and_replays_both(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    first = producer.enqueue(["a.com/1"]).job_id
    batch = _claim(store)
    second = producer.enqueue(["a.com/1"]).job_id  # pending again while the first is in flight
    store.batches.release(batch.id, "File", Release.FAILED, code="InvalidObjectPath.Malformed")
    store.batches.release(
        _claim(store).id, "File", Release.FAILED, code="InvalidObjectPath.Malformed"
    )
    assert (
        producer.status(first).to_dict()["state"]
        == producer.status(second).to_dict()["state"]
        == "failed"
    )
    assert producer.replay() == 1
    assert producer.status(first).to_dict()["counts"]["pending"] == 1
    assert producer.status(second).to_dict()["counts"]["pending"] == 1


def test_a_later_submission_takes_the_path_out_of_the_dead_letter_set(
    redis_client: redis.Redis,
) -> None:
    producer, store = _setup(redis_client)
    producer.enqueue(["a.com/1"])
    batch = _claim(store)
    producer.enqueue(["a.com/1"])
    store.batches.release(batch.id, "File", Release.FAILED, code="InvalidObjectPath.Malformed")
    store.batches.submit(_claim(store), (), ("9",), "")
    assert [e.to_dict() for e in producer.dead_letters()] == []
    found = producer.lookup("a.com/1").to_dict()
    assert (found["state"], found["task_id"]) == ("submitted", "9")


def test_a_new_problem_after_an_outage_starts_its_own_streak(redis_client: redis.Redis) -> None:
    store = Store(redis_client, make_settings())
    for _ in range(3):
        outage = store.quota.count_hold_failure("ConnectError")
        store.quota.set_auth_hold("ConnectError", "refused", seconds=0.01, failures=outage)
    assert outage == 3
    # The endpoint answers again, with a wrong key: the first of its own streak, said once.
    assert store.quota.count_hold_failure("SignatureDoesNotMatch") == 1
