"""Getting more out of the quota, end to end: real Celery workers, a real redis-server and
the emulator over HTTP, which tells whether each path was refreshed and how (issue 10)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from cdn_refresh.constants import ObjectType, Priority
from emulator import EmulatorConfig, EmulatorServer
from tests.harness import Cluster, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=5, url_quota=1_000_000, dir_quota=10_000)) as server:
        yield server


def _how(cluster: Cluster, paths: list[str]) -> Counter[str | None]:
    return Counter(entry["how"] for entry in cluster.emulator.state.refreshed(paths))


def _accepted(cluster: Cluster, kind: ObjectType) -> list[str]:
    calls = cluster.emulator.state.calls()
    return [p for call in calls if call["object_type"] == kind.value for p in call["paths"]]


def test_files_under_a_directory_go_with_it_and_one_asked_for_later_goes_alone(
    cluster: Cluster,
) -> None:
    cluster.configure()
    covered = [f"http://a.com/img/{i}.png" for i in range(300)] + ["http://a.com/img/x?v=2"]
    alone = [f"http://a.com/css/{i}.css" for i in range(20)]
    jobs = [cluster.producer.enqueue(covered + alone, FILE, Priority.BULK).job_id]
    jobs.append(cluster.producer.enqueue(["a.com/img/"], DIRECTORY, Priority.BULK).job_id)
    cluster.start_workers(1)
    cluster.wait_done(jobs)
    assert _how(cluster, covered) == {"directory": len(covered)}
    assert sorted(_accepted(cluster, FILE)) == sorted(alone)
    assert _accepted(cluster, DIRECTORY) == ["http://a.com/img/"]
    found = cluster.producer.lookup("http://a.com/img/7.png").to_dict()
    assert found["covered_by"] == "http://a.com/img/"
    directory_call = next(
        c for c in cluster.emulator.state.calls() if c["object_type"] == "Directory"
    )
    assert found["task_id"] == ",".join(directory_call["task_ids"])
    # Asked for after the Directory went out: its content may be newer, it goes by itself.
    later = cluster.producer.enqueue(["a.com/img/new.png"]).job_id
    cluster.wait_done([later])
    assert _how(cluster, ["http://a.com/img/new.png"]) == {"itself": 1}
    assert cluster.store.quota.usage(FILE).used == len(alone) + 1


def test_thirty_saves_inside_the_cooldown_cost_two_sends_and_the_last_is_followed_by_one(
    cluster: Cluster,
) -> None:
    cluster.configure(refresh_cooldown_s=2)
    cluster.start_workers(1)
    page = "http://cms.example.com/page.html"
    first = cluster.producer.enqueue([page]).job_id
    cluster.wait_done([first])
    jobs = []
    for _ in range(30):
        jobs.append(cluster.producer.enqueue([page]).job_id)
        time.sleep(0.03)
    last_request = time.time()
    cluster.wait_done(jobs, timeout_s=30)
    sends = [call["time"] for call in cluster.emulator.state.calls() if page in call["paths"]]
    assert len(sends) == 2
    assert sends[-1] > last_request
    assert cluster.store.quota.usage(FILE).used == 2


def test_promotion_with_concurrent_workers_drains_a_tree_without_overshoot_or_the_reserve(
    cluster: Cluster,
) -> None:
    quota = {"url_quota": 100, "dir_quota": 10}
    cluster.emulator.state.configure(**quota)
    cluster.configure(
        url_daily_quota=100,
        directory_daily_quota=10,
        interactive_reserve=0.2,
        promote="auto",
        promote_min_paths=20,
    )
    tree = [
        f"http://{host}/2026/12/{day:02d}/{asset}.jpg"
        for host in ("a.com", "b.com", "c.com")
        for day in range(20)
        for asset in range(12)
    ] + [f"http://a.com/static/{i}.js" for i in range(40)]
    urgent = [f"http://a.com/2026/12/00/urgent{i}.html" for i in range(5)]
    jobs = [cluster.producer.enqueue(tree, FILE, Priority.BULK).job_id]
    jobs.append(cluster.producer.enqueue(urgent, FILE, Priority.INTERACTIVE).job_id)
    cluster.start_workers(2)
    cluster.wait_done(jobs, timeout_s=90)
    refreshed = cluster.emulator.state.refreshed(tree + urgent)
    assert all(entry["refreshed"] for entry in refreshed)
    # Interactive Files are never held back by promotion: they went out in the first calls,
    # as themselves or under a Directory sent at the same moment.
    assert all(e["call"] <= 2 for e in refreshed if e["path"] in urgent)
    directories = _accepted(cluster, DIRECTORY)
    assert directories and all(d.count("/") - 3 >= 1 for d in directories)
    # The provider saw no overshoot, and bulk work left the Directory reserve alone.
    stats = cluster.emulator.state.stats()
    assert "QuotaExceeded.Refresh" not in stats["by_outcome"]
    assert len(_accepted(cluster, FILE)) <= 100
    assert len(directories) <= 10 - 2
    assert "promoted directory=" in cluster.logs()


def test_a_worker_killed_during_a_directory_call_loses_none_of_what_it_covered(
    cluster: Cluster,
) -> None:
    cluster.configure(batch_lease_s=2)
    cluster.emulator.state.configure(latency_s=3)
    files = [f"http://a.com/img/{i}.png" for i in range(500)]
    jobs = [cluster.producer.enqueue(files, FILE, Priority.BULK).job_id]
    jobs.append(cluster.producer.enqueue(["a.com/img/"], DIRECTORY).job_id)
    cluster.start_workers(1, concurrency=1)
    wait_for(
        lambda: (
            cluster.store.batches.count() > 0
            and cluster.redis.hlen(cluster.store.keys.shared.covered) > 0
        ),
        20,
        cluster.logs,
    )
    cluster.workers[0].kill()
    cluster.emulator.state.configure(latency_s=0)
    cluster.start_workers(1)
    cluster.wait_done(jobs, timeout_s=60)
    assert all(e["refreshed"] for e in cluster.emulator.state.refreshed(files))
    counts = cluster.producer.status(jobs[0]).to_dict()["counts"]
    assert counts["submitted"] == len(files)
    assert cluster.redis.hlen(cluster.store.keys.shared.covered) == 0
