"""Each section of a claim on its own, through the Store API against a real redis-server:
evicting the window, the room left (ours with its reserve, and the provider's count),
releasing cooled paths, what waits for a Directory, packing by domain."""

from __future__ import annotations

import time

import pytest
import redis

from cdn_refresh.constants import PROVIDER_COUNT_MARGIN_S, ObjectType, Priority
from cdn_refresh.provider_day import last_reset
from cdn_refresh.store.records import Wait, WaitReason
from tests.harness import claim_batch, store_and_producer

pytestmark = pytest.mark.redis

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY


def _wait(claimed: object, reason: WaitReason) -> Wait:
    assert isinstance(claimed, Wait), claimed
    assert claimed.reason is reason
    return claimed


def test_evicting_the_window_frees_only_the_reservations_older_than_it(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(
        redis_client, url_daily_quota=3, urls_per_call=2, quota_window_s=100
    )
    producer.enqueue([f"a.com/{i}" for i in range(6)])
    t0 = time.time()
    claim_batch(store, FILE, t0)
    claim_batch(store, FILE, t0 + 50)  # one path: the window holds 3
    assert _wait(store.batches.claim(FILE, t0 + 60), WaitReason.QUOTA).seconds == (
        pytest.approx(40)
    )
    # At t0 + 100 the first reservation (2 paths) leaves; the second (1 path) stays.
    assert len(claim_batch(store, FILE, t0 + 100).paths) == 2
    quota = store.keys.of(FILE).quota
    assert [at for _, at in redis_client.zrange(quota, 0, -1, withscores=True)] == [
        t0 + 50,
        t0 + 100,
    ]
    assert redis_client.get(store.keys.of(FILE).quota_total) == "3"


def test_bulk_work_leaves_the_reserve_of_the_stored_limit_to_interactive_paths(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(
        redis_client, url_daily_quota=10, urls_per_call=100, interactive_reserve=0.3
    )
    producer.enqueue([f"a.com/bulk/{i}" for i in range(20)], FILE, Priority.BULK)
    t0 = time.time()
    assert len(claim_batch(store, FILE, t0).paths) == 7
    _wait(store.batches.claim(FILE, t0 + 1), WaitReason.RESERVE)
    producer.enqueue(["a.com/now/1", "a.com/now/2"])
    assert claim_batch(store, FILE, t0 + 2).paths == ("http://a.com/now/1", "http://a.com/now/2")
    # Another worker configured with a larger limit keeps the stored one, and its reserve.
    _, other = store_and_producer(redis_client, url_daily_quota=1000, interactive_reserve=0.3)
    _wait(other.batches.claim(FILE, t0 + 3), WaitReason.RESERVE)


def test_the_provider_count_caps_a_batch_less_what_we_reserved_since_it_answered(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, url_daily_quota=100, urls_per_call=100)
    producer.enqueue([f"a.com/{i}" for i in range(20)])
    t0 = time.time()
    claim_batch(store, FILE, t0)  # 20 paths, reserved before the provider's answer below
    producer.enqueue([f"b.com/{i}" for i in range(20)])
    # The provider answered 5 left, 10 s after our reservation: within the margin, so it
    # may not have counted it yet.
    store.quota.record_provider(FILE, 5, 100, t0 + 10)
    _wait(store.batches.claim(FILE, t0 + 11), WaitReason.PROVIDER_QUOTA)
    # Answered long after the reservation (it is counted): 5 may go.
    store.quota.record_provider(FILE, 5, 100, t0 + PROVIDER_COUNT_MARGIN_S + 1)
    assert len(claim_batch(store, FILE, t0 + PROVIDER_COUNT_MARGIN_S + 2).paths) == 5


def test_a_spent_provider_count_waits_for_its_reset_and_an_old_one_says_nothing(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, url_daily_quota=100)
    producer.enqueue(["a.com/1"])
    t0 = time.time()
    store.quota.record_provider(FILE, 0, 100, t0)
    wait = _wait(store.batches.claim(FILE, t0 + 1), WaitReason.PROVIDER_QUOTA)
    assert wait.seconds == pytest.approx(max(1, last_reset(t0 + 1) + 86400 - (t0 + 1)))
    # A count read before the provider's last reset is no count at all.
    store.quota.record_provider(FILE, 0, 100, last_reset(t0) - 1)
    assert claim_batch(store, FILE, t0 + 2).paths == ("http://a.com/1",)


def test_cooled_paths_go_back_to_pending_at_their_rank_when_the_cooldown_ends(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=60, urls_per_call=1)
    producer.enqueue(["a.com/hot"])
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    producer.enqueue(["a.com/hot"])  # early: it cools
    producer.enqueue(["a.com/later"], FILE, Priority.BULK)
    assert claim_batch(store, FILE, t0 + 1).paths == ("http://a.com/later",)
    assert store.quota.cooling_count(FILE) == 1
    _wait(store.batches.claim(FILE, t0 + 2), WaitReason.COOLDOWN)
    assert claim_batch(store, FILE, t0 + 61).paths == ("http://a.com/hot",)
    assert store.quota.cooling_count(FILE) == 0
    assert redis_client.hlen(store.keys.of(FILE).cooling_rank) == 0


def test_a_file_waits_for_a_directory_above_it_only_while_that_directory_can_go(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, directory_daily_quota=1)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    producer.enqueue(["a.com/img/1.png", "a.com/txt/1.txt"])
    t0 = time.time()
    assert claim_batch(store, FILE, t0).paths == ("http://a.com/txt/1.txt",)
    # Claimed and being covered: a File under it still waits.
    directory = claim_batch(store, DIRECTORY, t0 + 1)
    assert store.batches.claim(FILE, t0 + 2) is None
    store.batches.submit(store.batches.cover(directory).batch, (), ("T",), "R", t0 + 3)
    # The Directory window is spent now: a File under the next Directory goes on its own.
    producer.enqueue(["a.com/css/"], DIRECTORY)
    producer.enqueue(["a.com/css/1.css"])
    assert claim_batch(store, FILE, t0 + 4).paths == ("http://a.com/css/1.css",)


@pytest.mark.parametrize("stop", ["hold", "backoff"])
def test_a_directory_on_hold_or_backing_off_holds_back_no_file(
    redis_client: redis.Redis, stop: str
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    producer.enqueue(["a.com/img/1.png"])
    if stop == "hold":
        store.quota.set_hold(DIRECTORY, 30, "quota")
    else:
        store.quota.set_backoff(DIRECTORY, 30)
    assert claim_batch(store, FILE).paths == ("http://a.com/img/1.png",)


def test_packing_by_domain_takes_paths_in_rank_order_from_at_most_the_domain_limit(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, max_domains_per_call=2, urls_per_call=4)
    for path in ("a.com/1", "b.com/1", "c.com/1", "a.com:8080/2", "c.com/2", "b.com/2"):
        producer.enqueue([path])
    # c.com is a third domain (a port is no other domain): it waits for the next batch.
    assert claim_batch(store, FILE).paths == (
        "http://a.com/1",
        "http://b.com/1",
        "http://a.com:8080/2",
        "http://b.com/2",
    )
    assert claim_batch(store, FILE).paths == ("http://c.com/1", "http://c.com/2")
