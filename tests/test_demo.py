"""``cdn-refresh demo`` end to end, as a user runs it: a subprocess on embedded defaults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import worker_env

pytestmark = pytest.mark.e2e


def _processes_with(marker: str) -> list[int]:
    """PIDs whose environment holds ``marker`` (the demo's unique key prefix)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_runs_the_sample_to_the_end_and_leaves_no_process(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None and os.environ.get("CI"):
        pytest.fail("redis-server is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "cdn_refresh", "demo", "--json", "--timeout", "120"],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    rows = summary["rows"]
    # 60 unique https URLs, one http spelling, one directory; the newline path was refused.
    assert len(rows) == 62
    assert all(row["state"] == "submitted" and row["task_id"] for row in rows), rows
    assert [r["reason"] for r in summary["rejected"]] == ["control character U+000A"]
    assert {job["state"] for job in summary["jobs"]} == {"submitted"}
    assert _processes_with(f"CDN_REFRESH_KEY_PREFIX={summary['key_prefix']}") == []


def test_ctrl_c_stops_the_demo_with_exit_0_and_leaves_no_process(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None and os.environ.get("CI"):
        pytest.fail("redis-server is not installed")
    demo = subprocess.Popen(
        [sys.executable, "-m", "cdn_refresh", "demo"],
        cwd=tmp_path,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:
        seen.append(line)
        if line.startswith("progress:"):
            break  # the worker is up and the sample is in: interrupt mid-run
    worker_line = next(line for line in seen if line.startswith("worker:"))
    worker_pid = int(worker_line.split()[2].rstrip(","))
    prefix = worker_line.split("keys ")[1].split()[0]
    demo.send_signal(signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, "".join(seen) + rest
    assert "interrupted" in rest
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    # Neither the worker nor its pool children (which would be orphans) outlive the demo.
    assert _processes_with(f"CDN_REFRESH_KEY_PREFIX={prefix}") == []


def test_the_demo_says_what_happened_in_the_states_own_words(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None and os.environ.get("CI"):
        pytest.fail("redis-server is not installed")
    result = subprocess.run(
        [sys.executable, "-m", "cdn_refresh", "demo", "--timeout", "120"],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # No path to a log that is gone once the demo exits.
    assert "worker.log" not in out
    # Without a terminal, a progress line only when a path moved: never the same one twice.
    progress = [line for line in out.splitlines() if line.startswith("progress:")]
    moved = [line.split("  URL quota")[0] for line in progress]
    assert len(moved) == len(set(moved)), progress
    # A File under the Directory says what covered it; the end says submitted, not refreshed.
    assert "covered by https://static.example.com/img/ (task " in out
    assert "62 paths: 62 submitted." in out
    assert "refreshed" not in out.splitlines()[-1] and "Done." not in out


def test_a_task_cell_names_what_covered_a_path_and_a_calls_several_tasks() -> None:
    from sandbox.demo import task_cell

    assert task_cell({"task_id": "7", "covered_by": "https://a.com/d/"}) == (
        "covered by https://a.com/d/ (task 7)"
    )
    assert task_cell({"task_id": "7,8", "covered_by": None}) == "one of 7, 8 (its call's tasks)"
    assert task_cell({"task_id": None}) == "-"
