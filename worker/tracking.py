"""The poller: asks the provider how each submitted call's tasks ended.

One poller for the deployment: it runs in the periodic tick (one beat) and holds a Redis
mark while it polls, so that a second tick, or a tick on another host, never asks twice.
Per tracked call: ``DescribeRefreshTaskById`` with the call's task IDs (at most 10 a
request, the provider's limit), whose answer names every path's own task. Then, by
:func:`decide`: every task ended (settle: Complete paths complete, Failed ones back to
pending), a task still runs (ask again after TASK_FIRST_CHECK_S or a tenth of the call's age,
whichever is longer, at most TASK_CHECK_MAX_S; sooner when its Process foretells the end), or
give up (past TASK_TIMEOUT_S, or a task the provider no longer knows:
logged, the paths left as submitted, never re-sent in a loop).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store.tracking import TrackedCall
from worker.client import CdnClient, RefreshTask
from worker.errors import CdnError

log = logging.getLogger("cdn_refresh.worker")

# The provider's statuses of a task that has not ended yet; any other has ended, and only
# Complete ended well (Failed, and a Timeout or Canceled the provider may show, did not).
RUNNING = frozenset({"Refreshing", "Pending"})
COMPLETE = "Complete"
# Task IDs one DescribeRefreshTaskById takes.
IDS_PER_QUERY = 10
# Calls one poll asks about, and the time it may take: the rest wait for the next tick.
CALLS_PER_POLL = 50
POLL_BUDGET_S = 10.0
# DescribeRefreshTaskById allows about 30 requests a second per account: the one poller
# stays well under it.
DESCRIBE_GAP_S = 1 / 25
# A running call is asked about again after TASK_FIRST_CHECK_S or this share of its age,
# whichever is longer: its end is noticed within that (docs/behaviour.md, "From pending to
# complete").
CHECK_AGE_SHARE = 0.1
# Asked about this long after the end its Process foretells (a pace is no promise).
PROGRESS_MARGIN_S = 2.0
MIN_CHECK_GAP_S = 1.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a tracked call after one answer."""

    outcome: str  # "settle" | "wait" | "give_up"
    statuses: dict[str, str] = field(default_factory=dict)
    task_of: dict[str, str] = field(default_factory=dict)
    next_s: float = 0.0
    reason: str = ""


def decide(call: TrackedCall, tasks: list[RefreshTask], now: float, settings: Settings) -> Decision:
    """Settle, wait or give up, from the provider's answer for one call's tasks."""
    statuses: dict[str, str] = {}
    task_of: dict[str, str] = {}
    for task in tasks:
        # One entry per (task, path): a task's status is the same on each of its entries.
        statuses[task.task_id] = task.status
        task_of[task.object_path] = task.task_id
    # A task missing from the answer may not be visible yet: it waits like a running one,
    # and only past the timeout is it one the provider does not know.
    missing = [t for t in call.task_ids if t not in statuses]
    running = missing or [t for t in call.task_ids if statuses[t] in RUNNING]
    if not running:
        return Decision("settle", statuses, task_of)
    age = now - call.submitted_at
    if age >= settings.tracking.task_timeout_s:
        return Decision("give_up", statuses, task_of, reason="Unknown" if missing else "Timeout")
    progress = None if missing else _least_progress(tasks, running)
    return Decision("wait", statuses, task_of, next_s=next_check_s(age, settings, progress))


def next_check_s(age_s: float, settings: Settings, progress: float | None = None) -> float:
    """The gap before the next check of a call ``age_s`` old: TASK_FIRST_CHECK_S, or a tenth
    of its age less a tick once that is longer (at most TASK_CHECK_MAX_S). With the tick's
    delay, a task's end is noticed within TASK_FIRST_CHECK_S + FLUSH_INTERVAL_S (15 s at the
    defaults) or a tenth of its age, whichever is larger; sooner when the provider's
    ``Process`` (``progress``, in %) says the task ends before then."""
    # A check falls due between two ticks: it may run up to FLUSH_INTERVAL_S late.
    share = CHECK_AGE_SHARE * age_s - settings.flush.interval_s
    gap = min(settings.tracking.task_check_max_s, max(settings.tracking.task_first_check_s, share))
    if progress is not None and 0 < progress < 100:
        # Progress so far took age_s: at that pace, the rest takes this long.
        gap = min(gap, age_s * (100 - progress) / progress + PROGRESS_MARGIN_S)
    return float(max(MIN_CHECK_GAP_S, gap))


def _least_progress(tasks: list[RefreshTask], running: list[str]) -> float | None:
    """The lowest ``Process`` of the running tasks (``45%`` -> 45.0); None if unreadable."""
    found = []
    for task in tasks:
        if task.task_id in running:
            try:
                found.append(float(task.process.strip().rstrip("%")))
            except ValueError:
                return None
    return min(found) if found else None


@dataclass
class PollReport:
    """What one poll did."""

    calls: int = 0
    describe_requests: int = 0
    complete: int = 0
    back_to_pending: int = 0
    dead_lettered: int = 0
    given_up: int = 0


class Tracker:
    """Polls the provider for the tasks of submitted calls until they end."""

    def __init__(self, store: Store, client: CdnClient, settings: Settings) -> None:
        self._store = store
        self._client = client
        self._settings = settings

    def poll(self, now: float | None = None) -> PollReport:
        """Ask about the calls due now (at most CALLS_PER_POLL, for POLL_BUDGET_S)."""
        report = PollReport()
        tracking = self._store.tracking
        # The mark outlives the longest poll: its budget and one more request's timeouts.
        s = self._settings
        if not tracking.take_turn(
            POLL_BUDGET_S + s.provider.http_connect_timeout_s + s.provider.http_read_timeout_s
        ):
            return report
        started = time.monotonic()
        try:
            for call in tracking.due(CALLS_PER_POLL, now):
                if time.monotonic() - started > POLL_BUDGET_S:
                    break
                if not self._check(call, report, now):
                    break  # throttled: the rest waits for the next tick
                time.sleep(DESCRIBE_GAP_S)
        finally:
            tracking.end_turn()
        return report

    def _check(self, call: TrackedCall, report: PollReport, now: float | None) -> bool:
        """Ask about one call and act on the answer; False when the provider throttles."""
        report.calls += 1
        tasks: list[RefreshTask] = []
        clock = self._store.now() if now is None else now
        try:
            for start in range(0, len(call.task_ids), IDS_PER_QUERY):
                report.describe_requests += 1
                chunk = call.task_ids[start : start + IDS_PER_QUERY]
                tasks += self._client.describe_refresh_task_by_id(chunk)
        except CdnError as exc:
            # Throttled, or the provider is down, or this key may not describe: ask again at
            # the next gap, and give up past the timeout like for a task that never ends.
            log.warning(
                "task check failed call=%s code=%s: asking again later", call.call_id, exc.code
            )
            if clock - call.submitted_at >= self._settings.tracking.task_timeout_s:
                self._store.tracking.give_up(call, f"DescribeFailed:{exc.code}", now)
            else:
                age = clock - call.submitted_at
                self._store.tracking.wait(call, next_check_s(age, self._settings), now)
            return "Throttl" not in exc.code and "TooMany" not in exc.code

        decision = decide(call, tasks, clock, self._settings)
        if decision.outcome == "wait":
            self._store.tracking.wait(call, decision.next_s, now)
        elif decision.outcome == "give_up":
            report.given_up += 1
            log.warning(
                "task tracking given up call=%s task_ids=%s reason=%s age_s=%.0f: "
                "its paths stay submitted",
                call.call_id,
                ",".join(call.task_ids),
                decision.reason,
                clock - call.submitted_at,
            )
            self._store.tracking.give_up(call, decision.reason, now)
        else:
            self._settle(call, decision, report, now)
        return True

    def _settle(
        self, call: TrackedCall, decision: Decision, report: PollReport, now: float | None
    ) -> None:
        done = self._store.tracking.settle(call, decision.statuses, decision.task_of, now)
        report.complete += done.complete
        report.back_to_pending += done.back_to_pending
        report.dead_lettered += done.dead_lettered
        failed = [t for t, s in decision.statuses.items() if s != COMPLETE]
        if failed:
            log.warning(
                "refresh task failed call=%s task_ids=%s: paths back to pending=%d "
                "dead-lettered=%d",
                call.call_id,
                ",".join(failed),
                done.back_to_pending,
                done.dead_lettered,
            )
        log.info("tasks ended call=%s complete=%d", call.call_id, done.complete)
