"""``cdn-refresh jobs``, ``lookup``, ``plan`` and ``dead-letter``: what the queue holds.

Commands of the producer's, reached through the front door (:mod:`cdn_refresh.cli`); they
read the queue and, for ``dead-letter replay``, put paths back in it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from cdn_refresh.cli_support import (
    EXIT_BAD_INPUT,
    TYPE_CHOICE,
    check_input,
    emit,
    object_type,
    read_lines,
    redis_settings,
    shown,
)
from cdn_refresh.constants import OBJECT_TYPES, ObjectType
from cdn_refresh.operations import OPERATIONS, coverage, domains_per_call, paths_per_call
from cdn_refresh.settings import Settings
from cdn_refresh.times import shown_time
from producer.cli import make_producer

if TYPE_CHECKING:
    from cdn_refresh.planning import TypePlan

EXIT_UNKNOWN = 1  # lookup: a path never seen


@click.command()
@click.option("--state", "state", default=None, help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def jobs(state: str | None, limit: int, as_json: bool) -> None:
    """List recent jobs, newest first (only those in STATE with --state)."""
    from cdn_refresh.store.records import JobState
    from producer.producer import Producer

    try:
        wanted = JobState(state) if state else None
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise click.BadParameter(f"{state!r} is none of {names}", param_hint="--state") from None
    with Producer.from_settings(redis_settings(), notify_workers=False) as producer:
        found = [j.to_dict() for j in producer.recent_jobs(limit, wanted)]
    text = "\n".join(
        f"{j['job_id']:>8}  {j['state']:<11} {j['object_type']:<12} "
        f"paths={sum(j['counts'].values()):,} created {shown_time(j['created_at'])}"
        for j in found
    )
    emit(found, as_json, text or "no jobs")


@click.command()
@click.argument("path")
@click.option("--type", "type_", type=TYPE_CHOICE, default="file", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def lookup(path: str, type_: str, as_json: bool) -> None:
    """Was PATH refreshed, and under which task?"""
    from cdn_refresh.paths import InvalidPathError

    try:
        data = (
            make_producer(redis_settings(), notify=False).lookup(path, object_type(type_)).to_dict()
        )
    except InvalidPathError as exc:
        click.echo(f"error: invalid path: {exc.reason}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    emit(data, as_json, _lookup_text(data))
    if data["state"] == "unknown":
        sys.exit(EXIT_UNKNOWN)


def _lookup_text(data: dict[str, Any]) -> str:
    lines = []
    for key, value in data.items():
        if key == "submissions":
            continue
        lines.append(f"{key}: {shown(key, value)}")
    lines += [
        f"earlier: task {entry['task_id']} at {shown_time(entry['submitted_at'])}"
        for entry in data["submissions"][1:]
    ]
    return "\n".join(lines)


@click.command()
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Plan these paths too, one per line ('-' for standard input); nothing is enqueued.",
)
@click.option("--type", "type_", type=TYPE_CHOICE, default="file", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def plan(from_file: str | None, type_: str, as_json: bool) -> None:
    """What draining the queue takes: calls and days at the configured quota, without and
    with promotion. Sends nothing and writes nothing."""
    from cdn_refresh.paths import InvalidPathError, normalize_path, shown_path
    from cdn_refresh.planning import Limits, make_plan
    from producer.producer import Producer

    check_input(from_file)
    settings = redis_settings()
    extra_type = object_type(type_)
    pair = coverage()
    paths: dict[ObjectType, set[str]] = {kind: set() for kind in OBJECT_TYPES}
    if from_file is not None:
        refused = []
        for line, raw in enumerate(read_lines(from_file), start=1):
            try:
                paths[extra_type].add(
                    normalize_path(raw, extra_type, settings.provider.allowed_domains)
                )
            except InvalidPathError as exc:
                refused.append(f"line {line}: {exc.reason}: {shown_path(raw)}")
        if refused:
            click.echo(f"{len(refused)} invalid paths, nothing planned:", err=True)
            click.echo("\n".join(refused[:20]), err=True)
            sys.exit(2)
    with Producer.from_settings(settings, notify_workers=False) as producer:
        for kind in OBJECT_TYPES:
            paths[kind].update(producer.queued_paths(kind))
        limits_of = {kind: producer.daily_limit(kind) for kind in OBJECT_TYPES}
    covered_limit, covering_limit = limits_of[pair.covered], limits_of[pair.covering]
    # The plan is promotion's: the covered operation's paths (Files), and the covering
    # operation's (Directories) that would stand for them.
    covered, covering = OPERATIONS[pair.covered], OPERATIONS[pair.covering]
    limits = Limits(
        url_daily_quota=covered_limit,
        directory_daily_quota=covering_limit,
        urls_per_call=paths_per_call(settings, covered),
        directories_per_call=paths_per_call(settings, covering),
        domains_per_call=min(domains_per_call(settings, op) for op in (covered, covering)),
        interactive_reserve=settings.quota.interactive_reserve,
        promote_min_paths=settings.quota.promote_min_paths,
        promote_min_depth=settings.quota.promote_min_depth,
        allowed_domains=tuple(settings.provider.allowed_domains),
    )
    result = make_plan(
        paths[pair.covered],
        paths[pair.covering],
        limits,
        enabled=settings.quota.promote == "auto",
    )
    result = replace(result, others=_other_plans(settings, paths, limits_of))
    emit(result.to_dict(), as_json, _plan_text(result.to_dict()))


def _other_plans(
    settings: Settings, paths: dict[ObjectType, set[str]], limits: dict[ObjectType, int]
) -> tuple[tuple[str, TypePlan], ...]:
    """The operations outside promotion's coverage, each draining on its own, at its own
    window and per-call limits."""
    from cdn_refresh.planning import type_plan

    pair = coverage()
    return tuple(
        (
            op.label,
            type_plan(
                paths[k], limits[k], paths_per_call(settings, op), domains_per_call(settings, op)
            ),
        )
        for k, op in OPERATIONS.items()
        if k not in (pair.covered, pair.covering)
    )


def _plan_text(data: dict[str, Any]) -> str:
    def days(value: float | None) -> str:
        return "never (quota 0)" if value is None else f"{value:g} days"

    lines = [
        f"{kind:<10} pending={data[kind]['pending']} calls={data[kind]['calls']} "
        f"drains in {days(data[kind]['days_to_drain'])}"
        for kind in (op.label for op in OPERATIONS.values())
        if kind in data
    ]
    if data["file"]["covered_by_pending_directories"]:
        lines.append(
            f"           {data['file']['covered_by_pending_directories']} files lie under "
            "pending directories and go with them"
        )
    promo = data["promotion"]
    state = "on" if promo["enabled"] else "off (CDN_REFRESH_PROMOTE=auto turns it on)"
    lines.append(
        f"promotion  {state}: {len(promo['directories'])} directories would cover "
        f"{promo['file_paths_covered']} files; drains in {days(promo['days_to_drain'])}"
    )
    lines += [f"           {d}" for d in promo["directories"][:20]]
    return "\n".join(lines)


@click.group("dead-letter")
def dead_letter() -> None:
    """Paths the provider refused, or that ran out of attempts."""


@dead_letter.command("list")
@click.option("--json", "as_json", is_flag=True)
def dead_letter_list(as_json: bool) -> None:
    """List dead-lettered paths with their last error."""
    entries = [e.to_dict() for e in make_producer(redis_settings(), notify=False).dead_letters()]
    if as_json:
        click.echo(json.dumps(entries))
        return
    if not entries:
        click.echo("no dead-lettered paths")
    for e in entries:
        click.echo(f"{e['object_type']:<12} {e['code']:<32} attempts={e['attempts']} {e['path']}")


@dead_letter.command("replay")
@click.argument("paths", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead-lettered path.")
@click.option("--type", "type_", type=TYPE_CHOICE, default=None)
@click.option("--json", "as_json", is_flag=True)
def dead_letter_replay(
    paths: tuple[str, ...], replay_all: bool, type_: str | None, as_json: bool
) -> None:
    """Return dead-lettered paths to pending (and lift a credential hold)."""
    if replay_all == bool(paths):
        raise click.UsageError("give either --all or PATHS")
    from cdn_refresh.paths import InvalidPathError

    producer = make_producer(redis_settings())
    kind = object_type(type_) if type_ else None
    try:
        count = producer.replay(None if replay_all else list(paths), kind)
    except InvalidPathError as exc:
        click.echo(f"error: invalid path: {exc.reason}; nothing replayed", err=True)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        producer.close()
    emit({"replayed": count}, as_json, f"replayed {count} path(s)")
