"""What the pipeline does after each kind of answer: the one table of it, waits included.

A row says what happens to the paths of the call (:class:`Action`), whether the quota units
reserved for them come back, whether an attempt is spent, and how long the work waits, as a
function of what is known at that moment (:class:`WaitFacts`). :mod:`worker.errors` says which
provider codes are which class; :class:`worker.pipeline.Flusher` asks :func:`policy_for`,
gathers the facts, asks the row's wait and writes it: no other code decides a wait or
dispatches on an error class (``tests/test_policy.py`` holds this).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cdn_refresh import provider_day
from cdn_refresh.settings import RetrySettings
from cdn_refresh.store.records import Release
from worker.errors import (
    CdnError,
    CredentialError,
    HoldError,
    NetworkError,
    QuotaExhaustedError,
    RejectedPathError,
    RequestShapeError,
    RetryableError,
    UnreachableError,
)


class Action(StrEnum):
    """What happens to the paths of the call, and which claims the wait stops."""

    RETRY = "retry"  # back to pending; this type backs off; dead-lettered at MAX_ATTEMPTS
    HOLD_TYPE = "hold_type"  # back to pending; this type holds
    HOLD_ALL = "hold_all"  # back to pending; every claim holds
    SPLIT = "split"  # halve the batch until the bad paths stand alone, dead-letter those
    REQUEUE = "requeue"  # back to pending: nothing was wrong with them


@dataclass(frozen=True, slots=True)
class WaitFacts:
    """What a wait may depend on. The pipeline gathers what its row's action needs (the clock
    and the provider's count for a hold of a type, the streak for a hold of all work): each
    costs a round trip, and the other rows never read them."""

    retry: RetrySettings
    rng: random.Random
    now: float = 0.0  # Redis's clock, which every worker shares (s)
    attempts: int = 0  # the highest attempt count among the paths just released
    failures: int = 1  # holds of all work in a row for one problem, this one included
    retry_after_s: float | None = None  # the provider's ``x-acs-retry-after``
    provider_left: int | None = None  # the provider's own count of this type, just read
    batch_paths: int = 0  # paths the refused call carried


WaitFn = Callable[[WaitFacts], float]


def no_wait(_: WaitFacts) -> float:
    """No wait: the next claim may go at once."""
    return 0.0


def jittered_backoff(facts: WaitFacts) -> float:
    """Full jitter up to `RETRY_BASE_DELAY_S` * 2^(attempt-1), capped at `RETRY_MAX_DELAY_S`;
    never below the provider's `x-acs-retry-after`."""
    s = facts.retry
    # Full jitter: workers that failed together do not come back together.
    ceiling = min(s.max_delay_s, s.base_delay_s * 2 ** (max(1, facts.attempts) - 1))
    delay = facts.rng.uniform(0, ceiling)
    return max(delay, facts.retry_after_s) if facts.retry_after_s else delay


def until_provider_reset(facts: WaitFacts) -> float:
    """Until the provider's next reset (00:00 UTC+8); max(1 s, `RETRY_BASE_DELAY_S`) when
    its count, read just now, has units left but fewer than the call carried."""
    # Others may have spent the account's quota: the claims then take what is left. A
    # refusal the count does not explain holds until the reset.
    if facts.provider_left and facts.provider_left < facts.batch_paths:
        return max(1.0, facts.retry.base_delay_s)
    return provider_day.seconds_until_reset(facts.now)


def doubling_hold(facts: WaitFacts) -> float:
    """`RETRY_BASE_DELAY_S` doubling with each failure in a row, up to `AUTH_HOLD_MAX_S`."""
    s = facts.retry
    # The exponent is capped so that a streak of days cannot overflow the float.
    return float(min(s.auth_hold_max_s, s.base_delay_s * 2 ** min(facts.failures - 1, 30)))


@dataclass(frozen=True, slots=True)
class Policy:
    """One row of the table."""

    action: Action
    # A definite answer means the provider took nothing: the reservation comes back. An
    # answer whose outcome is unknown (``CdnError.outcome_unknown``) always keeps it.
    returns_quota: bool
    # An attempt counts towards MAX_ATTEMPTS, after which the paths are dead-lettered.
    spends_attempt: bool
    wait: WaitFn
    # The call's ``outcome`` in the batch log line and the calls metric; "" for the action's.
    outcome: str = ""

    def outcome_label(self) -> str:
        """What the batch log line and ``cdn_refresh_calls_total`` call this answer."""
        return self.outcome or ACTION_OUTCOMES[self.action]

    def quota_back(self, error: CdnError) -> bool:
        """Whether this answer gives the batch's reservation back."""
        return self.returns_quota and not error.outcome_unknown

    def release(self) -> Release:
        """What the release script does to the paths this row sends back."""
        if self.action is Action.SPLIT:
            return Release.FAILED  # only a path that stands alone is released by this row
        return Release.RETRY if self.spends_attempt else Release.REQUEUE

    def wait_s(self, facts: WaitFacts) -> float:
        """How long the work waits, in seconds (0: not at all)."""
        return self.wait(facts)


# The ``outcome`` label of a call that raised, by what the policy does with it.
ACTION_OUTCOMES = {
    Action.RETRY: "retry",
    Action.HOLD_TYPE: "provider_quota",
    Action.HOLD_ALL: "credentials",
    Action.SPLIT: "rejected_path",
    Action.REQUEUE: "requeued",
}

# The row every retried answer shares.
_RETRY = Policy(Action.RETRY, returns_quota=True, spends_attempt=True, wait=jittered_backoff)

# One row for every class in worker.errors, looked up by the error's class (see policy_for).
POLICIES: dict[type[CdnError], Policy] = {
    RejectedPathError: Policy(Action.SPLIT, returns_quota=True, spends_attempt=True, wait=no_wait),
    QuotaExhaustedError: Policy(
        Action.HOLD_TYPE, returns_quota=True, spends_attempt=False, wait=until_provider_reset
    ),
    CredentialError: Policy(
        Action.HOLD_ALL, returns_quota=True, spends_attempt=False, wait=doubling_hold
    ),
    # The request never left: nothing spent, no attempt; everything holds until it answers.
    UnreachableError: Policy(
        Action.HOLD_ALL,
        returns_quota=True,
        spends_attempt=False,
        wait=doubling_hold,
        outcome="unreachable",
    ),
    # Never raised as such; a hold of its own kind would hold everything, as its doc says.
    HoldError: Policy(
        Action.HOLD_ALL,
        returns_quota=True,
        spends_attempt=False,
        wait=doubling_hold,
        outcome="hold",
    ),
    # Transient answers, network errors, call-shape errors and unknown codes alike.
    RetryableError: _RETRY,
    NetworkError: _RETRY,
    RequestShapeError: _RETRY,
    # Anything else a client may raise: retried, like an unknown code.
    CdnError: _RETRY,
}

# A bug of ours mid-call (not an answer): keep the paths and the reservation (we cannot know
# whether the call went out), count an attempt, and let Celery see the exception.
ON_OUR_BUG = Policy(Action.RETRY, returns_quota=False, spends_attempt=True, wait=no_wait)
# A batch whose lease ran out (its worker died): back to pending with an attempt counted;
# the reservation stays, since the call may have gone out.
ON_LEASE_EXPIRED = Policy(Action.RETRY, returns_quota=False, spends_attempt=True, wait=no_wait)
# A batch whose owner's heartbeat is gone (its worker process died mid-call) is what a lease
# running out is, found sooner: the same row.
ON_OWNER_LOST = ON_LEASE_EXPIRED
# A batch a stopping worker hands back before its call went out (a warm shutdown): back to
# pending with no attempt counted, and the reservation comes back, since nothing was sent.
ON_HANDED_BACK = Policy(Action.REQUEUE, returns_quota=True, spends_attempt=False, wait=no_wait)
# Splitting spent its budget (MAX_SPLIT_CALLS): what is left of the batch is retried.
ON_SPLIT_BUDGET_SPENT = _RETRY
# Calls one batch may make while splitting to isolate bad paths (about 20 find one bad path
# among 1,000); past this the rest is retried, with a backoff.
MAX_SPLIT_CALLS = 100


def policy_for(error: CdnError) -> Policy:
    """The row for ``error``: its own class's, else its nearest base class's (a client's
    own subclass)."""
    for cls in type(error).__mro__:
        if cls in POLICIES:
            return POLICIES[cls]
    raise TypeError(f"no policy for {type(error).__name__}")  # pragma: no cover


def table_markdown() -> str:
    """The table of what each error class does, as the docs show it (a test keeps them the
    same)."""
    lines = [
        "| Error class | What happens | Quota back | Attempt spent | Wait |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls, row in POLICIES.items():
        wait = inspect.getdoc(row.wait) or row.wait.__name__
        lines.append(
            f"| `{cls.__name__}` | {ACTION_TEXT[row.action]} | {_yes(row.returns_quota)} | "
            f"{_yes(row.spends_attempt)} | {' '.join(wait.split())} |"
        )
    return "\n".join(lines) + "\n"


# What each action does, in the words of the docs' table.
ACTION_TEXT = {
    Action.RETRY: "retried; dead-lettered at `MAX_ATTEMPTS`",
    Action.HOLD_TYPE: "back to pending; its type holds",
    Action.HOLD_ALL: "back to pending; all work holds",
    Action.SPLIT: "the call is halved until the refused path stands alone: dead-lettered",
    Action.REQUEUE: "back to pending",
}


def _yes(value: bool) -> str:
    return "yes" if value else "no"
