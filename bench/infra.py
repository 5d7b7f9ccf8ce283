"""The processes a benchmark needs, each in its own process group, all stopped on the way out.

``redis-server`` and the emulator are children of the bench on free loopback ports; Celery
workers are :class:`sandbox.local.WorkerProcess` (the demo's and tests' own). Anything still
alive when the bench leaves, by an exception, a timeout or Ctrl-C, is killed with its group.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from sandbox import local
from sandbox.local import WorkerProcess, kill_group, worker_env

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0

_groups: set[int] = set()
_groups_lock = threading.Lock()


def _track(pid: int) -> None:
    with _groups_lock:
        _groups.add(pid)


def _untrack(pid: int) -> None:
    with _groups_lock:
        _groups.discard(pid)


@atexit.register
def _kill_leftovers() -> None:
    # The last line of defence: a group that a with-block did not stop is killed here.
    with _groups_lock:
        groups = list(_groups)
        _groups.clear()
    for pid in groups:
        kill_group(pid)


def stop_group(process: subprocess.Popen[Any], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop the child's whole group (see sandbox.local) and stop tracking it."""
    local.stop_group(process, grace_s=timeout_s)
    _untrack(process.pid)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.01
) -> None:
    """Poll ``condition``; raise TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done in {timeout_s:.0f}s")
        time.sleep(interval_s)


class RedisServer:
    """A throwaway ``redis-server`` (:class:`sandbox.local.RedisServer`), no persistence,
    tracked so that it is killed whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self._server = local.RedisServer(workdir)
        self._server.start()
        assert self._server.process is not None
        self.process = self._server.process
        _track(self.process.pid)
        self.port = self._server.port
        self.url = self._server.url
        self.client = redis.Redis.from_url(self.url, decode_responses=True)

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])

    def flush(self) -> None:
        """Empty every database; the next benchmark starts from nothing."""
        self.client.flushall()

    def stop(self) -> None:
        self.client.close()
        self._server.stop()
        _untrack(self.process.pid)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorProcess:
    """``python -m emulator --port 0 --json`` in its own process, so it has its own GIL."""

    def __init__(self, url_quota: int, *extra: str, ready_timeout_s: float = 20) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulator",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--json",
                "--url-quota",
                str(url_quota),
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        _track(self.process.pid)
        try:
            self.url = self._read_ready_line(ready_timeout_s)["url"]
        except BaseException:
            self.stop()
            raise
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30, connect=5))

    def _read_ready_line(self, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError("the emulator did not print its ready line")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited at start")
        return dict(json.loads(line))

    def calls(self) -> list[dict[str, Any]]:
        """The accepted RefreshObjectCaches calls, oldest first."""
        return list(self.http.get("/_emulator/calls").raise_for_status().json()["calls"])

    def stats(self) -> dict[str, Any]:
        return dict(self.http.get("/_emulator/stats").raise_for_status().json())

    def refresh_requests(self) -> int:
        """RefreshObjectCaches requests of any outcome."""
        by_action = self.stats()["by_action"].get("RefreshObjectCaches", {})
        return sum(by_action.values())

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def stop(self) -> None:
        with contextlib.suppress(AttributeError):
            self.http.close()
        stop_group(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bench_settings(redis_url: str, endpoint: str, **overrides: Any) -> dict[str, Any]:
    """Settings values for workers and producers: this Redis, the emulator, test keys."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "endpoint": endpoint,
        "access_key_id": "testid",
        "access_key_secret": "testsecret",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return values


def make_settings(values: dict[str, Any]) -> Settings:
    """Settings from ``values`` alone: no ``.env``, nothing from the environment."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def child_env(values: dict[str, Any]) -> dict[str, str]:
    """The environment of a worker or CLI child: ``CDN_REFRESH_*`` from ``values`` only."""
    return worker_env(**values)


class Workers:
    """Celery worker processes (the first one runs the beat scheduler), stopped together."""

    def __init__(self, values: dict[str, Any], logdir: Path) -> None:
        self._env = child_env(values)
        self._logdir = logdir
        self.processes: list[WorkerProcess] = []

    def start(self, count: int, concurrency: int, ready_timeout_s: float = 60) -> None:
        started = []
        for _ in range(count):
            n = len(self.processes)
            worker = WorkerProcess(
                self._env,
                self._logdir / f"worker{n}.log",
                name=f"bench{n}",
                concurrency=concurrency,
                beat=n == 0,
            )
            _track(worker.process.pid)
            self.processes.append(worker)
            started.append(worker)
        for worker in started:
            worker.wait_ready(ready_timeout_s)

    def pids(self) -> list[int]:
        """Every process of every worker: parents and pool children."""
        pids = []
        for worker in self.processes:
            pids.append(worker.process.pid)
            pids.extend(_children(worker.process.pid))
        return pids

    def stop(self) -> None:
        for worker in self.processes:
            try:
                worker.stop()
            finally:
                _untrack(worker.process.pid)
        self.processes.clear()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used, from /proc (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Interrupt the main thread (KeyboardInterrupt) if the block runs past ``seconds``."""
    fired = threading.Event()

    def _fire() -> None:
        fired.set()
        print(f"\n{what}: deadline of {seconds:.0f}s passed, stopping", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(seconds, _fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise TimeoutError(f"{what}: deadline of {seconds:.0f}s passed") from None
        raise
    finally:
        timer.cancel()


def run_measured(
    args: list[str], env: dict[str, str], timeout_s: float, cwd: Path = ROOT
) -> tuple[int, bytes, float, int]:
    """Run a child in its own group, in ``cwd``: (exit code, stdout, wall seconds, peak RSS in
    KiB).

    The peak is the child's ``VmHWM``, sampled every few milliseconds until it exits (the
    high-water mark only grows, so the last sample holds it). ``ru_maxrss`` will not do: the
    kernel folds the parent's high-water mark into it when the forked child execs, so it
    reports the bench's own size.
    """
    with open(os.devnull, "rb") as stdin, _tempfile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=stdin, stdout=out, start_new_session=True
        )
        _track(process.pid)
        peak = [0]
        sampler = threading.Thread(target=_sample_hwm, args=(process, peak), daemon=True)
        sampler.start()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(process.pid)
            process.wait()
            raise TimeoutError(f"{args[0]}: not done in {timeout_s:.0f}s") from None
        finally:
            kill_group(process.pid)
            _untrack(process.pid)
            sampler.join(5)
        elapsed = time.perf_counter() - started
        out.seek(0)
        return process.returncode, out.read(), elapsed, peak[0]


def _sample_hwm(process: subprocess.Popen[Any], peak: list[int]) -> None:
    status = Path(f"/proc/{process.pid}/status")
    while process.returncode is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
                    break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)


def _tempfile() -> Any:
    import tempfile

    return tempfile.TemporaryFile()


def machine_info(redis_version: str) -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "uname": " ".join(platform.uname()),
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "redis": redis_version,
        "redis_py": redis.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load average at start (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def twin_stores(redis_server: RedisServer, label: str) -> dict[bool, Store]:
    """Two stores on one emptied Redis under two key prefixes (``True`` and ``False``: a
    feature on and off), so that a benchmark can time them in turn and the machine's drift
    (other work, CPU frequency) falls on both sides alike."""
    redis_server.flush()
    stores = {}
    for side in (True, False):
        values = bench_settings(
            redis_server.url,
            "http://127.0.0.1:9",
            url_daily_quota=10**9,
            key_prefix=f"{label}-{side}",
        )
        stores[side] = Store(redis_server.client, make_settings(values))
    return stores
