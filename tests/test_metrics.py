"""End to end over HTTP: real Celery workers, the emulator, a real uvicorn API and a real
receiving server. After a drain, ``/metrics`` (parsed by prometheus_client's own parser)
agrees with ``status`` and ``quota`` and with what the provider saw; the job's webhook came
once, signed, after a failed first attempt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from cdn_refresh import callbacks
from emulator import EmulatorConfig, EmulatorServer
from sandbox.local import ApiProcess
from tests.conftest import make_store
from tests.harness import WorkerProcess, cluster_values, wait_for, worker_env
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
TOKEN = "metrics-test-token-4b1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


@pytest.fixture
def deployment(redis_url: str, tmp_path: Path) -> Iterator[tuple[EmulatorServer, ApiProcess]]:
    config = EmulatorConfig(seed=5, url_quota=1_000_000, dir_quota=10_000)
    with EmulatorServer(config) as emulator:
        emulator.state.configure(internal_error_rate=0.25)
        values = cluster_values(
            redis_url,
            emulator.url,
            url_daily_quota=5_000,
            api_tokens=TOKEN,
            webhook_secret="hook-secret",
            webhook_allowed_hosts="127.0.0.1:*",
            webhook_retry_base_delay_s=0.2,
            webhook_retry_max_delay_s=0.5,
            # Tasks tracked to completion within the test: the webhook comes at complete.
            task_first_check_s=0.3,
            task_check_max_s=1.0,
        )
        env = worker_env(**values)
        worker = WorkerProcess(env, tmp_path / "worker.log", name="w0", beat=True)
        try:
            with ApiProcess(env, tmp_path / "api.log") as api:
                worker.wait_ready()
                yield emulator, api
        finally:
            worker.stop()


def test_metrics_agree_with_status_and_quota_and_the_webhook_comes_once(
    deployment: tuple[EmulatorServer, ApiProcess], redis_client: redis.Redis
) -> None:
    emulator, api = deployment
    paths = [f"h{i % 3}.example.com/m/{i}.css" for i in range(2_500)]
    with Receiver(fail_first=1) as receiver, httpx.Client(base_url=api.url, timeout=10) as http:
        body = {"paths": paths, "callback_url": receiver.url}
        job_id = http.post("/v1/refresh", json=body, headers=AUTH).json()["job_id"]
        dirs = {"paths": ["h0.example.com/static/"], "type": "directory", "priority": "bulk"}
        dir_job = http.post("/v1/refresh", json=dirs, headers=AUTH).json()["job_id"]
        wait_for(lambda: len(receiver.successes()) == 1, 90, api.log)
        wait_for(
            lambda: http.get(f"/v1/jobs/{dir_job}", headers=AUTH).json()["state"] == "complete",
            30,
        )
        status = http.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
        quota = http.get("/v1/quota", headers=AUTH).json()
        metrics = samples(http.get("/metrics").text)
    assert status["state"] == "complete"
    (success,) = receiver.successes()
    assert json.loads(success.body)["job"]["state"] == "complete"
    assert [a.answered for a in receiver.attempts] == [500, 200]
    signature = success.headers["x-cdn-refresh-signature"]
    timestamp = success.headers["x-cdn-refresh-timestamp"]
    assert callbacks.verify("hook-secret", success.body, signature, timestamp)
    assert json.loads(success.body)["job"]["job_id"] == job_id

    def m(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted(labels.items())))]

    assert m("cdn_refresh_submitted_paths_total", type="file") == status["counts"]["complete"]
    assert m("cdn_refresh_submitted_paths_total", type="directory") == 1
    for label in ("file", "directory"):
        assert m("cdn_refresh_quota_used", type=label) == quota[label]["used"]
        assert m("cdn_refresh_quota_limit", type=label) == quota[label]["limit"]
        assert m("cdn_refresh_oldest_pending_age_seconds", type=label) == 0
        assert m("cdn_refresh_dead_letter_paths", type=label) == 0
        for priority in ("interactive", "bulk"):
            assert m("cdn_refresh_pending_paths", type=label, priority=priority) == 0
    # Every call the provider answered is counted once, by how it ended.
    by_outcome = emulator.state.stats()["by_outcome"]
    accepted = len(emulator.state.calls())
    submitted_calls = m("cdn_refresh_calls_total", type="file", outcome="submitted") + m(
        "cdn_refresh_calls_total", type="directory", outcome="submitted"
    )
    assert submitted_calls == accepted
    retried = sum(
        v
        for (n, labels), v in metrics.items()
        if n == "cdn_refresh_calls_total" and ("outcome", "retry") in labels
    )
    assert retried == by_outcome.get("InternalError", 0) > 0
    count = m("cdn_refresh_call_duration_seconds_count", type="file") + m(
        "cdn_refresh_call_duration_seconds_count", type="directory"
    )
    assert count == accepted + retried
    # The histogram as stored: +Inf holds every call the settle scripts counted, and the
    # buckets only grow.
    stored = redis_client.hgetall(make_store(redis_client).keys.shared.metrics)
    for label, kind in (("file", "File"), ("directory", "Directory")):
        buckets = sorted(
            (float(dict(labels)["le"]), v)  # float("+Inf") sorts last
            for (n, labels), v in metrics.items()
            if n == "cdn_refresh_call_duration_seconds_bucket" and ("type", label) in labels
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert buckets[-1][1] == float(stored.get(f"duration_count|{kind}", 0))
    assert m("cdn_refresh_webhook_outbox") == 0 and m("cdn_refresh_webhook_dead_letters") == 0
