"""Real worker processes for end-to-end tests: Celery workers started as subprocesses with
their settings in the environment, stopped (or killed) with their whole process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cdn_refresh.local import kill_group, stop_group

ROOT = Path(__file__).resolve().parent.parent


def worker_env(**settings: object) -> dict[str, str]:
    """The parent's environment without any CDN_REFRESH_ value, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDN_REFRESH_")}
    env.update({f"CDN_REFRESH_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """One ``celery -A worker worker`` (optionally with the embedded beat scheduler)."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        name: str,
        concurrency: int = 2,
        beat: bool = False,
        argv: list[str] | None = None,
    ) -> None:
        """``argv`` replaces the usual ``celery ... worker`` command line when given."""
        args = argv or [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if beat and argv is None:
            args += ["--beat", "--schedule", str(log_path.with_suffix(".beat"))]
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 30) -> None:
        """Wait until Celery says the worker is ready."""
        wait_for(lambda: b" ready." in self.log_path.read_bytes(), timeout_s, self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: a crash, not a shutdown."""
        kill_group(self.process.pid)
        self.process.wait(10)
        self._log.close()

    def stop(self) -> None:
        """A warm shutdown; a kill if it hangs, and no pool child left behind."""
        stop_group(self.process, grace_s=20)
        self._log.close()


def wait_for(
    condition: Callable[[], bool], timeout_s: float, describe: Callable[[], str] | None = None
) -> None:
    """Poll ``condition`` until it holds; fail with ``describe()`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = describe() if describe else ""
            raise AssertionError(f"condition not met in {timeout_s}s\n{detail[-4000:]}")
        time.sleep(0.05)


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
