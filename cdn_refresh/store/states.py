"""Every state a path and a job go through, and every move a path may make: the one table.

A path's life (one object type)::

    enqueue ──► PENDING ──claim──► IN_FLIGHT ──submit──► SUBMITTED ──task Complete──► COMPLETE
                 ▲ ▲ ▲               │   │                 │   │
                 │ │ └─release───────┘   │                 │   │
                 │ │                     ▼                 │   │
                 │ │                   FAILED ◄────────────┼───┘ task Failed, attempts spent
                 │ └─replay──────────────┘                 │
                 └───────────────task Failed, attempts left┘

claim: or covered by a Directory claimed (it rides along); release: retry, requeue, a lease
expired (with what a released Directory covered); release 'failed' or attempts spent goes to
FAILED.

A path asked for again (a new job) is PENDING whatever it was; a SUBMITTED or COMPLETE path
whose record the retention forgot reads UNKNOWN. PENDING includes a path cooling down; a path
covered by a Directory moves with it (claimed, submitted, settled or sent back together).

A path's state is never stored: :mod:`~cdn_refresh.store.lookups` finds it from which key
holds it (:data:`LOOKUP_ORDER`). Each job counts its paths per state in the ``job_counts``
hash (field ``"<job>:<state>"``, :data:`JOB_COUNT_STATES`). The Lua scripts move those
counts along :data:`MOVES`, naming each state by a constant generated from this module
(:func:`lua_constants`: ``STATE.PENDING``); a test holds every move a script makes to the
table.

A job's state is computed from its counts (:func:`job_state`): PENDING until one of its paths
moves, IN_PROGRESS while some wait and some do not, then, once nothing waits, the first of
:data:`JOB_ENDED_PRECEDENCE` that holds: INCOMPLETE (its enqueue ended part way: never
submitted or complete, however well what went in fared), FAILED (a path dead-lettered),
SUBMITTED (a path's task has not ended Complete), else COMPLETE.

The values are what Redis and the JSON outputs hold: never rename one (an upgraded
deployment's data must read the same).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import NamedTuple


class PathState(StrEnum):
    """Where one path stands (``lookup``)."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SUBMITTED = "submitted"
    COMPLETE = "complete"  # its own task ended Complete: the CDN serves the new content
    FAILED = "failed"  # dead-lettered, with its last error
    UNKNOWN = "unknown"  # never enqueued, or its record is older than the retention


class JobState(StrEnum):
    """Where one job stands (``status``)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUBMITTED = "submitted"  # every path submitted (some tasks may still run)
    COMPLETE = "complete"  # every path's task ended Complete
    FAILED = "failed"
    # Its enqueue ended part way: what went in is settled, the rest never came. Never submitted or
    # complete, however well the paths that went in fared: they are not all that was asked.
    INCOMPLETE = "incomplete"

    @classmethod
    def _missing_(cls, value: object) -> JobState | None:
        # SUBMITTED was named "done" until this release: a value stored (or sent in a
        # webhook) under the old name still reads. Drop it in the next release.
        return cls.SUBMITTED if value == "done" else None


class Release(StrEnum):
    """What ``release.lua`` does with paths that did not go through."""

    RETRY = "retry"  # back to pending, an attempt counted; dead-lettered at MAX_ATTEMPTS
    REQUEUE = "requeue"  # back to pending, no attempt counted
    FAILED = "failed"  # dead-lettered now


# The states a job counts its paths in, in the order of JobCounts' fields (``status --json``
# prints them in this order). UNKNOWN is no count: a job's paths were all enqueued.
COUNTED_STATES: tuple[PathState, ...] = (
    PathState.PENDING,
    PathState.IN_FLIGHT,
    PathState.SUBMITTED,
    PathState.FAILED,
    PathState.COMPLETE,
)
# The ``job_counts`` fields of a job, ``"<job>:<state>"``.
JOB_COUNT_STATES: tuple[str, ...] = tuple(s.value for s in COUNTED_STATES)
# Not settled yet: a job with a path here has not ended, and the retention keeps it.
WAITING_STATES: frozenset[PathState] = frozenset({PathState.PENDING, PathState.IN_FLIGHT})
# No worker moves a path on from here by itself: only an operator's replay, a new request or
# the retention does.
FINAL_STATES: frozenset[PathState] = frozenset({PathState.COMPLETE, PathState.FAILED})
# A job that has ended for good: no worker moves it on (its webhook fires).
JOB_FINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETE, JobState.FAILED, JobState.INCOMPLETE}
)
# Where lookup finds a path, in the order it looks: the first state whose key holds the path
# is its state (a path asked for again while in flight is pending; a dead letter newer than the
# path's record beats the record). The names are fields of Keys. Held by none: UNKNOWN; a
# SUBMITTED path whose tasks all ended Complete reads COMPLETE.
LOOKUP_ORDER: tuple[tuple[PathState, tuple[str, ...]], ...] = (
    (PathState.PENDING, ("pending", "cooling")),
    (PathState.IN_FLIGHT, ("batches",)),
    (PathState.FAILED, ("dead",)),
    (PathState.SUBMITTED, ("records",)),
)
# A job nothing of which waits takes the first of these that holds: INCOMPLETE when its
# enqueue ended part way, else the job state of the first path state it has a path in, else
# COMPLETE.
JOB_ENDED_PRECEDENCE: tuple[tuple[PathState | None, JobState], ...] = (
    (None, JobState.INCOMPLETE),
    (PathState.FAILED, JobState.FAILED),
    (PathState.SUBMITTED, JobState.SUBMITTED),
    (PathState.COMPLETE, JobState.COMPLETE),
)


class Move(NamedTuple):
    """One move a path may make; ``scripts`` move a job's count along it."""

    source: PathState
    target: PathState
    scripts: tuple[str, ...]
    why: str


_P, _F, _S, _C, _I, _U = (
    PathState.PENDING,
    PathState.FAILED,
    PathState.SUBMITTED,
    PathState.COMPLETE,
    PathState.IN_FLIGHT,
    PathState.UNKNOWN,
)
# Every move a path may make. A new request moves a path that is anywhere else back to
# pending, but only the new job counts it (as UNKNOWN -> PENDING): the earlier job's count
# stays where the path was, so those moves name no script.
MOVES: tuple[Move, ...] = (
    Move(_U, _P, ("enqueue.lua",), "asked for (a job counts each path it asks for)"),
    Move(_P, _I, ("claim.lua", "cover.lua"), "claimed, or covered by a Directory claimed"),
    Move(_I, _S, ("submit.lua",), "the call went through (what it covered with it)"),
    Move(_I, _P, ("release.lua",), "retry, requeue, a lease expired; what it covered"),
    Move(_I, _F, ("release.lua",), "the provider refused the path, or attempts spent"),
    Move(_S, _C, ("track.lua",), "its task ended Complete (a covered path: its Directory's)"),
    Move(_S, _P, ("track.lua",), "its task failed with attempts left; or asked again"),
    Move(_S, _F, ("track.lua",), "its task failed with its attempts spent"),
    Move(_F, _P, ("replay.lua",), "replayed by an operator; or asked again"),
    Move(_C, _P, (), "asked again"),
    Move(_S, _U, (), "the retention forgot its record"),
    Move(_C, _U, (), "the retention forgot its record"),
)
ALLOWED: frozenset[tuple[PathState, PathState]] = frozenset((m.source, m.target) for m in MOVES)


def job_state(counts: Mapping[PathState, int], *, streaming: bool, incomplete: bool) -> JobState:
    """A job's state from its paths' counts; ``streaming`` while its enqueue still sends paths,
    ``incomplete`` once it ended part way."""
    if streaming or any(counts.get(s, 0) > 0 for s in WAITING_STATES):
        moved = any(counts.get(s, 0) > 0 for s in COUNTED_STATES if s is not PathState.PENDING)
        return JobState.IN_PROGRESS if moved else JobState.PENDING
    for path_state, state in JOB_ENDED_PRECEDENCE:
        if incomplete if path_state is None else counts.get(path_state, 0) > 0:
            return state
    return JobState.COMPLETE  # a job with no path at all (every one rejected)


_LUA_NAME = re.compile(r"^[a-z_]+$")


def lua_constants() -> str:
    """The Lua block prepended to every script, before the prelude: the names the scripts
    count and release by, from this table, so that no script spells one."""
    tables = {
        "STATE": {s.name: s.value for s in COUNTED_STATES},
        "RELEASE": {r.name: r.value for r in Release},
    }
    lines = ["-- Generated from cdn_refresh/store/states.py: the names Redis holds."]
    for table, entries in tables.items():
        # Values go into Lua quotes unescaped: hold them to plain names.
        assert all(_LUA_NAME.match(v) for v in entries.values()), entries
        body = ", ".join(f"{name} = '{value}'" for name, value in entries.items())
        lines.append(f"local {table} = {{{body}}}")
    return "\n".join(lines) + "\n"
