"""Pending paths stored under a spelling this release no longer makes: respelled at a worker's
start, with the jobs that wait on them.

Release 1628e5c and before kept dot segments (``/img/../logo.png``) as they came; this one
removes them (:func:`cdn_refresh.paths.remove_dot_segments`). A pending path stored the old
way would still go out, but a lookup by either spelling would not find it, the same object
asked for again would wait twice, and worst, a Directory ``/img/`` would take it as lying
under it (the coverage index compares text) and settle it unsent, though the CDN serves it as
``/logo.png``. So each such pending path moves to its normalized spelling: its rank (the
sooner, when that spelling waits too), its waiting jobs (a job that waits on both counts one
path fewer), its attempts. One path per transaction, which a concurrent claim aborts; then the
path is looked at again. A path that is not pending (dead-lettered, submitted) is left as it
is, and reads under its stored spelling. A path in flight or cooling comes back to pending
later (a retry, a reclaimed batch of a worker killed before the upgrade, a cooldown that
ends): so the tick respells too, until a pass finds no older spelling pending, cooling or in
flight; then a mark says so, and neither the tick nor a start looks again.
"""

from __future__ import annotations

import json
from typing import cast

import redis

from cdn_refresh.constants import ObjectType
from cdn_refresh.operations import OPERATIONS
from cdn_refresh.paths import InvalidPathError, normalize_path
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.keys import waiter_field

# A dot segment begins with "/." or, escaped (the old release uppercased escapes), "/%2E".
DOT_PATTERNS = ("*/.*", "*/%2E*")
# The operations whose paths may hold an older spelling: a regular expression is kept as
# written ("/." in it is syntax, not a dot segment), so it never needs respelling.
RESPELLED: tuple[ObjectType, ...] = tuple(k for k, op in OPERATIONS.items() if not op.pattern_path)
_PATTERN_TYPES = frozenset(OPERATIONS) - frozenset(RESPELLED)


class Respelling:
    """Moves pending paths to the spelling this release gives them."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def done(self) -> bool:
        """Whether no path is left under an older spelling (one GET: the tick asks it)."""
        return bool(self._ctx.redis.exists(self._ctx.keys.shared.respelled))

    def pass_once(self) -> int:
        """Respell what is pending, unless that was finished for good; when nothing under an
        older spelling is left anywhere it could come back from, mark it finished. Returns
        how many paths moved."""
        if self.done():
            return 0
        moved = self.dot_segments()
        if not self._left_to_come_back():
            self._ctx.redis.set(self._ctx.keys.shared.respelled, "1")
        return moved

    def _left_to_come_back(self) -> bool:
        """A dot-spelled path still pending, cooling, or in a batch in flight."""
        r, shared = self._ctx.redis, self._ctx.keys.shared
        for kind in RESPELLED:
            tk = self._ctx.keys.of(kind)
            for key in (tk.pending, tk.cooling):
                for pattern in DOT_PATTERNS:
                    if next(iter(r.zscan_iter(key, match=pattern, count=1000)), None):
                        return True
        # Batches in flight are few (a handful per worker): their JSON is read whole.
        return any(_may_hold_old_spelling(raw) for raw in cast(list[str], r.hvals(shared.batches)))

    def dot_segments(self) -> int:
        """Respell every pending path that holds a dot segment; returns how many moved."""
        moved = 0
        for kind in RESPELLED:
            pending = self._ctx.keys.of(kind).pending
            found: set[str] = set()
            for pattern in DOT_PATTERNS:
                for member, _ in self._ctx.redis.zscan_iter(pending, match=pattern, count=1000):
                    found.add(str(member))
            for path in sorted(found):
                try:
                    spelled = normalize_path(path, kind)
                except InvalidPathError:
                    continue  # goes out as stored, as it always would have
                if spelled != path and self._move(kind, path, spelled):
                    moved += 1
        return moved

    def _move(self, kind: ObjectType, old: str, new: str) -> bool:
        tk, counts = self._ctx.keys.of(kind), self._ctx.keys.shared.job_counts
        moved: list[bool] = []

        def step(pipe: redis.client.Pipeline) -> None:
            moved.clear()  # a retry after a concurrent write starts over
            rank = pipe.zscore(tk.pending, old)
            if rank is None or pipe.zscore(tk.cooling, new) is not None:
                return  # claimed meanwhile, or its new spelling cools: left as it is
            was_pending = pipe.zscore(tk.pending, new) is not None
            waiting_old, waiting_new = (
                _waiting(pipe, tk.waiters, old),
                _waiting(pipe, tk.waiters, new),
            )
            attempts = pipe.hget(tk.pathinfo, old)
            pipe.multi()
            pipe.zrem(tk.pending, old)
            # Either form of each waiters field goes; the jobs of both are merged under new's.
            pipe.hdel(tk.waiters, old, waiter_field(old), new)
            pipe.zadd(tk.pending, {new: rank}, lt=True)  # adds it, or keeps the sooner rank
            if kind is ObjectType.DIRECTORY:  # only Directories keep a coverage index
                pipe.zrem(tk.pending_lex, old)
                pipe.zadd(tk.pending_lex, {new: 0})
            for job in waiting_old:
                if job in waiting_new:
                    pipe.hincrby(counts, f"{job}:pending", -1)  # one path now, not two
            merged = waiting_new + [j for j in waiting_old if j not in waiting_new]
            if merged:
                pipe.hset(tk.waiters, waiter_field(new), ",".join(merged))
            if attempts is not None:
                pipe.hdel(tk.pathinfo, old)
                pipe.hsetnx(tk.pathinfo, new, attempts)
            if not was_pending:
                pipe.hdel(tk.dead, new)  # as an enqueue of a path newly pending does
            moved.append(True)

        self._ctx.redis.transaction(step, tk.pending, tk.waiters, tk.cooling)
        return bool(moved)


def _jobs(raw: object) -> list[str]:
    return [j for j in str(raw or "").split(",") if j]


def _may_hold_old_spelling(raw: str) -> bool:
    """Whether a batch in flight (its JSON) may hold a dot-spelled path: one that is not of
    an operation whose paths are patterns (a batch of an older release names none)."""
    if "/." not in raw and "/%2E" not in raw:
        return False
    return json.loads(raw).get("object_type") not in _PATTERN_TYPES


def _waiting(pipe: redis.client.Pipeline, waiters: str, path: str) -> list[str]:
    """The jobs waiting on ``path``, under its digest or (schema 2, store/digesting.py) the
    path itself."""
    found = _jobs(pipe.hget(waiters, waiter_field(path)))
    return found + [j for j in _jobs(pipe.hget(waiters, path)) if j not in found]
