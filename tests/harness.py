"""Real worker processes for end-to-end tests (the toolkit is sandbox.local, shared with
the demo and the benchmarks), and the settings a test cluster runs on."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from cdn_refresh.constants import ObjectType
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch, JobState
from emulator import EmulatorServer
from producer.producer import Producer
from sandbox.local import ROOT, WorkerProcess, celery_worker_argv, wait_for, worker_env
from tests.conftest import make_settings

__all__ = [
    "ROOT",
    "Cluster",
    "WorkerProcess",
    "celery_worker_argv",
    "claim_batch",
    "cluster_values",
    "job_counts",
    "store_and_producer",
    "wait_for",
    "worker_env",
]


def store_and_producer(client: redis.Redis, **overrides: object) -> tuple[Producer, Store]:
    """A producer and a store on ``client``, with test settings (``overrides`` applied)."""
    store = Store(client, make_settings(**overrides))
    return Producer(store), store


def claim_batch(store: Store, kind: ObjectType, now: float | None = None) -> Batch:
    """Claim a batch (at ``now``, default the local clock), which must be there."""
    claimed = store.batches.claim(kind, time.time() if now is None else now)
    assert isinstance(claimed, Batch), claimed
    return claimed


def job_counts(producer: Producer, job_id: str) -> dict[str, int]:
    """A job's counts by state, the empty ones left out."""
    counts: dict[str, int] = producer.status(job_id).to_dict()["counts"]
    return {state: n for state, n in counts.items() if n}


def cluster_values(redis_url: str, endpoint: str, **values: object) -> dict[str, object]:
    """Settings for a test cluster: fast ticks and retries, the emulator's test key."""
    base: dict[str, object] = {
        "redis_url": redis_url,
        "endpoint": endpoint,
        "access_key_id": "testid",
        "access_key_secret": "testsecret",
        "flush_interval_s": 0.5,
        "flush_debounce_s": 0.05,
        "retry_base_delay_s": 0.05,
        "retry_max_delay_s": 0.2,
        "http_read_timeout_s": 5,
        # Paths of a Failed task cool before their retry with a cooldown: the tests of
        # retries and failures run without one; those of the cooldown set it.
        "refresh_cooldown_s": 0,
    }
    base.update(values)
    return base


class Cluster:
    """Worker processes, a producer and the emulator sharing one Redis."""

    def __init__(self, redis_url: str, emulator: EmulatorServer, tmp_path: Path) -> None:
        self.redis_url = redis_url
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []
        self.settings_values: dict[str, Any] = {}
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def configure(self, **values: Any) -> None:
        base = cluster_values(self.redis_url, self.emulator.url, **values)
        self.settings_values = base
        self.settings = Settings(_env_file=None, **base)  # type: ignore[arg-type]
        self.producer = Producer.from_settings(self.settings)
        self.store = Store(self.redis, self.settings)

    def start_workers(self, count: int, concurrency: int = 2, **overrides: Any) -> None:
        env = worker_env(**{**self.settings_values, **overrides})
        for _ in range(count):
            n = len(self.workers)
            worker = WorkerProcess(
                env,
                self.tmp_path / f"worker{n}.log",
                name=f"w{n}",
                concurrency=concurrency,
                beat=not any(w.process.poll() is None for w in self.workers),
            )
            self.workers.append(worker)
        for worker in self.workers[-count:]:
            worker.wait_ready()

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()

    def logs(self) -> str:
        return "\n".join(w.log()[-3000:] for w in self.workers)

    def accepted(self) -> list[str]:
        return [p for call in self.emulator.state.calls() for p in call["paths"]]

    def wait_done(self, job_ids: list[str], timeout_s: float = 60) -> None:
        wait_for(
            lambda: all(
                # Every path sent or settled: submitted, or already complete when the tasks ended
                # quickly, failed or incomplete; never pending or in progress.
                self.producer.status(j).state not in (JobState.PENDING, JobState.IN_PROGRESS)
                for j in job_ids
            ),
            timeout_s,
            lambda: json.dumps([self.producer.status(j).to_dict() for j in job_ids]) + self.logs(),
        )
