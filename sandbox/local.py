"""Processes on this machine: the demo starts some, and so do the tests and benchmarks.

One toolkit for all three: a free loopback port; stopping a child started in its own
session together with everything it started (a Celery worker's pool children outlive a
parent that dies, unless their process group goes too); a throwaway ``redis-server``; and a
Celery worker process with its settings in the environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a child started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def stop_group(process: subprocess.Popen[Any], grace_s: float = 10) -> None:
    """SIGTERM the child's group, SIGKILL it after ``grace_s``, and reap the child."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    # Pool children that outlived their parent go too.
    kill_group(process.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def wait_for(
    condition: Callable[[], bool], timeout_s: float, describe: Callable[[], str] | None = None
) -> None:
    """Poll ``condition`` until it holds; AssertionError with ``describe()`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            detail = describe() if describe else ""
            raise AssertionError(f"condition not met in {timeout_s}s\n{detail[-4000:]}")
        time.sleep(0.05)


class RedisServer:
    """A ``redis-server`` child on a free loopback port, in its own process group.

    No persistence unless ``appendonly`` (then every write is fsynced, so a restart keeps
    everything acknowledged). ``password`` sets ``requirepass``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = False,
        password: str | None = None,
        binary: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        """``args``: more of redis-server's options (``--replicaof 127.0.0.1 PORT``)."""
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = found
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.appendonly = appendonly
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/0``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10) -> None:
        """Start it (again, on the same port and directory) and wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)),
            *("--save", "", "--appendonly", "yes" if self.appendonly else "no"),
            *("--appendfsync", "always"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.args
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the append-only file is synced), then the group."""
        if self.process is not None:
            stop_group(self.process)
        self.process = None


class SentinelServer:
    """A Redis Sentinel (``redis-server sentinel.conf --sentinel``, what Debian's
    ``redis-sentinel`` runs) on a free loopback port, watching one primary as ``master``.

    Quick to act, for tests and benchmarks: the primary is down after ``down_after_ms``
    without an answer, and a quorum of two Sentinels fails it over.
    """

    def __init__(
        self,
        workdir: Path,
        primary_port: int,
        *,
        master: str = "mymaster",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        binary: str | None = None,
    ) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.master = master
        workdir.mkdir(parents=True, exist_ok=True)
        # Sentinel rewrites its configuration file as it learns: it must be its own.
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
            f"sentinel failover-timeout {master} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {master} 1\n",
            encoding="utf-8",
        )
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [found, str(self.conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def client(self) -> redis.Redis:
        """A client of this Sentinel (``SENTINEL ...`` commands)."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def primary_port(self) -> int | None:
        """The port of the primary this Sentinel names now (None while it cannot say)."""
        client = self.client()
        try:
            answer = client.execute_command("SENTINEL", "get-master-addr-by-name", self.master)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        finally:
            client.close()
        return int(answer[1]) if answer else None

    def stop(self) -> None:
        """Stop it and its group."""
        stop_group(self.process)


def worker_env(**settings: object) -> dict[str, str]:
    """This environment without any ``CDN_REFRESH_`` value, plus ``settings`` as
    ``CDN_REFRESH_<NAME>``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDN_REFRESH_")}
    env.update({f"CDN_REFRESH_{k.upper()}": str(v) for k, v in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def celery_worker_argv(
    *, name: str, concurrency: int, loglevel: str = "INFO", beat_schedule: Path | None = None
) -> list[str]:
    """``celery -A worker worker`` as the demo, tests and benchmarks run it: prefork, no
    gossip, mingle or heartbeat (nothing here needs them; each costs start-up time)."""
    argv = [
        sys.executable,
        *("-m", "celery", "-A", "worker", "worker", "--loglevel", loglevel),
        *("--concurrency", str(concurrency), "--pool", "prefork", "-n", f"{name}@%h"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    if beat_schedule is not None:
        argv += ["--beat", "--schedule", str(beat_schedule)]
    return argv


class WorkerProcess:
    """One worker process, its output in ``log_path``, in its own process group."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        name: str,
        concurrency: int = 2,
        beat: bool = False,
        argv: Sequence[str] | None = None,
    ) -> None:
        """``argv`` replaces the usual :func:`celery_worker_argv` command line when given."""
        args = (
            list(argv)
            if argv is not None
            else celery_worker_argv(
                name=name,
                concurrency=concurrency,
                beat_schedule=log_path.with_suffix(".beat") if beat else None,
            )
        )
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
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
        """Everything the worker wrote so far."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once: a crash, not a shutdown."""
        kill_group(self.process.pid)
        self.process.wait(10)
        self._log.close()

    def stop(self, grace_s: float = 20) -> None:
        """A warm shutdown; a kill if it hangs, and no pool child left behind."""
        stop_group(self.process, grace_s=grace_s)
        self._log.close()


class ApiProcess:
    """``cdn-refresh api`` as a child on a free loopback port, its output in ``log_path``.

    A real uvicorn serving the real application: what tests and benchmarks talk HTTP to.
    """

    def __init__(self, env: dict[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        argv = [sys.executable, "-m", "cdn_refresh", "api", "--host", "127.0.0.1"]
        self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [*argv, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 30) -> None:
        """Wait until it answers HTTP (``/healthz`` may say 503: Redis is another matter)."""
        import httpx

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"cdn-refresh api exited: {self.log()[-2000:]}")
            try:
                httpx.get(self.url + "/healthz", timeout=5)
            except httpx.TransportError:
                return False
            return True

        wait_for(answers, timeout_s, self.log)

    def log(self) -> str:
        """Everything the server wrote so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then the group."""
        stop_group(self.process)
        self._log.close()

    def __enter__(self) -> ApiProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_redis_flush(url: str) -> None:
    """Empty the Redis at ``url`` (tests and benchmarks between runs)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
