"""What a worker checks as it starts, and the one change it notices while running: real
worker processes, a real redis-server and the emulator over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import EmulatorConfig, EmulatorServer
from sandbox.local import WorkerProcess, celery_worker_argv
from tests.harness import Cluster, cluster_values, wait_for, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=7)) as server:
        yield server


@pytest.mark.parametrize(
    ("blank", "named"),
    [
        ({"access_key_id": ""}, "CDN_REFRESH_ACCESS_KEY_ID is empty"),
        ({"access_key_secret": " "}, "CDN_REFRESH_ACCESS_KEY_SECRET is empty"),
    ],
)
def test_a_worker_with_empty_static_credentials_refuses_to_start_naming_the_setting(
    redis_url: str, emulator: EmulatorServer, tmp_path: Path, blank: dict[str, str], named: str
) -> None:
    env = worker_env(**{**cluster_values(redis_url, emulator.url), **blank})
    worker = WorkerProcess(
        env,
        tmp_path / "worker.log",
        name="w",
        argv=celery_worker_argv(name="w", concurrency=1),
    )
    try:
        wait_for(lambda: worker.process.poll() is not None, 30, worker.log)
        assert worker.process.returncode != 0
        assert named in worker.log()
        assert " ready." not in worker.log()
        assert "testsecret" not in worker.log()
    finally:
        worker.stop()


def test_running_workers_log_a_new_quota_window_once(cluster: Cluster) -> None:
    cluster.configure(quota_sync_s=0)
    cluster.start_workers(2, concurrency=2)
    wait_for(
        lambda: cluster.redis.get(cluster.store.keys.shared.quota_window_noticed) is not None,
        15,
        cluster.logs,
    )
    cluster.store.quota.set_window(3600)
    line = "quota window changed: 86400 s -> 3600 s"
    wait_for(lambda: line in cluster.logs(), 15, cluster.logs)
    time.sleep(3)  # six more ticks
    assert sum(w.log().count(line) for w in cluster.workers) == 1
