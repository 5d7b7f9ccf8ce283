"""End to end: real Celery worker processes, a real redis-server, the emulator over HTTP.

These prove what the unit tests cannot: that several processes on a shared Redis coalesce,
pack, respect the quota and recover from crashes and provider faults.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from emulator import EmulatorConfig, EmulatorServer
from tests.harness import Cluster, wait_for, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=11, url_quota=1_000_000, dir_quota=10_000)) as server:
        yield server


def test_overlapping_producers_send_each_unique_path_once_in_the_fewest_calls(
    cluster: Cluster,
) -> None:
    cluster.configure(url_daily_quota=100_000)
    unique = [f"d{i % 5}.example.com/a/{i}.js" for i in range(3_000)]
    jobs: list[str] = []

    def produce(offset: int) -> None:
        mine = unique[offset::2] + unique[offset : offset + 900]
        jobs.append(cluster.producer.enqueue(mine).job_id)

    threads = [threading.Thread(target=produce, args=(i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cluster.start_workers(2)
    cluster.wait_done(jobs)
    accepted = Counter(cluster.accepted())
    assert set(accepted) == {f"http://{p}" for p in unique}
    assert max(accepted.values()) == 1
    assert len(cluster.emulator.state.calls()) == math.ceil(3_000 / 1_000)


def test_three_workers_never_spend_more_than_the_quota(cluster: Cluster) -> None:
    cluster.configure(url_daily_quota=1_500, urls_per_call=100)
    job = cluster.producer.enqueue([f"h{i % 3}.example.com/{i}" for i in range(5_000)]).job_id
    cluster.start_workers(3)
    wait_for(lambda: len(cluster.accepted()) >= 1_500, 60, cluster.logs)
    time.sleep(2)  # several ticks and flushes later, still nothing more goes out
    assert len(cluster.accepted()) == 1_500
    status = cluster.producer.status(job).to_dict()
    assert status["counts"]["pending"] == 3_500
    assert status["state"] == "in_progress"
    out = subprocess.run(
        [sys.executable, "-m", "cdn_refresh", "quota", "--json"],
        env=worker_env(**cluster.settings_values),
        capture_output=True,
        text=True,
        check=True,
    )
    quota = json.loads(out.stdout)
    # The provider's own count was read too (its limit is the emulator's, far above ours),
    # and that its limit is above ours is said once.
    provider = quota["file"].pop("provider")
    assert provider["limit"] == 1_000_000 and provider["remaining"] >= 1_000_000 - 1_500
    assert quota["file"] == {
        "limit": 1_500,
        "used": 1_500,
        "remaining": 0,
        "pending": 3_500,
        "cooling": 0,
    }
    # The operator hears of it once, not at every flush and tick of every worker.
    full_logs = "".join(w.log() for w in cluster.workers)
    assert full_logs.count("quota window full type=File") == 1, full_logs[-3000:]
    assert full_logs.count("provider quota is above ours type=File") == 1


def test_bulk_work_leaves_the_interactive_reserve_to_interactive_work(cluster: Cluster) -> None:
    cluster.configure(url_daily_quota=100, interactive_reserve=0.2)
    cluster.start_workers(2)
    bulk = cluster.producer.enqueue(
        [f"bulk.example.com/{i}" for i in range(500)], priority="bulk"
    ).job_id
    wait_for(lambda: len(cluster.accepted()) >= 80, 30, cluster.logs)
    time.sleep(1.5)
    assert len(cluster.accepted()) == 80
    live = cluster.producer.enqueue([f"live.example.com/{i}" for i in range(30)]).job_id
    wait_for(lambda: len(cluster.accepted()) >= 100, 30, cluster.logs)
    time.sleep(1)
    accepted = cluster.accepted()
    assert len(accepted) == 100
    assert sum(p.startswith("http://live.") for p in accepted) == 20
    assert cluster.producer.status(live).to_dict()["counts"]["submitted"] == 20
    assert cluster.producer.status(bulk).to_dict()["counts"]["submitted"] == 80


def test_provider_faults_lose_nothing(cluster: Cluster) -> None:
    cluster.emulator.state.configure(
        internal_error_rate=0.3, throttle_rate=0.1, throttle_retry_after_ms=50, drop_rate=0.05
    )
    cluster.configure(url_daily_quota=1_000_000, urls_per_call=100, max_attempts=100)
    paths = [f"h{i % 7}.example.com/{i}" for i in range(3_000)]
    job = cluster.producer.enqueue(paths).job_id
    cluster.start_workers(3)
    cluster.wait_done([job], timeout_s=120)
    assert set(cluster.accepted()) == {f"http://{p}" for p in paths}
    assert cluster.producer.status(job).to_dict()["state"] == "submitted"
    assert [e.to_dict() for e in cluster.producer.dead_letters()] == []
    outcomes = cluster.emulator.state.stats()["by_outcome"]
    assert outcomes.get("InternalError", 0) > 0 and outcomes.get("Throttling", 0) > 0


def test_a_worker_killed_mid_call_loses_nothing(cluster: Cluster) -> None:
    cluster.emulator.state.configure(latency_s=0.6)
    cluster.configure(url_daily_quota=1_000_000, urls_per_call=100, batch_lease_s=3)
    paths = [f"h{i % 4}.example.com/{i}" for i in range(1_500)]
    job = cluster.producer.enqueue(paths).job_id
    cluster.start_workers(1, concurrency=2)
    wait_for(lambda: cluster.emulator.state.stats()["requests"] >= 2, 30, cluster.logs)
    cluster.workers[0].kill()
    in_flight = cluster.redis.hlen(cluster.store.keys.shared.batches)
    assert in_flight > 0  # the kill did land mid-call
    cluster.start_workers(1, concurrency=2)
    cluster.wait_done([job], timeout_s=120)
    accepted = Counter(cluster.accepted())
    assert set(accepted) == {f"http://{p}" for p in paths}
    assert cluster.producer.status(job).to_dict()["counts"]["submitted"] == 1_500
    assert cluster.redis.hlen(cluster.store.keys.shared.batches) == 0


def test_wrong_credentials_hold_without_hammering_and_resume_after_the_fix(
    cluster: Cluster,
) -> None:
    cluster.configure(
        access_key_secret="wrong-secret",
        retry_base_delay_s=0.5,
        retry_max_delay_s=1,
        auth_hold_max_s=4,
    )
    job = cluster.producer.enqueue([f"a.example.com/{i}" for i in range(50)]).job_id
    cluster.start_workers(2)
    time.sleep(3)
    requests = cluster.emulator.state.stats()["requests"]
    assert 1 <= requests <= 5, requests  # backs off: 0.5 s, 1 s, 2 s ...
    status = cluster.producer.status(job).to_dict()
    assert status["counts"]["pending"] == 50
    assert "SignatureDoesNotMatch" in status["last_error"]
    assert [e.to_dict() for e in cluster.producer.dead_letters()] == []
    assert "wrong-secret" not in cluster.logs()
    cluster.stop_workers()
    cluster.start_workers(2, access_key_secret="testsecret")
    cluster.producer.replay()
    cluster.wait_done([job], timeout_s=30)
    assert len(set(cluster.accepted())) == 50


def test_one_malformed_path_in_a_batch_of_1000_is_the_only_one_dead_lettered(
    cluster: Cluster,
) -> None:
    # Longer than the emulator allows: valid for us, malformed for "the provider".
    cluster.emulator.state.configure(max_path_length=100)
    cluster.configure(url_daily_quota=100_000)
    good = [f"a.example.com/{i}" for i in range(999)]
    bad = "a.example.com/" + "x" * 120
    job = cluster.producer.enqueue([*good[:400], bad, *good[400:]]).job_id
    cluster.start_workers(2)
    cluster.wait_done([job])
    assert sorted(cluster.accepted()) == sorted(f"http://{p}" for p in good)
    assert cluster.producer.status(job).to_dict()["counts"] == {
        "pending": 0,
        "in_flight": 0,
        "submitted": 999,
        "failed": 1,
        "complete": 0,
    }
    dead = [e.to_dict() for e in cluster.producer.dead_letters()]
    assert [(d["path"], d["code"]) for d in dead] == [
        (f"http://{bad}", "InvalidObjectPath.Malformed")
    ]
    assert cluster.producer.lookup(bad).to_dict()["last_error"] == "InvalidObjectPath.Malformed"
