"""A Redis that may evict keys accepts nothing and gives nothing to claim: producer, API and
worker say why. Each test runs its own redis-server, with the policy it needs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cdn_refresh.store import RedisEvictsError, Store
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import Producer
from sandbox.local import ApiProcess
from sandbox.local import RedisServer as LocalRedis
from tests.conftest import RedisServer, make_settings
from tests.harness import WorkerProcess, cluster_values, wait_for, worker_env
from worker.client import CdnClient
from worker.pipeline import Flusher

pytestmark = pytest.mark.redis

TOKEN = "tok-eviction-5c1d"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _set_policy(url: str, policy: str, maxmemory: int = 0) -> None:
    client = redis.Redis.from_url(url)
    client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory", maxmemory)
    client.close()


def _keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return list(client.keys("*"))
    finally:
        client.close()


def test_an_evicting_redis_refuses_the_enqueue_it_would_have_lost(own_redis: LocalRedis) -> None:
    # What was seen: 4 MB under allkeys-lru, 30,000 paths "accepted", most evicted at once.
    _set_policy(own_redis.url, "allkeys-lru", 4 * 1024 * 1024)
    producer = Producer.from_settings(make_settings(redis_url=own_redis.url), notify_workers=False)
    paths = [f"https://big.example.com/assets/{i:06d}/image.png" for i in range(30_000)]
    try:
        with pytest.raises(RedisEvictsError) as caught:
            producer.enqueue(paths)
        message = str(caught.value)
        assert "allkeys-lru" in message and "noeviction" in message
        assert "CDN_REFRESH_ALLOW_EVICTION" in message
        assert _keys(own_redis.url) == []  # nothing read, nothing written
    finally:
        producer.close()


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lfu", "volatile-ttl"])
def test_every_evicting_policy_is_refused_and_noeviction_is_not(
    own_redis: LocalRedis, policy: str
) -> None:
    _set_policy(own_redis.url, policy)
    store = Store.from_settings(make_settings(redis_url=own_redis.url))
    with pytest.raises(RedisEvictsError, match=policy):
        Producer(store).enqueue(["a.example.com/1"])
    _set_policy(own_redis.url, "noeviction")
    store.eviction.check(fresh=True)
    assert Producer(store).enqueue(["a.example.com/1"]).accepted == 1
    store.close()


def test_the_policy_is_read_once_a_minute_not_at_every_enqueue(own_redis: LocalRedis) -> None:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    producer = Producer(Store(client, make_settings(redis_url=own_redis.url)))

    def info_calls() -> int:
        return int(client.info("commandstats").get("cmdstat_info", {}).get("calls", 0))

    producer.enqueue(["a.example.com/0"])
    before = info_calls()
    for i in range(50):
        producer.enqueue([f"a.example.com/{i}"])
    assert info_calls() - before == 1  # the commandstats read itself, nothing else
    client.close()


def test_a_redis_that_refuses_config_is_judged_by_info(own_redis: LocalRedis) -> None:
    admin = redis.Redis.from_url(own_redis.url)
    admin.acl_setuser(
        "managed", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
        commands=["+@all", "-config"],
    )  # fmt: skip
    admin.config_set("maxmemory-policy", "volatile-lru")
    url = own_redis.url.replace("redis://", "redis://managed:pw@")
    store = Store.from_settings(make_settings(redis_url=url))
    with pytest.raises(redis.ResponseError):
        store.redis.config_get("maxmemory-policy")
    assert store.eviction.policy() == "volatile-lru"
    with pytest.raises(RedisEvictsError):
        store.eviction.check()
    # INFO refused too: not known to be safe, refused like an evicting Redis.
    admin.acl_setuser("managed", commands=["-info"])
    assert store.eviction.policy() is None
    with pytest.raises(RedisEvictsError, match="does not tell"):
        store.eviction.check(fresh=True)
    store.close()
    admin.close()


def test_the_override_accepts_an_evicting_redis_and_warns_once(
    own_redis: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    _set_policy(own_redis.url, "allkeys-lru")
    settings = make_settings(redis_url=own_redis.url, allow_eviction=True)
    store = Store.from_settings(settings)
    with caplog.at_level(logging.WARNING, logger="cdn_refresh.store"):
        assert Producer(store).enqueue(["a.example.com/1"]).accepted == 1
        store.eviction.check(fresh=True)
    warned = [r for r in caplog.records if "ALLOW_EVICTION is on" in r.getMessage()]
    assert len(warned) == 1
    store.close()


def test_a_flusher_claims_nothing_once_redis_may_evict(
    own_redis: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        settings = make_settings(redis_url=own_redis.url, endpoint=emulator.url, quota_sync_s=0)
        store = Store.from_settings(settings)
        job = Producer(store).enqueue(["a.example.com/1"]).job_id
        _set_policy(own_redis.url, "allkeys-lru")  # changed at run time, after the enqueue
        with CdnClient(settings.provider) as client, caplog.at_level(logging.CRITICAL):
            flusher = Flusher(Store.from_settings(settings), client, settings)
            flusher.flush("File")  # type: ignore[arg-type]
            flusher.flush("File")  # type: ignore[arg-type]
            assert emulator.state.calls() == []
            assert Producer(store).status(job).counts.pending == 1
            said = [r for r in caplog.records if "claiming nothing" in r.getMessage()]
            assert len(said) == 1 and "allkeys-lru" in said[0].getMessage()
        store.close()


def test_the_api_answers_503_redis_evicts_and_enqueues_nothing(
    own_redis: LocalRedis, tmp_path: Path
) -> None:
    _set_policy(own_redis.url, "allkeys-lru")
    env = worker_env(redis_url=own_redis.url, api_tokens=TOKEN)
    with ApiProcess(env, tmp_path / "api.log") as api:
        answer = httpx.post(
            f"{api.url}/v1/refresh",
            json={"paths": ["https://a.example.com/1"]},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "redis_evicts"
    assert "allkeys-lru" in answer.json()["message"]
    assert not [k for k in _keys(own_redis.url) if "pending" in k or ":jobs" in k]


@pytest.mark.e2e
def test_a_worker_refuses_to_start_on_an_evicting_redis_and_says_why(
    own_redis: LocalRedis, tmp_path: Path
) -> None:
    _set_policy(own_redis.url, "volatile-lru")
    values = cluster_values(own_redis.url, "http://127.0.0.1:9")
    worker = WorkerProcess(worker_env(**values), tmp_path / "worker.log", name="evict")
    try:
        worker.process.wait(60)
        assert worker.process.returncode != 0
        wait_for(lambda: "maxmemory-policy is volatile-lru" in worker.log(), 5, worker.log)
    finally:
        worker.stop()


def test_under_a_volatile_policy_only_keys_with_a_ttl_are_ours_to_lose(
    own_redis: LocalRedis,
) -> None:
    # What a volatile-* policy may evict: keys with a TTL. None of them holds a path, a job,
    # a batch, a record or a reservation.
    store = Store.from_settings(make_settings(redis_url=own_redis.url, url_daily_quota=5))
    producer = Producer(store)
    producer.enqueue([f"a.example.com/{i}" for i in range(8)], object_type="File")
    producer.enqueue(["a.example.com/d/"], object_type="Directory")
    batch = store.batches.claim("File")  # type: ignore[arg-type]
    assert batch is not None
    store.quota.set_backoff("File", 60)  # type: ignore[arg-type]
    store.quota.set_auth_hold("ConnectError", "refused", seconds=60, failures=1)
    client = store.redis
    with_ttl = {k for k in client.keys("*") if client.pttl(k) > 0}
    # Holds, backoffs and a claim's token: transient by design (docs/behaviour.md, "Redis must
    # not evict").
    transient = (":backoff", ":auth_hold", ":claim_token:", ":hold")
    assert with_ttl and all(any(t in k for t in transient) for k in with_ttl), with_ttl
    lasting = {store.keys.shared.jobs, store.keys.shared.batches, store.keys.shared.quota_window}
    for kind in ("File", "Directory"):
        keys = store.keys.of(kind)  # type: ignore[arg-type]
        lasting |= {keys.pending, keys.waiters}
    lasting |= {store.keys.of("File").quota, store.keys.of("File").quota_limit}  # type: ignore[arg-type]
    assert lasting <= set(client.keys("*")) - with_ttl
    store.close()
