"""Recovery in seconds (issue 13): heartbeats and orphaned batches, a claim whose reply is
lost, a warm shutdown that hands its batches back, and a worker SIGKILLed mid-call whose
batch another worker sends within 15 s."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cdn_refresh.constants import ObjectType
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import Producer
from sandbox.local import free_port
from tests.conftest import make_settings, make_store
from tests.harness import WorkerProcess, cluster_values, wait_for, worker_env
from worker.recovery import InHand, hand_back, reclaim_orphaned

FILE = ObjectType.FILE


def _enqueue(store: Store, paths: list[str]) -> None:
    Producer(store).enqueue(paths)


# -- heartbeats and orphans (one process, a real Redis) --------------------------------------


@pytest.mark.redis
def test_a_batch_is_orphaned_once_its_owners_heartbeat_runs_out(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    _enqueue(store, [f"a.example.com/{i}" for i in range(5)])
    store.liveness.beat("w1", 0.3)
    batch = store.batches.claim(FILE, owner="w1")
    assert isinstance(batch, Batch)
    assert store.liveness.orphaned() == []
    time.sleep(0.4)
    assert not store.liveness.alive("w1")
    assert store.liveness.orphaned() == [(batch.id, FILE)]
    assert reclaim_orphaned(store) == 5
    assert store.quota.pending_count(FILE) == 5
    # The call may have gone out: the reservation stays.
    assert store.quota.usage(FILE).used == 5
    assert store.liveness.orphaned() == []


@pytest.mark.redis
def test_a_batch_without_an_owner_is_left_to_its_lease(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    _enqueue(store, ["a.example.com/x"])
    assert isinstance(store.batches.claim(FILE), Batch)
    assert store.liveness.orphaned() == []


@pytest.mark.redis
def test_a_settled_batch_is_no_orphan_and_its_owner_entry_goes(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    _enqueue(store, ["a.example.com/x"])
    batch = store.batches.claim(FILE, owner="gone")
    assert isinstance(batch, Batch)
    store.batches.submit(batch, (), ("t1",), "r1")
    assert store.liveness.orphaned() == []
    assert redis_client.hlen(store.keys.shared.batch_owners) == 0


@pytest.mark.redis
def test_handing_back_before_the_call_returns_the_quota_and_counts_no_attempt(
    redis_client: redis.Redis,
) -> None:
    store = make_store(redis_client)
    _enqueue(store, [f"a.example.com/{i}" for i in range(3)])
    batch = store.batches.claim(FILE, owner="w")
    assert isinstance(batch, Batch)
    held = InHand()
    held.claimed(batch.id, FILE)
    assert hand_back(store, held) == 3
    assert store.quota.usage(FILE).used == 0
    assert store.quota.pending_count(FILE) == 3
    assert store.paths.lookup("http://a.example.com/0", FILE).attempts == 0
    assert held.take() == []


@pytest.mark.redis
def test_handing_back_a_call_in_flight_keeps_the_quota(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    _enqueue(store, [f"a.example.com/{i}" for i in range(3)])
    batch = store.batches.claim(FILE, owner="w")
    assert isinstance(batch, Batch)
    held = InHand()
    held.claimed(batch.id, FILE)
    held.call_starting(batch.id)
    assert hand_back(store, held) == 3
    assert store.quota.usage(FILE).used == 3
    assert store.quota.pending_count(FILE) == 3


# -- a claim whose reply is lost ------------------------------------------------------------


class ReplyDropper:
    """A TCP proxy to Redis that, when armed, forwards a command but closes the connection
    instead of passing on the first reply that holds ``marker``: a reply lost on the way."""

    def __init__(self, upstream_port: int, marker: bytes) -> None:
        self.port = free_port()
        self._upstream = upstream_port
        self._marker = marker
        self.armed = threading.Event()
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.armed.is_set() and self._marker in data:
                    self.armed.clear()
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._server.close()


@pytest.mark.redis
def test_a_claim_retried_after_its_reply_was_lost_gets_the_same_batch(
    redis_url: str, redis_client: redis.Redis
) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = ReplyDropper(port, b"batch")
    settings = make_settings(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
    store = Store.from_settings(settings)
    try:
        assert store.batches.claim(FILE) is None  # loads the script, opens the connection
        _enqueue(make_store(redis_client), [f"a.example.com/{i}" for i in range(10)])
        proxy.armed.set()
        batch = store.batches.claim(FILE, owner="w")  # redis-py sends it again after the loss
    finally:
        store.close()
        proxy.close()
    assert proxy.dropped == 1
    assert isinstance(batch, Batch)
    keys = make_store(redis_client).keys
    # One batch, owned, holding exactly its own reservation: no orphan holds quota.
    assert redis_client.hkeys(keys.shared.batches) == [batch.id]
    assert redis_client.hget(keys.shared.batch_owners, batch.id) == "w"
    assert make_store(redis_client).quota.usage(FILE).used == len(batch.paths) == 10


@pytest.mark.redis
def test_the_same_claim_token_twice_takes_one_batch(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    _enqueue(store, [f"a.example.com/{i}" for i in range(4)])
    first = store.batches.claim(FILE, token="t", owner="w")
    again = store.batches.claim(FILE, token="t", owner="w")
    assert isinstance(first, Batch) and again == first
    assert store.quota.usage(FILE).used == 4
    assert store.batches.count() == 1


# -- real workers ---------------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=13, url_quota=1_000_000, dir_quota=10_000)) as server:
        yield server


def _workers(
    redis_url: str, emulator: EmulatorServer, tmp_path: Path, n: int, **extra: object
) -> Any:
    values = cluster_values(redis_url, emulator.url, url_daily_quota=1_000_000, **extra)
    workers = [
        WorkerProcess(
            worker_env(**values), tmp_path / f"w{i}.log", name=f"w{i}", concurrency=2, beat=i == 0
        )
        for i in range(n)
    ]
    for worker in workers:
        worker.wait_ready()
    return values, workers


def _refresh_requests(emulator: EmulatorServer) -> int:
    """RefreshObjectCaches requests of any outcome (not the quota reads before them)."""
    return sum(emulator.state.stats()["by_action"].get("RefreshObjectCaches", {}).values())


def _owner_pgid(redis_client: redis.Redis, store: Store) -> int:
    # Only batches still in flight: the owner of a settled one stays until the next sweep.
    k = store.keys.shared
    owners = [
        owner
        for batch_id, owner in redis_client.hgetall(k.batch_owners).items()
        if redis_client.hexists(k.batches, batch_id)
    ]
    assert len(owners) == 1, owners
    return os.getpgid(int(owners[0].split(":")[1]))


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.fault
@pytest.mark.timeout(90)
def test_a_worker_sigkilled_mid_call_has_its_batch_sent_by_another_within_15_s(
    redis_url: str, redis_client: redis.Redis, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # The call in flight never reaches the provider: it hangs, then its connection drops.
    emulator.state.configure(drop_rate=1.0, latency_s=8)
    values, workers = _workers(redis_url, emulator, tmp_path, 2)
    settings = make_settings(**values)
    store = Store(redis_client, settings)
    paths = [f"h{i % 3}.example.com/p/{i}" for i in range(200)]
    job = Producer.from_settings(settings).enqueue(paths).job_id
    wait_for(lambda: _refresh_requests(emulator) >= 1, 20)
    victim = next(w for w in workers if w.process.pid == _owner_pgid(redis_client, store))
    survivor = next(w for w in workers if w is not victim)
    victim.kill()
    killed_at = time.monotonic()
    emulator.state.configure(drop_rate=0.0, latency_s=0)
    try:
        wait_for(lambda: len(emulator.state.calls()) >= 1, 15, survivor.log)
        took = time.monotonic() - killed_at
        wait_for(
            lambda: Producer(store).status(job).to_dict()["state"] == "submitted", 10, survivor.log
        )
    finally:
        survivor.stop()
    accepted = [p for call in emulator.state.calls() for p in call["paths"]]
    assert sorted(accepted) == sorted(f"http://{p}" for p in paths)
    assert took < 15
    assert "owner's heartbeat gone" in survivor.log()


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.fault
@pytest.mark.timeout(90)
def test_a_worker_that_never_ran_a_task_reclaims_the_batch_of_a_dead_one_and_its_scheduler(
    redis_url: str, redis_client: redis.Redis, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # The worker that holds the batch also runs the scheduler, and the other has had no task:
    # once the first is gone nothing sends the second a task, so only its own heartbeat's
    # sweep can find the orphaned batch.
    emulator.state.configure(drop_rate=1.0, latency_s=8)
    values = cluster_values(redis_url, emulator.url, url_daily_quota=1_000_000)
    holder = WorkerProcess(worker_env(**values), tmp_path / "w0.log", name="w0", beat=True)
    holder.wait_ready()
    settings = make_settings(**values)
    store = Store(redis_client, settings)
    paths = [f"a.example.com/p/{i}" for i in range(20)]
    job = Producer.from_settings(settings).enqueue(paths).job_id
    wait_for(lambda: _refresh_requests(emulator) >= 1, 20, holder.log)
    idle = WorkerProcess(worker_env(**values), tmp_path / "w1.log", name="w1", beat=False)
    idle.wait_ready()
    assert os.getpgid(holder.process.pid) == _owner_pgid(redis_client, store)
    holder.kill()
    emulator.state.configure(drop_rate=0.0, latency_s=0)
    try:
        wait_for(lambda: len(emulator.state.calls()) >= 1, 20, idle.log)
        wait_for(
            lambda: Producer(store).status(job).to_dict()["state"] == "submitted", 10, idle.log
        )
    finally:
        idle.stop()
    accepted = sorted(p for call in emulator.state.calls() for p in call["paths"])
    assert accepted == sorted(f"http://{p}" for p in paths)
    assert "owner's heartbeat gone" in idle.log()


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.fault
@pytest.mark.timeout(60)
def test_a_sigterm_mid_call_hands_the_batch_back_at_once(
    redis_url: str, redis_client: redis.Redis, emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.state.configure(latency_s=4)
    values, workers = _workers(redis_url, emulator, tmp_path, 1)
    store = Store(redis_client, make_settings(**values))
    Producer.from_settings(store.settings).enqueue([f"a.example.com/{i}" for i in range(50)])
    wait_for(lambda: _refresh_requests(emulator) >= 1, 20)
    pgid = _owner_pgid(redis_client, store)
    os.killpg(pgid, signal.SIGTERM)
    stopped_at = time.monotonic()
    # Back to pending long before the heartbeat (6 s) or the lease (120 s) would say so.
    wait_for(lambda: store.batches.count() == 0, 3, workers[0].log)
    assert time.monotonic() - stopped_at < 3
    assert store.quota.pending_count(FILE) == 50
    assert store.quota.usage(FILE).used == 50  # the call may have gone out: it stays
    assert redis_client.zcard(store.keys.shared.heartbeats) == 0
    workers[0].stop()
    assert "handed back batch" in workers[0].log()


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.fault
@pytest.mark.timeout(90)
def test_a_sigterm_to_the_main_process_alone_stops_the_pool_claiming_at_once(
    redis_url: str, redis_client: redis.Redis, emulator: EmulatorServer, tmp_path: Path
) -> None:
    # As under Docker: SIGTERM reaches the worker's main process only, never its pool. Each
    # call takes a second, and 30 batches wait: a flush left alone would take half a minute.
    emulator.state.configure(latency_s=1.0)
    values, workers = _workers(redis_url, emulator, tmp_path, 1, urls_per_call=100)
    store = Store(redis_client, make_settings(**values))
    producer = Producer.from_settings(store.settings)
    job = producer.enqueue([f"a.example.com/{i}" for i in range(3_000)]).job_id
    wait_for(lambda: _refresh_requests(emulator) >= 1, 20)
    workers[0].process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    workers[0].process.wait(20)
    assert time.monotonic() - stopped_at < 10
    # What went out is submitted; the rest waits, none of it in flight or lost.
    counts = producer.status(job).to_dict()["counts"]
    assert counts["in_flight"] == 0
    assert counts["submitted"] + counts["pending"] == 3_000
    assert counts["submitted"] < 1_500
    assert "claims no more" in workers[0].log()
    workers[0].stop()
