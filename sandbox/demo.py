"""``cdn-refresh demo``: the whole pipeline on one machine, on embedded defaults.

It starts Redis (a real ``redis-server`` from PATH, else an in-process fakeredis TCP server,
which is not durable), the emulator, and one worker process with the scheduler embedded;
enqueues a sample with duplicates, a directory, one bad path and more URLs than a small demo
quota; shows live progress; and ends with a table of paths and task IDs. Every process it
starts is stopped on the way out, on Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from sandbox.local import RedisServer, celery_worker_argv, free_port, stop_group, worker_env

DEMO_URL_QUOTA = 25
DEMO_QUOTA_WINDOW_S = 5.0
DEMO_URLS_PER_CALL = 10
POLL_S = 0.5


def sample_paths() -> tuple[list[str], list[str]]:
    """(File inputs, Directory inputs): duplicates, spellings, and one injection attempt."""
    files = [f"https://static.example.com/img/{i}.png" for i in range(30)]
    files += [f"https://www.example.com/news/{i}.html" for i in range(20)]
    files += [f"https://cdn.example.org/js/app{i}.js" for i in range(10)]
    files += [
        "HTTPS://Static.Example.COM:443/img/0.png#top",  # the same as img/0.png
        "https://www.example.com/news/1.html",  # an exact repeat
        "static.example.com/img/2.png",  # no scheme: http, so a different URL
        "https://static.example.com/bad\nhttps://victim.example/",  # rejected: a newline
    ]
    return files, ["https://static.example.com/img/"]


class EmbeddedRedis:
    """A throwaway Redis on loopback: ``redis-server`` if installed, else fakeredis."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._server: RedisServer | None = None
        self._fake: Any = None
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.kind = ""
        self.fake = False

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary:
            self.kind = f"redis-server ({binary}), in a temporary directory"
            self._server = RedisServer(self._workdir, binary=binary)
            self._server.start()
            self.port, self.url = self._server.port, self._server.url
            return
        try:
            from fakeredis import TcpFakeServer
        except ImportError:
            raise click.ClickException(
                "no Redis: set CDN_REFRESH_REDIS_URL, install redis-server, or install "
                "the test extra (fakeredis)"
            ) from None
        self.kind = "fakeredis in this process (NOT durable: a fallback for trying it out)"
        self.fake = True
        self._fake = TcpFakeServer(("127.0.0.1", self.port))
        threading.Thread(target=self._fake.serve_forever, daemon=True).start()
        _wait_for_port(self.port, 10)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._fake is not None:
            self._fake.shutdown()
            self._fake.server_close()


def _wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise click.ClickException(f"nothing listens on 127.0.0.1:{port}")


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(as_json: bool = False, timeout_s: float = 180) -> int:
    """Run the demo; returns the exit code."""
    from emulator import EmulatorConfig, EmulatorServer

    say = (lambda *_: None) if as_json else click.echo
    workdir = Path(tempfile.mkdtemp(prefix="cdn-refresh-demo-"))
    prefix = f"demo-{uuid.uuid4().hex[:8]}"
    embedded: EmbeddedRedis | None = None
    worker: subprocess.Popen[bytes] | None = None
    emulator = EmulatorServer(EmulatorConfig(url_quota=1_000_000))
    summary: dict[str, Any] = {"key_prefix": prefix}
    try:
        with _sigterm_as_interrupt():
            redis_url = os.environ.get("CDN_REFRESH_REDIS_URL")
            if redis_url:
                summary["redis"] = "CDN_REFRESH_REDIS_URL"
                say(f"redis:    CDN_REFRESH_REDIS_URL (keys under {{{prefix}}})")
            else:
                embedded = EmbeddedRedis(workdir)
                embedded.start()
                redis_url = embedded.url
                summary["redis"] = embedded.kind
                say(f"redis:    {embedded.kind} on {embedded.url}")
            emulator.start()
            say(f"provider: the emulator on {emulator.url}")
            values = _demo_values(redis_url, prefix, emulator.url)
            if embedded is not None and embedded.fake:
                # fakeredis answers no INFO and never evicts: the guard would refuse it.
                values["ALLOW_EVICTION"] = "true"
            log_path = workdir / "worker.log"
            worker = _start_worker(values, workdir, log_path)
            # Its log lives in a directory removed on exit: shown when the worker fails.
            say(f"worker:   pid {worker.pid}, scheduler embedded, keys {prefix}")
            say(
                f"quota:    {DEMO_URL_QUOTA} URLs per {DEMO_QUOTA_WINDOW_S:g} s rolling window "
                f"(a demo setting), {DEMO_URLS_PER_CALL} URLs per call"
            )
            return _drive(values, as_json, say, summary, worker, timeout_s, log_path)
    except KeyboardInterrupt:
        say("\ninterrupted: stopping the worker, the emulator and Redis")
        return 0
    finally:
        if worker is not None:
            stop_group(worker)
        emulator.stop()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _drive(
    values: dict[str, str],
    as_json: bool,
    say: Any,
    summary: dict[str, Any],
    worker: subprocess.Popen[bytes],
    timeout_s: float,
    log_path: Path,
) -> int:
    from cdn_refresh.settings import Settings
    from producer.producer import Producer

    settings = Settings(_env_file=None, **{k.lower(): v for k, v in values.items()})
    producer = Producer.from_settings(settings)
    files, dirs = sample_paths()
    file_receipt = producer.enqueue(files, "File", skip_invalid=True)
    dir_receipt = producer.enqueue(dirs, "Directory")
    say(
        f"enqueued: job {file_receipt.job_id}: {file_receipt.accepted} URLs accepted, "
        f"{file_receipt.duplicates} duplicate(s) coalesced, "
        f"{file_receipt.rejected_count} rejected; job {dir_receipt.job_id}: 1 directory"
    )
    for r in file_receipt.rejected:
        say(f"rejected: line {r.line}: {r.reason}: {r.path!r}")
    jobs = [file_receipt.job_id, dir_receipt.job_id]
    _watch(producer, jobs, as_json, say, worker, timeout_s, log_path)
    rows = _table_rows(producer, files, dirs)
    summary.update(
        jobs=[producer.status(j).to_dict() for j in jobs],
        rejected=[
            {"line": r.line, "path": r.path, "reason": r.reason} for r in file_receipt.rejected
        ],
        rows=rows,
    )
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_table(rows, say)
    return 0


def _demo_values(redis_url: str, prefix: str, endpoint: str) -> dict[str, str]:
    """The demo's settings (names without the CDN_REFRESH_ prefix)."""
    return {
        "REDIS_URL": redis_url,
        "KEY_PREFIX": prefix,
        "ENDPOINT": endpoint,
        "ACCESS_KEY_ID": "testid",
        "ACCESS_KEY_SECRET": "testsecret",
        "URL_DAILY_QUOTA": str(DEMO_URL_QUOTA),
        "QUOTA_WINDOW_S": str(DEMO_QUOTA_WINDOW_S),
        "URLS_PER_CALL": str(DEMO_URLS_PER_CALL),
        "FLUSH_INTERVAL_S": "0.5",
        "FLUSH_DEBOUNCE_S": "0.1",
    }


def _start_worker(values: dict[str, str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """One worker with the scheduler embedded, on exactly ``values`` (nothing inherited)."""
    env = worker_env(**values)
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            celery_worker_argv(name="demo", concurrency=2, beat_schedule=workdir / "beat-schedule"),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _table_rows(producer: Any, files: list[str], dirs: list[str]) -> list[dict[str, Any]]:
    """One row per distinct normalized path: its type, state and task ID."""
    rows: list[dict[str, Any]] = []
    for kind, inputs in (("File", files), ("Directory", dirs)):
        seen: set[str] = set()
        for raw in inputs:
            with contextlib.suppress(ValueError):
                found = producer.lookup(raw, kind)
                if found.path in seen:
                    continue
                seen.add(found.path)
                rows.append(
                    {
                        "path": found.path,
                        "type": kind,
                        "state": found.state.value,
                        "task_id": found.task_id,
                        "covered_by": found.covered_by,
                    }
                )
    return rows


def task_cell(row: dict[str, Any]) -> str:
    """The task column in words: a covered path names what covered it; a call over several
    domains lists its tasks until the first check names the path's own."""
    task_id = row["task_id"]
    if not task_id:
        return "-"
    if row.get("covered_by"):
        return f"covered by {row['covered_by']} (task {task_id})"
    if "," in task_id:
        return f"one of {task_id.replace(',', ', ')} (its call's tasks)"
    return str(task_id)


def summary_line(rows: list[dict[str, Any]]) -> str:
    """What happened, in the states' own words: submitted is not yet refreshed."""
    states = {state: sum(r["state"] == state for r in rows) for state in {r["state"] for r in rows}}
    said = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    text = f"{len(rows)} paths: {said}."
    if states.get("submitted"):
        text += (
            " Submitted: the provider took them and named a task; the CDN serves the new"
            " content once the task is complete (minutes; `cdn-refresh status JOB --wait`)."
        )
    return text


def _print_table(rows: list[dict[str, Any]], say: Any) -> None:
    width = max(len(row["path"]) for row in rows)
    say(f"\n{'path':<{width}}  {'type':<9}  {'state':<9}  task id")
    for row in rows:
        say(f"{row['path']:<{width}}  {row['type']:<9}  {row['state']:<9}  {task_cell(row)}")
    say("\n" + summary_line(rows))


def _watch(
    producer: Any,
    jobs: list[str],
    as_json: bool,
    say: Any,
    worker: subprocess.Popen[bytes],
    timeout_s: float,
    log_path: Path,
) -> None:
    """Show progress until every job ends; fail if the worker dies or time runs out."""
    from cdn_refresh.constants import ObjectType

    deadline = time.monotonic() + timeout_s
    tty = sys.stdout.isatty() and not as_json
    shown = (-1, -1)
    while True:
        statuses = [producer.status(j) for j in jobs]
        usage = producer.usage(ObjectType.FILE)
        pending = sum(s.counts.waiting for s in statuses)
        submitted = sum(s.counts.submitted for s in statuses)
        line = (
            f"progress: pending {pending:>3}  submitted {submitted:>3}  "
            f"URL quota left {usage.remaining:>3}/{usage.limit}"
        )
        if tty:
            click.echo("\r" + line, nl=False)
        elif (pending, submitted) != shown:
            say(line)  # without a terminal, a line only when a path moved
        shown = (pending, submitted)
        if all(s.state in ("submitted", "failed", "incomplete") for s in statuses):
            break
        if worker.poll() is not None:
            raise click.ClickException("the worker exited early:\n" + _log_tail(log_path))
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"the demo did not finish in {timeout_s:g} s; the worker said:\n"
                + _log_tail(log_path)
            )
        time.sleep(POLL_S)
    if tty:
        click.echo()
