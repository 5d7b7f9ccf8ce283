"""Whether this Redis may evict our keys, asked once a minute, not at every enqueue.

Every pending path, job and quota reservation sits in a few large keys (one hash holds every
path record): under an eviction policy, one eviction drops thousands of accepted paths at
once, silently, and ``lookup`` then says ``unknown``. So producers, the API and workers accept
and claim nothing unless ``maxmemory-policy`` is ``noeviction`` (Redis then refuses a write
when full, which the enqueue reports), or ``CDN_REFRESH_ALLOW_EVICTION`` says the operator
accepts the risk.

The policy is read from ``INFO memory`` (``maxmemory_policy``), not ``CONFIG GET``: managed
Redis services often refuse ``CONFIG``. A Redis that refuses ``INFO`` too is not known to be
safe, and is refused like an evicting one.

Keys that carry a TTL, for an operator weighing ``ALLOW_EVICTION`` under a ``volatile-*``
policy (which evicts only those): the holds, backoffs and once-a-while marks (losing one
costs an early call or a duplicate log line), a claim's token (a retried claim then takes
another batch; the first comes back at its lease) and each Idempotency-Key (24 h; losing one
lets a retried POST make a second job, whose paths coalesce with the first's). Paths, jobs,
batches, records and the quota window carry none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from cdn_refresh.store.context import StoreContext

__all__ = ["EVICTION_CHECK_S", "EvictionGuard", "RedisEvictsError", "eviction_problem"]

log = logging.getLogger("cdn_refresh.store")

SAFE_POLICY = "noeviction"
# How long a process trusts the policy it read: a policy changed at run time is seen within
# this, at the cost of one INFO a minute per process.
EVICTION_CHECK_S = 60.0


class RedisEvictsError(RuntimeError):
    """Redis may evict keys (or will not say), and ``ALLOW_EVICTION`` is off: nothing is
    accepted or claimed."""


def eviction_problem(policy: str | None) -> str | None:
    """Why a Redis with this ``maxmemory-policy`` (None: unknown) may lose accepted paths,
    with what to do; None for ``noeviction``."""
    if policy == SAFE_POLICY:
        return None
    seen = (
        f"Redis's maxmemory-policy is {policy}: it may evict keys"
        if policy
        else "Redis does not tell its maxmemory-policy (INFO memory refused)"
    )
    return (
        f"{seen}, and every pending path, job and quota reservation sits in a few keys that "
        "one eviction drops whole, so nothing is accepted or claimed. Set maxmemory-policy "
        "noeviction (redis.conf, `CONFIG SET maxmemory-policy noeviction`, or your provider's "
        "parameter group), or set CDN_REFRESH_ALLOW_EVICTION=true to accept losing paths "
        "(docs/behaviour.md, 'Redis must not evict')."
    )


def _what_may_go(policy: str | None) -> str:
    """What an eviction under ``policy`` may cost, for the one warning of the override."""
    if policy is not None and policy.startswith("volatile-"):
        # Only keys with a TTL go: no path, job or reservation carries one (module docstring).
        return (
            "only keys with a TTL may go: holds and marks (an early call) and Idempotency-Keys "
            "(a retried POST may then make a second job)"
        )
    return "an eviction may drop accepted paths without a word"


class EvictionGuard:
    """This process's view of the policy, read at most every :data:`EVICTION_CHECK_S`."""

    def __init__(self, ctx: StoreContext, clock: Callable[[], float] = time.monotonic) -> None:
        self._ctx = ctx
        self._clock = clock
        self._checked_at: float | None = None
        self._problem: str | None = None
        self._warned = False

    def policy(self) -> str | None:
        """Redis's ``maxmemory_policy`` from ``INFO memory``; None when it will not say."""
        try:
            info = self._ctx.redis.info("memory")
        except redis.ResponseError:
            return None
        value = info.get("maxmemory_policy")
        return str(value) if value else None

    def problem(self, *, fresh: bool = False) -> str | None:
        """Why this Redis may not hold our state (None: it may), asking Redis only when the
        last answer is older than :data:`EVICTION_CHECK_S` (or ``fresh``)."""
        now = self._clock()
        if fresh or self._checked_at is None or now - self._checked_at >= EVICTION_CHECK_S:
            self._problem = self._judge(self.policy())
            self._checked_at = now
        return self._problem

    def check(self, *, fresh: bool = False) -> None:
        """Raise :class:`RedisEvictsError` unless this Redis may hold our state."""
        problem = self.problem(fresh=fresh)
        if problem is not None:
            raise RedisEvictsError(problem)

    def _judge(self, policy: str | None) -> str | None:
        problem = eviction_problem(policy)
        if problem is None or not self._ctx.settings.redis.allow_eviction:
            return problem
        if not self._warned:
            # Said once per process: the operator chose this, a log line a minute helps no one.
            self._warned = True
            log.warning(
                "redis maxmemory-policy is %s and CDN_REFRESH_ALLOW_EVICTION is on: %s",
                policy or "unknown",
                _what_may_go(policy),
            )
        return None
