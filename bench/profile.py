"""Profile a hot path: ``python -m bench.profile [enqueue|drain] [--lines N] [--html FILE]``.

``enqueue``: ``Producer.enqueue`` of N input lines. ``drain``: the worker's ``Flusher``
draining N pending paths into the emulator (a subprocess), in this process so that the
profiler sees it. The Python side with pyinstrument (``pip install pyinstrument``; not a
project dependency), the Redis side with ``INFO commandstats``: the time redis-server spent
in the scripts and in the commands they called, per path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.data import enqueue_lines, unique_paths
from bench.infra import EmulatorProcess, RedisServer, bench_settings, make_settings
from cdn_refresh.store import Store, redis_from_settings
from producer.producer import Producer
from worker.client import CdnClient
from worker.pipeline import Flusher

SCRIPT_LOG_US = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("what", nargs="?", choices=["enqueue", "drain"], default="enqueue")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--html", type=Path, help="also write pyinstrument's HTML report")
    args = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pip install pyinstrument (not a project dependency)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        if args.what == "enqueue":
            profiler, elapsed, stats = _enqueue(server, args.lines, Profiler)
        else:
            profiler, elapsed, stats = _drain(server, args.lines, Profiler)
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"{args.lines:,} paths in {elapsed:.2f} s ({args.lines / elapsed:,.0f} paths/s)")
    print("redis-server, per path:")
    for name, stat in sorted(stats.items(), key=lambda kv: -kv[1]["usec"]):
        command = name.removeprefix("cmdstat_")
        print(
            f"  {command:<10} calls {stat['calls'] / args.lines:8.3f}  "
            f"usec {stat['usec'] / args.lines:7.3f}  (total {stat['usec'] / 1e6:.2f} s)"
        )
    if args.html:
        args.html.write_text(profiler.output_html(), encoding="utf-8")
    return 0


def _enqueue(server: RedisServer, count: int, profiler_class: Any) -> tuple[Any, float, Any]:
    lines, _ = enqueue_lines(count)
    settings = make_settings(bench_settings(server.url, "http://127.0.0.1:9"))
    client = redis_from_settings(settings.redis)
    producer = Producer(Store(client, settings))
    producer.enqueue(lines[:1000])  # load the script; warm the connection
    server.flush()
    server.client.config_resetstat()
    profiler = profiler_class(interval=0.0005)
    started = time.perf_counter()
    with profiler:
        producer.enqueue(lines)
    elapsed = time.perf_counter() - started
    stats = server.client.info("commandstats")
    client.close()
    return profiler, elapsed, stats


def _drain(server: RedisServer, count: int, profiler_class: Any) -> tuple[Any, float, Any]:
    paths = sorted(unique_paths(count))
    with EmulatorProcess(100_000_000) as emulator:
        values = bench_settings(server.url, emulator.url, url_daily_quota=1_000_000_000)
        settings = make_settings(values)
        client = redis_from_settings(settings.redis)
        Producer(Store(client, settings)).enqueue(paths)
        store = Store(client, settings)
        with CdnClient(settings.provider) as cdn:
            flusher = Flusher(store, cdn, settings)
            server.client.config_resetstat()
            # Scripts of a full batch into the slow log, to tell claim and settle apart (the
            # commands a script calls are logged too, but they take far less than this).
            server.client.config_set("slowlog-log-slower-than", SCRIPT_LOG_US)
            server.client.config_set("slowlog-max-len", 100_000)
            server.client.slowlog_reset()
            profiler = profiler_class(interval=0.0005)
            started = time.perf_counter()
            with profiler:
                while flusher.flush("File").batches:
                    pass
            elapsed = time.perf_counter() - started
        stats = server.client.info("commandstats")
        _script_times(server, count, store.script_shas())
        client.close()
    return profiler, elapsed, stats


def _script_times(server: RedisServer, count: int, shas: dict[str, str]) -> None:
    """Print the time Redis spent in each script (calls over SCRIPT_LOG_US), from the slow log."""
    names = {sha: name for name, sha in shas.items()}
    totals: dict[str, list[int]] = {}
    for entry in server.client.slowlog_get(100_000):
        command = entry["command"]
        args = (command.decode() if isinstance(command, bytes) else command).split()
        if args and args[0].upper() == "EVALSHA" and len(args) > 1:
            name = names.get(args[1], args[1])
            totals.setdefault(name, []).append(int(entry["duration"]))
    for name, durations in sorted(totals.items()):
        print(
            f"  {name:<10} calls {len(durations):6}  mean {sum(durations) / len(durations):8.0f} "
            f"us  total {sum(durations) / 1e6:.2f} s  per path {sum(durations) / count:.2f} us"
        )


if __name__ == "__main__":
    sys.exit(main())
