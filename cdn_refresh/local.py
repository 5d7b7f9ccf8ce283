"""Processes on this machine: the demo starts some, and so do the tests and benchmarks.

One place for the two things each of them needs: a free loopback port, and stopping a child
started in its own session together with everything it started (a Celery worker's pool
children outlive a parent that dies, unless their process group goes too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any


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
