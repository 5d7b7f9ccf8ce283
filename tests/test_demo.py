"""``cdn-refresh demo`` end to end, as a user runs it: a subprocess on embedded defaults."""

from __future__ import annotations

import json
import os
import shutil
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
    assert {job["state"] for job in summary["jobs"]} == {"done"}
    assert _processes_with(f"CDN_REFRESH_KEY_PREFIX={summary['key_prefix']}") == []
