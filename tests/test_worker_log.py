"""What a worker writes to its log at INFO, end to end: a real worker process, a real
redis-server and the emulator over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from emulator import EmulatorConfig, EmulatorServer
from tests.harness import Cluster, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=5, complete_after_s=0.2)) as server:
        yield server


def _lines_after_ready(cluster: Cluster) -> list[str]:
    log = cluster.workers[0].log()
    return [line for line in log.split(" ready.", 1)[1].splitlines() if line.strip()]


def test_an_idle_worker_logs_nothing_at_info_and_each_action_one_line(cluster: Cluster) -> None:
    cluster.configure(quota_sync_s=0, task_first_check_s=0.3, task_check_max_s=1.0)
    cluster.start_workers(1)
    time.sleep(4)  # eight ticks of 0.5 s
    assert _lines_after_ready(cluster) == []
    job = cluster.producer.enqueue(["http://a.example.com/1.png"]).job_id
    wait_for(
        lambda: cluster.producer.status(job).to_dict()["state"] == "complete", 20, cluster.logs
    )
    time.sleep(2)
    lines = _lines_after_ready(cluster)
    assert sum(" batch id=" in line for line in lines) == 1, lines
    assert sum("tasks ended" in line for line in lines) == 1, lines
    assert not any("Task cdn_refresh." in line for line in lines), lines
