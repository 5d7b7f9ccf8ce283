"""What the pipeline does after each kind of answer: the one table of it.

The README and the docstrings point here instead of restating it. :mod:`worker.errors` says
which provider codes are which class; :class:`worker.pipeline.Flusher` asks
:func:`policy_for` and does what the row says.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cdn_refresh.constants import PROVIDER_RESET_UTC_OFFSET_H
from cdn_refresh.settings import Settings
from worker.errors import (
    CdnError,
    CredentialError,
    QuotaExhaustedError,
    RejectedPathError,
    RetryableError,
    UnreachableError,
)


class Action(StrEnum):
    """What happens to the paths of the call."""

    RETRY = "retry"  # back to pending, one attempt counted; dead-lettered at MAX_ATTEMPTS
    HOLD_TYPE = "hold_type"  # back to pending, no attempt; this type holds
    HOLD_ALL = "hold_all"  # back to pending, no attempt; every claim holds
    SPLIT = "split"  # halve the batch until the bad paths stand alone, dead-letter those
    REQUEUE = "requeue"  # back to pending, no attempt counted: nothing was wrong with them


class Wait(StrEnum):
    """How long the work waits after the answer."""

    JITTERED_BACKOFF = "jittered_backoff"  # full jitter up to RETRY_BASE_DELAY_S * 2^(n-1),
    # capped at RETRY_MAX_DELAY_S, never below the provider's x-acs-retry-after
    UNTIL_PROVIDER_RESET = "until_provider_reset"  # 00:00 UTC+8
    DOUBLING_HOLD = "doubling_hold"  # RETRY_BASE_DELAY_S doubling per failure, to AUTH_HOLD_MAX_S
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Policy:
    """One row of the table."""

    action: Action
    # A definite answer means the provider took nothing: the reservation comes back. An
    # answer whose outcome is unknown (``CdnError.outcome_unknown``) always keeps it.
    returns_quota: bool
    wait: Wait
    # The call's ``outcome`` in the batch log line and the calls metric; "" for the action's.
    outcome: str = ""

    def outcome_label(self) -> str:
        """What the batch log line and ``cdn_refresh_calls_total`` call this answer."""
        return self.outcome or ACTION_OUTCOMES[self.action]

    def quota_back(self, error: CdnError) -> bool:
        """Whether this answer gives the batch's reservation back."""
        return self.returns_quota and not error.outcome_unknown


# The ``outcome`` label of a call that raised, by what the policy does with it.
ACTION_OUTCOMES = {
    Action.RETRY: "retry",
    Action.HOLD_TYPE: "provider_quota",
    Action.HOLD_ALL: "credentials",
    Action.SPLIT: "rejected_path",
    Action.REQUEUE: "requeued",
}

# Looked up by the error's class, most specific first (see policy_for).
POLICIES: dict[type[CdnError], Policy] = {
    RejectedPathError: Policy(Action.SPLIT, returns_quota=True, wait=Wait.NONE),
    QuotaExhaustedError: Policy(
        Action.HOLD_TYPE, returns_quota=True, wait=Wait.UNTIL_PROVIDER_RESET
    ),
    CredentialError: Policy(Action.HOLD_ALL, returns_quota=True, wait=Wait.DOUBLING_HOLD),
    # The request never left: nothing spent, no attempt; everything holds until it answers.
    UnreachableError: Policy(
        Action.HOLD_ALL, returns_quota=True, wait=Wait.DOUBLING_HOLD, outcome="unreachable"
    ),
    # Transient answers, network errors, call-shape errors and unknown codes alike.
    RetryableError: Policy(Action.RETRY, returns_quota=True, wait=Wait.JITTERED_BACKOFF),
    # Anything else a client may raise: retried, like an unknown code.
    CdnError: Policy(Action.RETRY, returns_quota=True, wait=Wait.JITTERED_BACKOFF),
}

# A bug of ours mid-call (not an answer): keep the paths and the reservation (we cannot know
# whether the call went out), count an attempt, and let Celery see the exception.
ON_OUR_BUG = Policy(Action.RETRY, returns_quota=False, wait=Wait.NONE)
# A batch whose lease ran out (its worker died): back to pending with an attempt counted;
# the reservation stays, since the call may have gone out.
ON_LEASE_EXPIRED = Policy(Action.RETRY, returns_quota=False, wait=Wait.NONE)
# A batch whose owner's heartbeat is gone (its worker process died mid-call, issue 13) is
# what a lease running out is, found sooner: the same row.
ON_OWNER_LOST = ON_LEASE_EXPIRED
# A batch a stopping worker hands back before its call went out (a warm shutdown): back to
# pending with no attempt counted, and the reservation comes back, since nothing was sent.
ON_HANDED_BACK = Policy(Action.REQUEUE, returns_quota=True, wait=Wait.NONE)
# Splitting spent its budget (MAX_SPLIT_CALLS): what is left of the batch is retried.
ON_SPLIT_BUDGET_SPENT = Policy(Action.RETRY, returns_quota=True, wait=Wait.JITTERED_BACKOFF)
# Calls one batch may make while splitting to isolate bad paths (about 20 find one bad path
# among 1,000); past this the rest is retried, with a backoff.
MAX_SPLIT_CALLS = 100


def policy_for(error: CdnError) -> Policy:
    """The row for ``error``: its own class's, else its nearest base class's."""
    for cls in type(error).__mro__:
        if cls in POLICIES:
            return POLICIES[cls]
    raise TypeError(f"no policy for {type(error).__name__}")  # pragma: no cover


def backoff_delay_s(attempt: int, settings: Settings, rng: random.Random) -> float:
    """Exponential backoff with full jitter for the given attempt (1-based)."""
    ceiling = min(settings.retry_max_delay_s, settings.retry_base_delay_s * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


def retry_delay_s(error: CdnError, attempt: int, settings: Settings, rng: random.Random) -> float:
    """The backoff after a retryable answer: jittered, at least the provider's hint."""
    delay = backoff_delay_s(max(1, attempt), settings, rng)
    if error.retry_after_s:
        delay = max(delay, error.retry_after_s)
    return delay


def seconds_until_provider_reset(now: float) -> float:
    """Seconds until the provider's next quota reset, 00:00 in UTC+8."""
    zone_now = datetime.fromtimestamp(now, UTC) + timedelta(hours=PROVIDER_RESET_UTC_OFFSET_H)
    next_midnight = (zone_now + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return (next_midnight - zone_now).total_seconds()
