"""Knowing that it finished, end to end: real Celery workers, a real redis-server and the
emulator over HTTP, whose tasks end Complete or (a seeded share) Failed, and whose quota
others spend too (issue 11)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from cdn_refresh.constants import ObjectType
from emulator import EmulatorConfig, EmulatorServer
from tests.harness import Cluster, wait_for, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

FILE = ObjectType.FILE
# Tasks end fast here, and are checked soon: the tracking of a day in seconds.
FAST = {"task_first_check_s": 0.3, "task_check_max_s": 1.0}


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(seed=3, url_quota=1_000_000, dir_quota=10_000, complete_after_s=0.2)
    with EmulatorServer(config) as server:
        yield server


def _wait_state(cluster: Cluster, job: str, states: tuple[str, ...], timeout_s: float) -> None:
    wait_for(
        lambda: cluster.producer.status(job).to_dict()["state"] in states,
        timeout_s,
        lambda: str(cluster.producer.status(job).to_dict()) + cluster.logs(),
    )


def test_with_30_percent_of_tasks_failing_every_path_ends_complete(cluster: Cluster) -> None:
    cluster.emulator.state.configure(task_failure_rate=0.3)
    cluster.configure(max_attempts=20, urls_per_call=50, **FAST)
    paths = [f"http://d{i % 3}.example.com/a/{i}.js" for i in range(600)]
    job = cluster.producer.enqueue(paths).job_id
    cluster.start_workers(2)
    _wait_state(cluster, job, ("complete", "failed"), 90)
    status = cluster.producer.status(job).to_dict()
    assert status["state"] == "complete"
    assert status["counts"]["complete"] == 600
    sent = Counter(p for call in cluster.emulator.state.calls() for p in call["paths"])
    assert set(sent) == set(paths)
    # Some tasks failed and their paths went again; none went again without reason.
    assert max(sent.values()) > 1
    found = cluster.producer.lookup(paths[0]).to_dict()
    assert found["state"] == "complete" and found["completed_at"]
    # Each path names one task: its own, of its domain.
    assert "," not in found["task_id"]
    # Describe calls stay few: at most one per 10 paths here (calls of 50, 3 domains).
    describes = cluster.emulator.state.stats()["by_action"]["DescribeRefreshTaskById"]
    assert sum(describes.values()) <= 600 / 10


def test_with_1900_of_2000_units_spent_elsewhere_exactly_100_go_out(cluster: Cluster) -> None:
    cluster.emulator.state.configure(url_quota=2_000, url_spent_elsewhere=1_900)
    cluster.configure(url_daily_quota=2_000)
    job = cluster.producer.enqueue([f"a.com/{i}" for i in range(1_500)]).job_id
    cluster.start_workers(2)
    wait_for(lambda: len(cluster.accepted()) >= 100, 30, cluster.logs)
    time.sleep(2)  # several ticks and flushes later, still nothing more goes out
    assert len(cluster.accepted()) == 100
    stats = cluster.emulator.state.stats()
    assert stats["by_outcome"].get("QuotaExceeded.Refresh", 0) <= 1
    counts = cluster.producer.status(job).to_dict()["counts"]
    assert counts["pending"] == 1_400 and counts["failed"] == 0
    quota = cluster.store.quota.provider(FILE)
    assert quota is not None and quota.limit == 2_000


def _status_wait(cluster: Cluster, job: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdn_refresh", "status", job, "--wait", "--json", *extra],
        env=worker_env(**cluster.settings_values),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_wait_exits_0_when_complete_1_when_failed_124_on_timeout(
    cluster: Cluster,
) -> None:
    cluster.emulator.state.configure(offline_domains=["gone.example.com"])
    cluster.configure(**FAST)
    cluster.start_workers(1)
    ok = cluster.producer.enqueue(["a.com/1", "b.com/2"]).job_id
    assert _status_wait(cluster, ok, "--timeout", "60").returncode == 0
    assert cluster.producer.status(ok).to_dict()["state"] == "complete"
    bad = cluster.producer.enqueue(["gone.example.com/x", "a.com/3"]).job_id
    failed = _status_wait(cluster, bad, "--timeout", "60")
    assert failed.returncode == 1, failed.stderr
    assert '"state": "failed"' in failed.stdout
    # Tasks that never end within the wait: exit 124, the job still in its place.
    cluster.emulator.state.configure(complete_after_s=3600)
    slow = cluster.producer.enqueue(["a.com/4"]).job_id
    timed_out = _status_wait(cluster, slow, "--timeout", "2")
    assert timed_out.returncode == 124
    assert cluster.producer.status(slow).to_dict()["state"] in (
        "pending",
        "in_progress",
        "submitted",
    )


def test_a_worker_killed_while_polling_loses_no_tracking(cluster: Cluster) -> None:
    # Describe answers slowly: a kill lands while the poller waits for one.
    cluster.emulator.state.configure(
        latency_s=2.0, fault_actions=["DescribeRefreshTaskById"], complete_after_s=0.1
    )
    cluster.configure(**FAST)
    job = cluster.producer.enqueue([f"a.com/{i}" for i in range(50)]).job_id
    cluster.start_workers(1)
    wait_for(
        lambda: cluster.emulator.state.stats()["by_action"].get("DescribeRefreshTaskById"),
        30,
        cluster.logs,
    )
    cluster.workers[0].kill()
    assert cluster.producer.status(job).to_dict()["state"] == "submitted"  # submitted, not complete
    cluster.emulator.state.configure(latency_s=0)
    cluster.start_workers(1)
    _wait_state(cluster, job, ("complete",), 60)
    assert cluster.producer.status(job).to_dict()["counts"]["complete"] == 50
