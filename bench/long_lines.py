"""Benchmark 6: the CLI's peak memory on over-long lines, which it must refuse unread.

``cdn-refresh enqueue --from-file FIFO --json`` reads one 100 MiB line, then (with
``--skip-invalid``) 10,000 lines of 1 MiB each. A writer thread feeds the FIFO, so that 10 GiB
of input never touches the disk. Every line is refused as too long; the CLI should read each
in bounded pieces, show only a prefix of it, and stay under 100 MiB of peak RSS whatever the
line lengths (a one-line file of short paths takes about 50 MiB: see benchmark 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from bench.enqueue import cli_command
from bench.infra import RedisServer, bench_settings, child_env, run_measured
from bench.report import Result

MIB = 1024 * 1024
TARGET_PEAK_MIB = 100
CLI_TIMEOUT_S = 150
PREFIX = b"https://cdn.example.com/"


def _feed(fifo: Path, line_bytes: int, count: int, failed: list[BaseException]) -> None:
    """Write ``count`` lines of ``line_bytes`` bytes (newline included) into ``fifo``."""
    filler = line_bytes - len(PREFIX) - 1
    block = b"a" * MIB
    try:
        with open(fifo, "wb") as out:
            for _ in range(count):
                out.write(PREFIX)
                for _ in range(filler // MIB):
                    out.write(block)
                out.write(block[: filler % MIB] + b"\n")
    except BrokenPipeError as exc:
        failed.append(exc)


def measure(
    workdir: Path, env: dict[str, str], line_bytes: int, count: int, *extra: str
) -> tuple[int, bytes, float, int]:
    """Run the CLI on ``count`` generated lines: (exit code, stdout, seconds, peak RSS KiB)."""
    fifo = workdir / "long-lines.fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    failed: list[BaseException] = []
    writer = threading.Thread(target=_feed, args=(fifo, line_bytes, count, failed), daemon=True)
    writer.start()
    try:
        args = [*cli_command(), "enqueue", "--from-file", str(fifo), "--json", *extra]
        return run_measured(args, env, CLI_TIMEOUT_S)
    finally:
        if writer.is_alive():
            # The child left without reading everything: open the reading end once, so that
            # the writer's open returns (or its write fails) and the thread ends.
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(10)
        fifo.unlink(missing_ok=True)
        if failed:
            raise RuntimeError(f"the CLI stopped reading its input: {failed[0]}")


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    big = (10 if quick else 100) * MIB
    many = 200 if quick else 10_000
    result = Result("long-lines", "6. CLI memory on over-long lines (all refused)")
    env = child_env(bench_settings(redis_server.url, "http://127.0.0.1:9"))

    code, out, seconds, peak = measure(workdir, env, big, 1)
    receipt = json.loads(out)
    if code != 2 or [r["line"] for r in receipt["rejected"]] != [1]:
        raise AssertionError(f"one {big // MIB} MiB line: exit {code}, {out[:500]!r}")
    result.add(
        f"CLI peak RSS, one {big // MIB} MiB line",
        peak / 1024,
        "MiB",
        target=f"< {TARGET_PEAK_MIB} MiB",
        ok=peak / 1024 < TARGET_PEAK_MIB,
    )
    result.notes.append(
        f"One {big // MIB} MiB line: exit 2 in {seconds:.2f} s, {len(out):,} bytes of JSON."
    )

    redis_server.flush()
    code, out, seconds, peak = measure(workdir, env, MIB, many, "--skip-invalid")
    receipt = json.loads(out)
    lines = [r["line"] for r in receipt["rejected"]]
    if code != 0 or receipt["accepted"] or lines != list(range(1, many + 1)):
        raise AssertionError(f"{many:,} lines of 1 MiB: exit {code}, {out[:500]!r}")
    result.add(
        f"CLI peak RSS, {many:,} lines of 1 MiB, --skip-invalid",
        peak / 1024,
        "MiB",
        target=f"< {TARGET_PEAK_MIB} MiB",
        ok=peak / 1024 < TARGET_PEAK_MIB,
    )
    result.notes.append(
        f"{many:,} lines of 1 MiB ({many * MIB / 1024**3:.1f} GiB) through a FIFO: exit 0 in "
        f"{seconds:.2f} s ({many / seconds:,.0f} MiB/s), {len(out):,} bytes of "
        "JSON listing every line as refused."
    )
    redis_server.flush()
    return result
