"""``python -m bench [--quick] [--only NAME ...]``: run the benchmarks, print, write results.

A full run writes ``bench/RESULTS.md`` (and ``bench/RESULTS.json``); a ``--quick`` or
``--only`` run writes to a temporary file instead, so that a smoke run never replaces the
figures of a full one. Every benchmark runs under a deadline; every process the bench starts
is stopped with its process group, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import (
    drain,
    enqueue,
    http_api,
    latency,
    long_lines,
    memory,
    overshoot,
    redesign,
    savings,
    soak,
    tracking,
)
from bench.infra import RedisServer, deadline, machine_info
from bench.report import RESULTS_MD, Result, console_table, save_before, write_results

Runner = Callable[[RedisServer, Path, bool], Result]
BENCHMARKS: dict[str, tuple[Runner, float]] = {
    # name: (runner, deadline in seconds for a full run)
    "enqueue": (enqueue.run, 300),
    "drain": (drain.run, 240),
    "latency": (latency.run, 150),
    "overshoot": (overshoot.run, 150),
    "memory": (memory.run, 120),
    "long-lines": (long_lines.run, 240),
    "savings": (savings.run, 300),
    "tracking": (tracking.run, 240),
    "http-api": (http_api.run, 180),
    "redesign": (redesign.run, 600),
    "soak": (soak.run, 600),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a ~1 minute smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--output", type=Path, help="where to write the Markdown results")
    parser.add_argument(
        "--save-before",
        metavar="NOTE",
        help="keep this run's enqueue figures as the 'before' of an optimization",
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # A shell starts background jobs with SIGINT ignored, and Python keeps it so: install the
    # handlers, so that Ctrl-C, a kill and the per-benchmark deadline all unwind the with-blocks
    # that stop every child process.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    names = args.only or list(BENCHMARKS)
    partial = args.quick or args.only is not None
    output = args.output or (
        Path(tempfile.gettempdir()) / "cdn-refresh-bench.md" if partial else RESULTS_MD
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="cdn-refresh-bench-") as tmp:
        workdir = Path(tmp)
        with RedisServer(workdir) as redis_server:
            machine = machine_info(redis_server.version())
            for name in names:
                runner, limit_s = BENCHMARKS[name]
                print(f"running {name} ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                try:
                    with deadline(limit_s / 3 if args.quick else limit_s, name):
                        result = runner(redis_server, workdir, args.quick)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    traceback.print_exc()
                    result = Result(name, name, error=f"{type(exc).__name__}: {exc}")
                result.seconds = time.monotonic() - started
                results.append(result)
                print(console_table([result]), flush=True)
                redis_server.flush()
    machine["load average at end (1, 5, 15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    options = {"quick": args.quick, "only": args.only}
    write_results(results, machine, options, output)
    if args.save_before:
        first = next(r for r in results if r.name == "enqueue")
        save_before(first, args.save_before)
    print(f"\nwrote {output}")
    failed = [r.name for r in results if r.error]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
