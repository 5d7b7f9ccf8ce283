"""Real worker processes for end-to-end tests (the toolkit is cdn_refresh.local, shared with
the demo and the benchmarks), and the settings a test cluster runs on."""

from __future__ import annotations

from cdn_refresh.local import ROOT, WorkerProcess, wait_for, worker_env

__all__ = ["ROOT", "WorkerProcess", "cluster_values", "wait_for", "worker_env"]


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
    }
    base.update(values)
    return base
