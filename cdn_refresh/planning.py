"""Promotion planning and the drain plan: which Directories would cover most pending Files,
and how long the queue takes to drain. Pure functions over paths and numbers; the store
reads the paths, the worker sends what is chosen, ``cdn-refresh plan`` prints it.

Where a path lies: ``https://host/a/b/c.png?x`` lies under ``https://host/``,
``https://host/a/`` and ``https://host/a/b/``; a directory's depth is its number of path
segments (``https://host/`` is 0, ``https://host/a/`` is 1). A query is no part of where a
path lies. The same rule is in the store's Lua prelude (``ancestors``), which covers paths.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from cdn_refresh.operations import coverage
from cdn_refresh.paths import InvalidPathError, domain_of, normalize_path

DAY_S = 86_400.0  # days_to_drain counts days of this many seconds


def directories_above(path: str) -> list[str]:
    """The directories ``path`` lies under, shallowest first, without ``path`` itself."""
    body = path.split("?", 1)[0]
    host_end = body.find("/", body.find("://") + 3)
    if host_end < 0:
        return []
    found = []
    at = host_end
    while at >= 0:
        prefix = body[: at + 1]
        if prefix != path:
            found.append(prefix)
        at = body.find("/", at + 1)
    return found


def depth(directory: str) -> int:
    """Path segments below the host: 0 for ``https://host/``."""
    return directory.count("/") - 3


@dataclass(frozen=True, slots=True)
class Promotion:
    """One Directory to send for the pending Files under it."""

    directory: str
    paths: int  # pending File paths it covers (each a URL unit saved)


def plan_promotions(
    files: Iterable[str],
    *,
    budget: int,
    room: int,
    min_paths: int,
    min_depth: int,
    allowed_domains: Collection[str] = (),
    covering: Collection[str] = (),
    refused: Collection[str] = (),
) -> list[Promotion]:
    """The Directories that cover the most ``files`` per Directory unit, greedily, until the
    Files left to send fit in ``room`` or ``budget`` Directories are chosen.

    Of directories that cover the same Files, the deepest is chosen (it invalidates least).
    None is shallower than ``min_depth`` or covers fewer than ``min_paths`` Files. A File
    under one of ``covering`` (Directories pending already) counts for nothing: it is covered.
    None of ``refused`` (dead-lettered Directories) is chosen.
    """
    if budget <= 0:
        return []
    pending_dirs = set(covering)
    refused_dirs = set(refused)
    counts: dict[str, int] = {}
    uncovered = 0
    for path in files:
        above = directories_above(path)
        if pending_dirs and any(d in pending_dirs for d in above):
            continue
        uncovered += 1
        for directory in above[min_depth:]:
            counts[directory] = counts.get(directory, 0) + 1
    excess = uncovered - room
    chosen: list[Promotion] = []
    while counts and len(chosen) < budget and excess > 0:
        best = max(counts, key=lambda d: (counts[d], depth(d)))
        covered = counts[best]
        if covered < min_paths:
            break
        if best in refused_dirs or not _allowed(best, allowed_domains):
            del counts[best]  # not tried again; what lies under it still may be
            continue
        chosen.append(Promotion(best, covered))
        excess -= covered
        for parent in directories_above(best)[min_depth:]:
            if parent in counts:
                counts[parent] -= covered
        # What lies under the chosen one is covered.
        for directory in [d for d in counts if d.startswith(best)]:
            del counts[directory]
    return chosen


def _allowed(directory: str, allowed_domains: Collection[str]) -> bool:
    try:
        return normalize_path(directory, coverage().covering, allowed_domains) == directory
    except InvalidPathError:
        return False


@dataclass(frozen=True, slots=True)
class TypePlan:
    """What one type's pending paths take to send."""

    pending: int
    calls: int
    days_to_drain: float | None  # None: the quota is 0, it never drains

    def to_dict(self) -> dict[str, Any]:
        """The ``plan --json`` shape of one type."""
        return {"pending": self.pending, "calls": self.calls, "days_to_drain": self.days_to_drain}


@dataclass(frozen=True, slots=True)
class Plan:
    """``cdn-refresh plan``: the drain without and with promotion."""

    file: TypePlan
    directory: TypePlan
    promotions: tuple[Promotion, ...]
    promoted_days_to_drain: float | None
    promotion_enabled: bool
    covered_by_pending_directories: int = field(default=0)
    # The operations outside promotion's coverage (regex, ...), by label, in table order.
    others: tuple[tuple[str, TypePlan], ...] = field(default=())

    @property
    def file_paths_covered(self) -> int:
        """File paths the promotions would cover."""
        return sum(p.paths for p in self.promotions)

    def to_dict(self) -> dict[str, Any]:
        """The ``plan --json`` shape."""
        return {
            "file": {
                **self.file.to_dict(),
                "covered_by_pending_directories": self.covered_by_pending_directories,
            },
            "directory": self.directory.to_dict(),
            **{label: plan.to_dict() for label, plan in self.others},
            "promotion": {
                "enabled": self.promotion_enabled,
                "directories": [p.directory for p in self.promotions],
                "file_paths_covered": self.file_paths_covered,
                "days_to_drain": self.promoted_days_to_drain,
            },
        }


@dataclass(frozen=True, slots=True)
class Limits:
    """The quota and per-call limits a plan is made for."""

    url_daily_quota: int
    directory_daily_quota: int
    urls_per_call: int
    directories_per_call: int
    domains_per_call: int
    interactive_reserve: float
    promote_min_paths: int
    promote_min_depth: int
    allowed_domains: tuple[str, ...] = ()


def make_plan(files: set[str], directories: set[str], limits: Limits, *, enabled: bool) -> Plan:
    """The drain of ``files`` and ``directories`` at the daily quota, without and with a
    day's promotions. Files under a pending Directory are counted as covered by it (coverage
    is always on), not as Files to send."""
    under_pending = {f for f in files if any(d in directories for d in directories_above(f))}
    to_send = files - under_pending
    reserve = math.ceil(limits.directory_daily_quota * limits.interactive_reserve)
    chosen = plan_promotions(
        to_send,
        budget=limits.directory_daily_quota - reserve - len(directories),
        room=limits.url_daily_quota,
        min_paths=limits.promote_min_paths,
        min_depth=limits.promote_min_depth,
        allowed_domains=limits.allowed_domains,
    )
    covered = sum(p.paths for p in chosen)
    file_days = _plan_days(len(to_send), limits.url_daily_quota)
    promoted = [
        _plan_days(len(to_send) - covered, limits.url_daily_quota),
        _plan_days(len(directories) + len(chosen), limits.directory_daily_quota),
    ]
    return Plan(
        file=TypePlan(
            len(files),
            calls_for(
                len(to_send),
                len({domain_of(f) for f in to_send}),
                limits.urls_per_call,
                limits.domains_per_call,
            ),
            file_days,
        ),
        directory=TypePlan(
            len(directories),
            calls_for(
                len(directories),
                len({domain_of(d) for d in directories}),
                limits.directories_per_call,
                limits.domains_per_call,
            ),
            _plan_days(len(directories), limits.directory_daily_quota),
        ),
        promotions=tuple(chosen),
        promoted_days_to_drain=None if None in promoted else max(d or 0.0 for d in promoted),
        promotion_enabled=enabled,
        covered_by_pending_directories=len(under_pending),
    )


def type_plan(
    paths: Collection[str], daily_quota: int, per_call: int, domains_per_call: int
) -> TypePlan:
    """What sending ``paths`` of one operation on their own takes (no coverage, no
    promotion): its calls and its days at ``daily_quota``."""
    domains = len({domain_of(p) for p in paths})
    return TypePlan(
        len(paths),
        calls_for(len(paths), domains, per_call, domains_per_call),
        _plan_days(len(paths), daily_quota),
    )


def calls_for(paths: int, domains: int, per_call: int, domains_per_call: int) -> int:
    """The fewest calls that carry ``paths`` over ``domains`` domains."""
    if paths == 0:
        return 0
    return max(math.ceil(paths / per_call), math.ceil(domains / domains_per_call))


def days_to_drain(paths: int, quota: int, window_s: float = DAY_S) -> float | None:
    """Days the quota takes to send ``paths`` at ``quota`` per window of ``window_s`` seconds:
    0.0 for no paths, and None when the quota is 0 and the paths never go. None, not inf,
    because it means "never", which a person reads and JSON can carry (inf is no JSON)."""
    if paths == 0:
        return 0.0
    if quota <= 0:
        return None
    return paths / quota * (window_s / DAY_S)


def _plan_days(paths: int, daily_quota: int) -> float | None:
    """``days_to_drain`` as the plan shows it, to a hundredth of a day."""
    days = days_to_drain(paths, daily_quota)
    return None if days is None else round(days, 2)
