"""The quota window as our own count, and the holds and backoffs that stop claims.

Reservations themselves are made and returned by the batch scripts, in the same step as
the claim or settle they belong to (:mod:`cdn_refresh.store.batches`).
"""

from __future__ import annotations

import math
from typing import cast

from cdn_refresh.constants import (
    MAX_MESSAGE_CHARS,
    OBJECT_TYPES,
    QUOTA_WINDOW_MAX_S,
    QUOTA_WINDOW_MIN_S,
    QUOTA_WINDOW_S,
    ObjectType,
)
from cdn_refresh.operations import OPERATIONS, daily_quota
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext, time_arg
from cdn_refresh.store.records import CredentialProblem, ProviderQuota, QuotaUsage


class QuotaWindowMismatchError(RuntimeError):
    """This process's ``QUOTA_WINDOW_S`` is not the window the stored quota runs on."""


class QuotaLimitMismatchError(RuntimeError):
    """This process's daily quota setting of an operation (``URL_DAILY_QUOTA``, ...) is not
    the limit the stored quota of that operation runs on."""


# The variable that sets each operation's limit, and the quota option that changes the stored
# one: the operations table's columns, by operation.
LIMIT_VARIABLES = {name: op.quota_setting for name, op in OPERATIONS.items()}
LIMIT_OPTIONS = {name: op.set_quota_option for name, op in OPERATIONS.items()}


def window_problem(window_s: float) -> str | None:
    """Why ``window_s`` cannot be the window every worker counts, or None when it can."""
    if not math.isfinite(window_s):
        return f"{window_s} is not a number of seconds"
    if not QUOTA_WINDOW_MIN_S <= window_s <= QUOTA_WINDOW_MAX_S:
        return f"{window_s:g} s is outside {QUOTA_WINDOW_MIN_S:g} s .. {QUOTA_WINDOW_MAX_S:g} s"
    return None


def set_window_command(window_s: float) -> str:
    """The command that makes ``window_s`` everyone's window, or the default when the command
    would refuse ``window_s`` (a demo's few seconds)."""
    valid = window_s if window_problem(window_s) is None else QUOTA_WINDOW_S
    return f"`cdn-refresh quota --set-window {valid:g}`"


class QuotaStore:
    """Our count of the rolling window, and every hold on claiming."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def usage(self, object_type: ObjectType, now: float | None = None) -> QuotaUsage:
        """Our count of the rolling window (reservations older than the window excluded)."""
        s = self._ctx.settings
        used, window, frees_in, limit = self._ctx.scripts.run(
            scripts.QUOTA_USED,
            {
                "now": time_arg(now),
                "configured_window_s": repr(s.quota.window_s),
                "configured_limit": daily_quota(s, object_type),
            },
            object_type,
        )
        return QuotaUsage(int(limit), int(used), float(window), float(frees_in))

    def effective(self, object_type: ObjectType) -> tuple[float, int]:
        """The window (s) and the limit of one type every worker's quota runs on, in one
        round trip: the stored ones (the first claim's, or ``quota --set-window`` and
        ``--set-url-quota``), else this process's settings, as ``quota_used.lua`` reads
        them. For readers: the scripts read the stored values themselves."""
        _, window, limit = self.backlog(object_type)
        return window, limit

    def backlog(self, object_type: ObjectType) -> tuple[int, float, int]:
        """How many paths of one type wait, and the window and the limit they drain at
        (:meth:`effective`), in one round trip."""
        tk = self._ctx.keys.of(object_type)
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(tk.pending)
            pipe.get(self._ctx.keys.shared.quota_window)
            pipe.get(tk.quota_limit)
            pending, window_raw, limit_raw = pipe.execute()
        return int(pending), *self.effective_of(object_type, window_raw, limit_raw)

    def effective_of(
        self, object_type: ObjectType, window_raw: object, limit_raw: object
    ) -> tuple[float, int]:
        """:meth:`effective` from the raw stored values (read in a caller's pipeline)."""
        s = self._ctx.settings
        window = float(str(window_raw)) if window_raw is not None else math.nan
        if not math.isfinite(window):  # none stored, or one nobody can run on
            window = s.quota.window_s
        limit = daily_quota(s, object_type) if limit_raw is None else int(float(str(limit_raw)))
        return window, limit

    def stored_window_s(self) -> float | None:
        """The window the first worker stored, if any worker ever claimed."""
        raw = self._ctx.redis.get(self._ctx.keys.shared.quota_window)
        return float(raw) if raw is not None else None

    def unusable_window(self) -> str | None:
        """Why the stored window cannot be counted on (nan or inf, stored by hand or by an
        older release), with the command that mends it; None when it can."""
        stored = self.stored_window_s()
        if stored is None or math.isfinite(stored):
            return None
        # Never advise the stored value itself: nobody can run on it.
        mine = self._ctx.settings.quota.window_s
        return (
            f"the quota window stored in Redis ({stored}) is not a number of seconds. "
            f"Set a valid one for every worker with {set_window_command(mine)}."
        )

    def check_window(self) -> None:
        """Raise :class:`QuotaWindowMismatchError` when our window is not the stored one.

        Every worker must count the same window: a shorter one would forget reservations
        that a longer one still counts, and the two together would spend more than either
        allows.
        """
        unusable = self.unusable_window()
        if unusable is not None:
            raise QuotaWindowMismatchError(unusable)
        stored = self.stored_window_s()
        mine = self._ctx.settings.quota.window_s
        if stored is not None and stored != mine:
            raise QuotaWindowMismatchError(
                f"CDN_REFRESH_QUOTA_WINDOW_S is {mine:g} but the quota in Redis runs on a "
                f"window of {stored:g} s (stored by the first worker). Use {stored:g}, or "
                f"change it for every worker with {set_window_command(mine)}."
            )

    def set_window(self, window_s: float) -> float | None:
        """Store a new window for every worker; returns the one it replaces.

        Raises ValueError for a window :func:`window_problem` refuses: a nan would stop every
        claim script, an inf would never free a unit.
        """
        problem = window_problem(window_s)
        if problem is not None:
            raise ValueError(problem)
        previous = self.stored_window_s()
        self._ctx.redis.set(self._ctx.keys.shared.quota_window, repr(float(window_s)))
        return previous

    def stored_limit(self, object_type: ObjectType) -> int | None:
        """The limit of one type the first claim stored, if any worker ever claimed."""
        raw = self._ctx.redis.get(self._ctx.keys.of(object_type).quota_limit)
        return int(float(raw)) if raw is not None else None

    def check_limits(self) -> None:
        """Raise :class:`QuotaLimitMismatchError` when our limit of a type is not the stored
        one: the claims count the stored one, so a worker's own value would be silently
        ignored (or, before it was stored, two workers would each spend their own)."""
        for kind in OBJECT_TYPES:
            stored, mine = self.stored_limit(kind), daily_quota(self._ctx.settings, kind)
            if stored is not None and stored != mine:
                raise QuotaLimitMismatchError(
                    f"CDN_REFRESH_{LIMIT_VARIABLES[kind]} is {mine} but the quota in Redis "
                    f"runs on a limit of {stored} (stored by the first worker). Use {stored}, "
                    f"or change it for every worker with `cdn-refresh quota "
                    f"{LIMIT_OPTIONS[kind]} {mine}`."
                )

    def set_limit(self, object_type: ObjectType, limit: int) -> int | None:
        """Store a new limit of one type for every worker; returns the one it replaces."""
        if limit < 0:
            raise ValueError("a quota limit is a count of paths, 0 or more")
        previous = self.stored_limit(object_type)
        self._ctx.redis.set(self._ctx.keys.of(object_type).quota_limit, str(int(limit)))
        return previous

    def window_change(self) -> tuple[float, float] | None:
        """``(previous, new)`` the first time any caller sees a window other than the one
        noticed before (``quota --set-window``); ``None`` otherwise, for every other caller."""
        k = self._ctx.keys.shared
        stored = self._ctx.redis.get(k.quota_window)
        if stored is None:
            # No worker claimed yet: the window is the configured one until one does.
            configured = repr(self._ctx.settings.quota.window_s)
            self._ctx.redis.set(k.quota_window_noticed, configured, nx=True)
            return None
        noticed = self._ctx.redis.set(k.quota_window_noticed, stored, get=True)
        if noticed is None or float(noticed) == float(stored):
            return None  # the first notice of a deployment is its start, not a change
        return float(noticed), float(stored)

    def set_hold(self, object_type: ObjectType, seconds: float, reason: str) -> None:
        """Stop claiming one type for ``seconds`` (the provider's quota is spent)."""
        self._extend_ttl(self._ctx.keys.of(object_type).hold, reason, seconds)

    def set_backoff(self, object_type: ObjectType, seconds: float) -> None:
        """Stop claiming one type for ``seconds`` after a transient error."""
        if seconds > 0:
            self._extend_ttl(self._ctx.keys.of(object_type).backoff, "1", seconds)

    def _extend_ttl(self, key: str, value: str, seconds: float) -> None:
        self._ctx.scripts.run(
            scripts.EXTEND_TTL,
            {"value": value, "ttl_ms": max(1, int(seconds * 1000))},
            extra_keys={"target": key},
        )

    def count_hold_failure(self, code: str) -> int:
        """Count one more failure in the streak of holds of all work, and return the count
        (1: the first of a streak, the one worth a log line). The streak ends when a call goes
        through, or when another problem takes over: an endpoint that answers again with a
        wrong key is news."""
        k = self._ctx.keys.shared
        previous = CredentialProblem.decode(cast(str | None, self._ctx.redis.get(k.auth_error)))
        if previous is not None and previous.code != code:
            self._ctx.redis.delete(k.auth_failures)
        return int(self._ctx.redis.incr(k.auth_failures))

    def set_auth_hold(self, code: str, message: str, seconds: float, failures: int) -> None:
        """Stop claiming anything for ``seconds`` after a credential error or an endpoint that
        does not answer (how long is the caller's policy to say), and keep the problem
        for ``status`` and ``lookup`` until a call goes through."""
        k = self._ctx.keys.shared
        value = CredentialProblem(code, message[:MAX_MESSAGE_CHARS], failures).encode()
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.set(k.auth_hold, value, px=max(1, int(seconds * 1000)))
            pipe.set(k.auth_error, value)
            pipe.execute()

    def lift_auth_hold(self) -> None:
        """An operator acted: claims may try the credentials again at once."""
        k = self._ctx.keys.shared
        self._ctx.redis.delete(k.auth_hold, k.auth_failures)

    def pending_count(self, object_type: ObjectType) -> int:
        """How many paths of one type wait."""
        return int(self._ctx.redis.zcard(self._ctx.keys.of(object_type).pending))

    def cooling_count(self, object_type: ObjectType) -> int:
        """How many paths of one type wait for their cooldown to end."""
        return int(self._ctx.redis.zcard(self._ctx.keys.of(object_type).cooling))

    def types_pending(self) -> list[ObjectType]:
        """The types that have pending (or cooling) paths."""
        return [t for t in OBJECT_TYPES if self.pending_count(t) or self.cooling_count(t)]

    def record_provider(
        self, object_type: ObjectType, remaining: int, limit: int, checked_at: float
    ) -> None:
        """Keep the provider's own count: the claims never reserve more than it has left
        (less what we reserved since it answered)."""
        self._ctx.redis.hset(
            self._ctx.keys.of(object_type).provider_quota,
            mapping={"remaining": remaining, "limit": limit, "checked_at": repr(checked_at)},
        )

    def provider(self, object_type: ObjectType) -> ProviderQuota | None:
        """What the provider last said of its own count, if it was asked."""
        raw = self._ctx.redis.hgetall(self._ctx.keys.of(object_type).provider_quota)
        return ProviderQuota.decode(cast(dict[str, str], raw))

    def sync_turn(self, interval_s: float) -> bool:
        """True at most once per ``interval_s`` for the whole deployment: time to read the
        provider's count."""
        key = self._ctx.keys.shared.quota_sync_gate
        return bool(self._ctx.redis.set(key, "1", nx=True, px=max(1, int(interval_s * 1000))))

    def first_notice_of_limit(self, object_type: ObjectType, limit: int) -> bool:
        """True once per provider limit: a limit above ours is worth one log line."""
        key = self._ctx.keys.of(object_type).provider_noticed
        return self._ctx.redis.getset(key, str(limit)) != str(limit)

    def first_notice(self, object_type: ObjectType, reason: str, seconds: float) -> bool:
        """True once per wait: so that a full window is logged once, not at every flush."""
        key = self._ctx.keys.of(object_type).wait_noticed
        ttl_ms = max(1000, int(seconds * 1000))
        return bool(self._ctx.redis.set(key, reason, nx=True, px=ttl_ms))

    def schedule_flush(self, object_type: ObjectType, delay_s: float) -> bool:
        """True when no flush of this type is scheduled yet (and now one is, for
        ``delay_s``)."""
        key = self._ctx.keys.of(object_type).flush_scheduled
        return bool(self._ctx.redis.set(key, "1", nx=True, px=max(1, int(delay_s * 1000))))

    def request_wake_up(self, debounce_s: float) -> float | None:
        """When the producers' wake-up should flush, after an enqueue: ``0`` (at once, the
        leading edge) when no enqueue asked within the last ``debounce_s``, as on an idle
        system; ``debounce_s`` (trailing) for the first of a busy window, so that what keeps
        coming is batched as before; ``None`` when that trailing flush is asked for already.
        """
        k = self._ctx.keys.shared
        px = max(1, int(debounce_s * 1000))
        # Every enqueue renews the mark: a steady stream never looks idle.
        if self._ctx.redis.set(k.flush_requested, "1", px=px, get=True) is None:
            return 0.0
        if self._ctx.redis.set(k.flush_trailing, "1", nx=True, px=px):
            return debounce_s
        return None
