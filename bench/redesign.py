"""Benchmark: the redesign, before and after, in one run.

"Before" is release 1628e5c (the last release before the redesign of states, operations and
policies as tables, Lua scripts in sections and smaller stored formats), materialised from
this clone's history with ``git archive`` into a temporary folder; "after" is this working
tree. Each tree is measured by ``bench/redesign_probe.py`` in a child process whose working
directory and ``PYTHONPATH`` are that tree (same interpreter, same ``redis-server``, an empty
database each time), and by its own ``python -m cdn_refresh enqueue --from-file``. The trees
take turns, before then after, then after then before, for a few rounds; the floor of the
enqueue figures (bench/enqueue.py's pipelined ``ZADD NX``) runs between them in each round.
Times are the best round of each tree (each round's claim and settle figure is already the
median of its batches), so that the noise of a shared machine falls on both alike; memory is
the median round.

- claim: ``store.batches.claim(ObjectType.FILE)`` on a queue of pending File paths, time per
  claimed path (no HTTP, no worker);
- settle: ``store.batches.submit(batch, (), task_ids, request_id)`` of each claimed batch (its
  records written, the call tracked), time per path;
- memory: growth of ``used_memory`` per pending File path, as bench/memory.py measures it;
- enqueue: ``Producer.enqueue`` and the CLI over bench/enqueue.py's input, against its floor.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.data import enqueue_lines, unique_paths, write_lines
from bench.enqueue import TARGET_RATIO, floor
from bench.infra import ROOT, RedisServer, bench_settings, child_env, make_settings, run_measured
from bench.report import Result
from cdn_refresh import constants
from cdn_refresh.store import redis_from_settings

RELEASE = "1628e5c"
PROBE = Path(__file__).resolve().parent / "redesign_probe.py"
# After over before, for the time per path of a claim and of a settle: no regression.
TARGET_COST_RATIO = 1.1
# Bytes of used_memory per pending File path, at MEMORY_TARGET_PATHS pending.
TARGET_MEMORY_B = 300
MEMORY_TARGET_PATHS = 200_000
CHILD_TIMEOUT_S = 240
BEFORE, AFTER = "before", "after"
# Settings whose default changed after the release, given the working tree's default in
# both trees, so that the figures compare the code and not the defaults: the release ran
# without a cooldown by default, which spares a claim two ZMSCOREs and a ZADD per batch.
PINNED = {
    "refresh_cooldown_s": constants.REFRESH_COOLDOWN_S,
    "task_first_check_s": constants.TASK_FIRST_CHECK_S,
}


def materialise(workdir: Path, commit: str = RELEASE) -> Path | None:
    """``git archive commit | tar -x`` into a new folder of ``workdir``; ``None`` when this
    clone does not have the commit (a shallow clone, an export)."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        return None
    tree = workdir / f"release-{commit}"
    tree.mkdir()
    with subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE
    ) as archive:
        subprocess.run(["tar", "-x", "-C", str(tree)], stdin=archive.stdout, check=True)
        assert archive.stdout is not None
        archive.stdout.close()
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {commit} exited {archive.returncode}")
    return tree


def _env(tree: Path, values: dict[str, Any]) -> dict[str, str]:
    # The tree first on sys.path (python -P adds neither the script's folder nor the cwd), so
    # that its packages, not the ones the venv's editable install points at, are imported.
    return {**child_env(values), "PYTHONPATH": str(tree)}


def _probe(
    tree: Path, redis_server: RedisServer, values: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    redis_server.flush()
    args = [sys.executable, "-P", str(PROBE), json.dumps(options)]
    code, out, _, _ = run_measured(args, _env(tree, values), CHILD_TIMEOUT_S, cwd=tree)
    redis_server.flush()
    if code != 0:
        raise RuntimeError(f"probe in {tree} exited {code} (its stderr is above)")
    answer: dict[str, Any] = json.loads(out)
    if Path(answer["root"]) != tree.resolve():
        raise RuntimeError(f"probe in {tree} imported cdn_refresh from {answer['root']}")
    return answer


def _cli(tree: Path, redis_server: RedisServer, values: dict[str, Any], path: Path) -> float:
    """Seconds of ``python -m cdn_refresh enqueue --from-file path --json`` in ``tree``."""
    redis_server.flush()
    args = [sys.executable, "-P", "-m", "cdn_refresh", "enqueue", "--from-file", str(path)]
    code, out, seconds, _ = run_measured(
        [*args, "--json"], _env(tree, values), CHILD_TIMEOUT_S, cwd=tree
    )
    redis_server.flush()
    if code != 0:
        raise RuntimeError(f"cdn-refresh enqueue in {tree} exited {code}: {out[-2000:]!r}")
    return seconds


def _measure(
    trees: dict[str, Path],
    redis_server: RedisServer,
    workdir: Path,
    sizes: dict[str, int],
) -> dict[str, Any]:
    """Every round of every tree: probe answers, CLI seconds, and the floor's seconds."""
    lines, normalized = enqueue_lines(sizes["lines"])
    paths_file, lines_file = workdir / "redesign-paths.txt", workdir / "redesign-lines.txt"
    write_lines(paths_file, unique_paths(sizes["paths"], offset=7_000_000))
    write_lines(lines_file, lines)
    # The probe's quota: no claim reaches it, and the CLI warns of no backlog.
    values = bench_settings(redis_server.url, "http://127.0.0.1:9", url_daily_quota=10**9, **PINNED)
    client = redis_from_settings(make_settings(values))
    options = {
        "redis_url": redis_server.url,
        "paths_file": str(paths_file),
        "lines_file": str(lines_file),
        "claims": sizes["claims"],
        "pinned": PINNED,
    }
    runs: dict[str, Any] = {"floor_s": [], **{k: {"probe": [], "cli_s": []} for k in trees}}
    try:
        for n in range(sizes["rounds"]):
            order = list(trees) if n % 2 == 0 else list(reversed(trees))
            for i, label in enumerate(order):
                if i == len(order) - 1:
                    redis_server.flush()
                    runs["floor_s"].append(floor(client, normalized, "bench:floor"))
                    redis_server.flush()
                runs[label]["probe"].append(_probe(trees[label], redis_server, values, options))
                runs[label]["cli_s"].append(_cli(trees[label], redis_server, values, lines_file))
    finally:
        client.close()
        paths_file.unlink(missing_ok=True)
        lines_file.unlink(missing_ok=True)
    runs["unique_lines"] = len(set(normalized))
    return runs


def _figures(runs: dict[str, Any], lines: int) -> dict[str, float]:
    """One tree's figures from its rounds: best times, median memory."""
    probes = runs["probe"]
    claims = [p["claim"] for p in probes]
    memory = [p["memory"]["used_memory"] / p["memory"]["paths"] for p in probes]
    return {
        "claim_us": min(c["median_claim_s_per_path"] for c in claims) * 1e6,
        "settle_us": min(c["median_settle_s_per_path"] for c in claims) * 1e6,
        "claim_redis_us": min(c["claim_redis_us_per_path"] for c in claims),
        "settle_redis_us": min(c["settle_redis_us_per_path"] for c in claims),
        "claimed": statistics.median(c["paths"] for c in claims),
        "batches": statistics.median(c["batches"] for c in claims),
        "memory_b": statistics.median(memory),
        "memory_spread_b": max(memory) - min(memory),
        "api_rate": lines / min(p["enqueue"]["seconds"] for p in probes),
        "cli_rate": lines / min(runs["cli_s"]),
    }


def _check_receipts(runs: dict[str, Any], label: str) -> None:
    unique = runs["unique_lines"]
    for probe in runs[label]["probe"]:
        got = probe["enqueue"]
        if got["accepted"] != unique or got["duplicates"] != got["lines"] - unique:
            raise AssertionError(f"{label}: receipt {got} for {unique} unique paths")


def _cost_rows(result: Result, figures: dict[str, dict[str, float]]) -> None:
    before = figures.get(BEFORE)
    after = figures[AFTER]
    for key, what in (("claim_us", "claim"), ("settle_us", "settle (submit)")):
        if before is not None:
            result.add(f"{what}, before ({RELEASE})", before[key], "us/path")
        ratio = None if before is None else after[key] / before[key]
        result.add(
            f"{what}, after (working tree)",
            after[key],
            "us/path",
            "" if before is None else "before",
            ratio,
            "" if ratio is None else f"<= {TARGET_COST_RATIO}",
            None if ratio is None else ratio <= TARGET_COST_RATIO,
        )


def _memory_rows(result: Result, figures: dict[str, dict[str, float]], paths: int) -> None:
    before = figures.get(BEFORE)
    after = figures[AFTER]["memory_b"]
    if before is not None:
        result.add(f"used_memory per pending path, before ({RELEASE})", before["memory_b"], "B")
    judged = paths == MEMORY_TARGET_PATHS
    result.add(
        "used_memory per pending path, after (working tree)",
        after,
        "B",
        "" if before is None else f"{after / before['memory_b']:.3f}x before",
        None,
        f"<= {TARGET_MEMORY_B} B"
        + ("" if judged else f" (judged at {MEMORY_TARGET_PATHS:,} paths only)"),
        after <= TARGET_MEMORY_B if judged else None,
    )


def _enqueue_rows(result: Result, figures: dict[str, dict[str, float]], floor_rate: float) -> None:
    before = figures.get(BEFORE)
    after = figures[AFTER]
    result.add("floor: pipelined ZADD NX", floor_rate, "paths/s")
    for key, what in (("api_rate", "Producer.enqueue"), ("cli_rate", "enqueue --from-file")):
        if before is not None:
            result.add(
                f"{what}, before ({RELEASE})",
                before[key],
                "paths/s",
                "floor",
                before[key] / floor_rate,
            )
        result.add(
            f"{what}, after (working tree)",
            after[key],
            "paths/s",
            "floor" if before is None else f"floor; {after[key] / before[key]:.3f}x before",
            after[key] / floor_rate,
            f">= {TARGET_RATIO}",
            after[key] / floor_rate >= TARGET_RATIO,
        )


def _key_note(runs: dict[str, Any], label: str, paths: int) -> str:
    keys: dict[str, int] = runs[label]["probe"][-1]["keys"]
    big = sorted(keys.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{name} {size / paths:.0f}" for name, size in big if size >= paths)


def _notes(
    result: Result, runs: dict[str, Any], figures: dict[str, dict[str, float]], sizes: Any
) -> None:
    after = figures[AFTER]
    result.notes.append(
        f"{sizes['rounds']} rounds, the trees in turn (before, floor, after; then after, floor, "
        "before); each round's claim and settle figure is the median over its batches of "
        "seconds per path, and the table gives each tree's best round; memory is the median "
        "round. Each probe is a child process in its own tree; each CLI run includes "
        "interpreter start and imports. Settings whose default changed since the release "
        "have the working tree's default in both trees: "
        + ", ".join(f"{name.upper()} {value:g}" for name, value in PINNED.items())
        + f" (at {RELEASE}'s own defaults, 0 and 30, its claims skip the cooldown reads)."
    )
    result.notes.append(
        f"Claim and settle: {after['batches']:.0f} batches ({after['claimed']:,.0f} paths) "
        f"claimed from a queue of {sizes['paths']:,} pending Files over 20 domains, then each "
        "submitted with one task ID (tracked). Time inside Redis (INFO commandstats, best "
        "round), us per path: "
        + "; ".join(
            f"{label} claim {f['claim_redis_us']:.2f}, settle {f['settle_redis_us']:.2f}"
            for label, f in figures.items()
        )
        + "."
    )
    result.notes.append(
        f"Memory: {sizes['paths']:,} unique paths enqueued into an empty database (scripts "
        "loaded beforehand). MEMORY USAGE per path of the largest keys, "
        + "; ".join(f"{label}: {_key_note(runs, label, sizes['paths'])}" for label in figures)
        + ". Spread over rounds: "
        + ", ".join(f"{label} {f['memory_spread_b']:.0f} B" for label, f in figures.items())
        + "."
    )
    if sizes["paths"] != MEMORY_TARGET_PATHS:
        result.notes.append(
            f"Quick mode: memory is measured at {sizes['paths']:,} paths, not "
            f"{MEMORY_TARGET_PATHS:,}; hash tables grow by powers of two, so the figure is "
            "not the one the target is set at (no verdict)."
        )


def run(redis_server: RedisServer, workdir: Path, quick: bool) -> Result:
    sizes = {
        "paths": 20_000 if quick else MEMORY_TARGET_PATHS,
        "claims": 20 if quick else 200,
        "lines": 100_000 if quick else 1_000_000,
        "rounds": 2 if quick else 4,
    }
    result = Result(
        "redesign",
        f"Redesign: release {RELEASE} and the working tree in one run ({sizes['paths']:,} "
        f"pending paths, {sizes['lines']:,} enqueue lines)",
    )
    trees: dict[str, Path] = {}
    old = materialise(workdir)
    if old is None:
        result.notes.append(
            f"Release commit {RELEASE} is not in this clone's history (shallow clone?): "
            "'before' skipped, the working tree measured alone (git fetch --unshallow)."
        )
    else:
        trees[BEFORE] = old
    trees[AFTER] = ROOT
    runs = _measure(trees, redis_server, workdir, sizes)
    for label in trees:
        _check_receipts(runs, label)
    figures = {label: _figures(runs[label], sizes["lines"]) for label in trees}
    floor_rate = sizes["lines"] / min(runs["floor_s"])
    _cost_rows(result, figures)
    _memory_rows(result, figures, sizes["paths"])
    _enqueue_rows(result, figures, floor_rate)
    _notes(result, runs, figures, sizes)
    result.details = {"sizes": sizes, "figures": figures, "floor_s": runs["floor_s"]}
    return result
