"""High availability (issue 13): ``redis+sentinel://`` for the store and the broker, WAIT
for replicas on enqueue, the leading-edge wake-up, and a real failover mid-drain: a primary,
a replica and three Sentinels, the primary SIGKILLed while workers drain and producers
enqueue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cdn_refresh.constants import ObjectType
from cdn_refresh.sentinel import SentinelUrl, parse_sentinel_url
from cdn_refresh.settings import SettingsError, load_settings
from cdn_refresh.store import Store, broker_transport_options, broker_url
from cdn_refresh.store.jobs import ReplicaAckError
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import EnqueueInterruptedError, Producer, RedisRefusesWritesError
from sandbox import local
from tests.conftest import RedisServer, in_ci, make_settings, make_store
from tests.harness import WorkerProcess, cluster_values, wait_for, worker_env

SENTINEL_URL = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2"


def test_a_sentinel_url_names_its_sentinels_primary_and_database() -> None:
    assert parse_sentinel_url(SENTINEL_URL) == SentinelUrl(
        hosts=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)),
        master="mymaster",
        db=2,
        password="s3cret",
    )
    assert parse_sentinel_url("redis+sentinel://h:1/m?sentinel_password=x").sentinel_password == (
        "x"
    )


@pytest.mark.parametrize(
    "url", ["redis+sentinel://h:1", "redis+sentinel:///m", "redis+sentinel://h:1/m/x"]
)
def test_a_malformed_sentinel_url_stops_the_start_without_showing_it(url: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None, redis_url=url)
    assert "CDN_REFRESH_REDIS_URL" in str(err.value) and url not in str(err.value)


def test_celery_gets_kombus_sentinel_form_and_the_primarys_name() -> None:
    settings = make_settings(redis_url=SENTINEL_URL + "?sentinel_password=sp")
    assert broker_url(settings.redis) == (
        "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2:26379/2;"
        "sentinel://:s3cret@[::1]:26380/2"
    )
    assert broker_transport_options(settings.redis) == {
        "master_name": "mymaster",
        "sentinel_kwargs": {"password": "sp"},
    }
    assert broker_transport_options(make_settings().redis) == {}
    assert "s3cret" not in settings.redis.redacted_url()


# -- the leading edge -----------------------------------------------------------------------


@pytest.mark.redis
def test_an_idle_system_wakes_at_once_and_a_busy_one_batches(redis_client: redis.Redis) -> None:
    quota = make_store(redis_client).quota
    assert quota.request_wake_up(0.2) == 0.0  # idle: the leading edge, no countdown
    assert quota.request_wake_up(0.2) == 0.2  # busy: one trailing flush
    assert quota.request_wake_up(0.2) is None  # already asked for
    time.sleep(0.25)
    assert quota.request_wake_up(0.2) == 0.0


# -- WAIT ------------------------------------------------------------------------------------


@pytest.mark.redis
def test_an_enqueue_no_replica_confirms_is_not_acknowledged(redis_client: redis.Redis) -> None:
    store = make_store(redis_client, redis_min_replicas_ack=1, redis_replica_ack_timeout_s=0.05)
    with pytest.raises((EnqueueInterruptedError, ReplicaAckError)):
        Producer(store).enqueue(["a.example.com/x"])


# -- a real failover ---------------------------------------------------------------------------


class Sentinels:
    """A primary, two replicas and three Sentinels on loopback: after a failover one
    replica is left to confirm the writes of the new primary."""

    def __init__(self, workdir: Path) -> None:
        self.primary = RedisServer(workdir / "primary", appendonly=True)
        self.primary.start()
        self.replicas = [
            RedisServer(
                workdir / f"replica{i}",
                appendonly=True,
                args=["--replicaof", "127.0.0.1", str(self.primary.port)],
            )
            for i in range(2)
        ]
        for replica in self.replicas:
            replica.start()
        self.sentinels: list[local.SentinelServer] = []
        try:
            for i in range(3):
                self.sentinels.append(local.SentinelServer(workdir / f"s{i}", self.primary.port))
        except FileNotFoundError as exc:  # pragma: no cover - RedisServer found it just now
            (pytest.fail if in_ci() else pytest.skip)(str(exc))
        wait_for(self._ready, 20, lambda: "sentinels never saw the replica and each other")

    def _ready(self) -> bool:
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                replicas = client.execute_command("SENTINEL", "replicas", "mymaster")
                peers = client.execute_command("SENTINEL", "sentinels", "mymaster")
            except redis.RedisError:
                return False
            finally:
                client.close()
            if len(replicas) < 2 or len(peers) < 2:
                return False
        info = redis.Redis.from_url(self.primary.url).info("replication")
        return int(info.get("connected_slaves", 0)) >= 2

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/mymaster/0"

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for replica in self.replicas:
            replica.stop()
        self.primary.stop()


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    group = Sentinels(tmp_path / "redis")
    yield group
    group.stop()


class Producers:
    """Threads enqueueing small interactive jobs; they keep what was acknowledged."""

    def __init__(self, settings: object, count: int) -> None:
        self.acknowledged: list[str] = []
        self._times: list[float] = []
        self.refused = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(settings, n), daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, settings: object, n: int) -> None:
        producer = Producer.from_settings(settings)  # type: ignore[arg-type]
        i = 0
        while not self._stop.is_set():
            paths = [f"p{n}.example.com/{i}/{k}" for k in range(10)]
            try:
                producer.enqueue(paths)
            except (redis.RedisError, EnqueueInterruptedError, RedisRefusesWritesError):
                with self._lock:
                    self.refused += 1  # not acknowledged: a real client would retry
            else:
                with self._lock:
                    self.acknowledged.extend(f"http://{p}" for p in paths)
                    self._times.append(time.time())
            i += 1
            time.sleep(0.03)
        producer.close()

    def acknowledged_since(self, when: float) -> list[float]:
        """When enqueues were acknowledged, from ``when`` on."""
        with self._lock:
            return [t for t in self._times if t >= when]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.fault
@pytest.mark.timeout(150)
def test_a_primary_killed_mid_drain_fails_over_and_every_acknowledged_path_is_submitted(
    sentinels: Sentinels, tmp_path: Path
) -> None:
    config = EmulatorConfig(seed=17, url_quota=10_000_000, dir_quota=10_000, latency_s=0.02)
    with EmulatorServer(config) as emulator:
        values = cluster_values(
            sentinels.url,
            emulator.url,
            url_daily_quota=10_000_000,
            urls_per_call=40,
            redis_min_replicas_ack=1,
        )
        settings = make_settings(**values)
        workers = [
            WorkerProcess(worker_env(**values), tmp_path / f"w{i}.log", name=f"w{i}", beat=i == 0)
            for i in range(2)
        ]
        for worker in workers:
            worker.wait_ready()
        producers = Producers(settings, 3)
        try:
            wait_for(lambda: len(emulator.state.calls()) >= 5, 20)
            old_port = sentinels.primary.port
            sentinels.primary.process.kill()  # SIGKILL: no goodbye to anyone
            killed_at = time.time()
            wait_for(
                lambda: sentinels.sentinels[0].primary_port() not in (None, old_port),
                30,
                lambda: f"no failover from {old_port}",
            )
            failed_over_at = time.time()
            # Producers go on: the new primary's writes confirmed by the replica left.
            wait_for(lambda: len(producers.acknowledged_since(failed_over_at)) >= 20, 30)
        finally:
            producers.stop()
        accepted = lambda: {p for c in emulator.state.calls() for p in c["paths"]}  # noqa: E731

        def missing() -> str:
            lost = sorted(set(producers.acknowledged) - accepted())
            store = Store.from_settings(settings)
            try:
                found = [store.paths.lookup(p, ObjectType.FILE).to_dict() for p in lost[:5]]
            finally:
                store.close()
            return f"{len(lost)} missing: {found}"

        try:
            wait_for(lambda: set(producers.acknowledged) <= accepted(), 30, missing)
        finally:
            for worker in workers:
                worker.stop()
        after = [c for c in emulator.state.calls() if c["time"] > killed_at + 1]
    assert after, "no call after the failover"
    store = Store.from_settings(settings)
    try:
        assert store.batches.count() == 0
    finally:
        store.close()
