"""Two deployments on one Redis DB, told apart by KEY_PREFIX alone: each one's workers take
only its own tasks. The default prefix keeps Celery's queue name, so an upgrade keeps its
queue. Real redis-server, real worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from cdn_refresh.store import broker_transport_options, celery_names
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import Producer
from tests.conftest import make_settings
from tests.harness import WorkerProcess, cluster_values, wait_for, worker_env

pytestmark = pytest.mark.redis


def test_the_default_prefix_keeps_celerys_queue_and_another_prefix_names_its_own() -> None:
    default = celery_names(make_settings().redis)
    assert (default.queue, default.control_exchange) == ("celery", "celery")
    assert broker_transport_options(make_settings().redis) == {}
    shop = celery_names(make_settings(key_prefix="shop").redis)
    assert shop.queue == "shop.celery" and shop.control_exchange == "shop.celery"
    assert broker_transport_options(make_settings(key_prefix="shop").redis) == {
        "unacked_key": "shop.unacked",
        "unacked_index_key": "shop.unacked_index",
        "unacked_mutex_key": "shop.unacked_mutex",
    }


@pytest.mark.e2e
def test_a_deployments_workers_never_take_another_deployments_tasks(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with EmulatorServer(EmulatorConfig()) as emulator:
        values = {
            name: cluster_values(redis_url, emulator.url, key_prefix=name) for name in ("a", "b")
        }
        other = WorkerProcess(worker_env(**values["b"]), tmp_path / "b.log", name="b")
        producer = Producer.from_settings(make_settings(**values["a"]))
        try:
            other.wait_ready()
            job = producer.enqueue(["a.example.com/1"]).job_id  # wakes a's workers: a flush
            time.sleep(3)
            # Before, b's worker took a's wake-up from the one shared queue, "celery".
            assert "Task cdn_refresh.flush[" not in other.log()
            assert client.llen("a.celery") == 1
            assert producer.status(job).state == "pending"
            own = WorkerProcess(worker_env(**values["a"]), tmp_path / "a.log", name="a")
            try:
                own.wait_ready()
                wait_for(lambda: producer.status(job).state == "submitted", 20, own.log)
            finally:
                own.stop()
            assert "Task cdn_refresh.flush[" not in other.log()
        finally:
            other.stop()
            producer.close()
            client.close()
