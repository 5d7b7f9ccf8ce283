"""The flush loop: claim a batch, make the call, settle every path by the answer.

What each answer does, and how long the work then waits, is the table in
:mod:`worker.policy`; this module gathers the facts a row's wait needs, carries the row out
and logs it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cdn_refresh.constants import ObjectType
from cdn_refresh.operations import OPERATIONS, coverage, covered_by, paths_per_call
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store.metrics import CallSample
from cdn_refresh.store.records import Batch, Settled, Wait
from worker.client import CdnClient
from worker.errors import CdnError
from worker.policy import (
    MAX_SPLIT_CALLS,
    ON_OUR_BUG,
    ON_SPLIT_BUDGET_SPENT,
    Action,
    Policy,
    WaitFacts,
    policy_for,
)
from worker.promotion import Promoter
from worker.provider_count import ProviderCount
from worker.recovery import InHand, hand_back
from worker.tracking import Tracker

log = logging.getLogger("cdn_refresh.worker")

# One flush claims at most this many batches before it hands over to a fresh task, so that
# one long drain does not starve the other types.
MAX_BATCHES_PER_FLUSH = 50


@dataclass
class FlushReport:
    """What one flush did, and why it stopped."""

    batches: int = 0
    submitted: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    covered: int = 0  # paths settled with a Directory above them, for no unit of their own
    wait: Wait | None = None
    more: bool = False
    calls: int = 0
    task_ids: list[str] = field(default_factory=list)
    top_attempt: int = 0
    batch_first_call: int = 0
    # Calls made whose answer is not settled yet: the next submit or release counts them.
    unsettled_calls: list[CallSample] = field(default_factory=list)

    def note_call(self, outcome: str, started: float) -> None:
        """A provider call ended (``started``: its time.monotonic() at the start)."""
        self.unsettled_calls.append(CallSample(outcome, time.monotonic() - started))

    def take_calls(self) -> list[CallSample]:
        """The calls the settle about to run ends, handed over once."""
        calls, self.unsettled_calls = self.unsettled_calls, []
        return calls


class Flusher:
    """Drains pending paths into provider calls. Safe to run in many processes at once."""

    def __init__(
        self,
        store: Store,
        client: CdnClient,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        on_more_work: Callable[[ObjectType], object] | None = None,
        owner: str = "",
    ) -> None:
        """``owner`` names this process in its claims (its heartbeat keeps them its own)."""
        self._store = store
        self.owner = owner
        self.in_hand = InHand()
        # Set when the process is asked to stop: no new call goes out after it.
        self.stopping = threading.Event()
        self._eviction_said: str | None = None
        self._client = client
        self._settings = settings
        self._rng = rng or random.Random()
        self._on_more_work = on_more_work
        self.provider_count = ProviderCount(store, client, settings)
        self.tracker = Tracker(store, client, settings)
        self.promoter = Promoter(
            store,
            settings,
            on_promoted=(lambda: on_more_work(coverage().covering)) if on_more_work else None,
        )

    def flush(
        self, object_type: ObjectType, max_batches: int = MAX_BATCHES_PER_FLUSH
    ) -> FlushReport:
        """Claim and send batches of one type until none is left, or a wait, or the cap."""
        report = FlushReport()
        if self._evicting():
            return report
        self.provider_count.sync()
        op = OPERATIONS[object_type]
        if covered_by(op.name):  # a covered operation's window may be short: promote
            self.promoter.maybe_promote()
        while report.batches < max_batches and not self.stopping.is_set():
            claimed = self._store.batches.claim(object_type, owner=self.owner)
            if claimed is None:
                return report
            if isinstance(claimed, Wait):
                report.wait = claimed
                return report
            self.in_hand.claimed(claimed.id, claimed.object_type)
            if self.stopping.is_set():
                # Asked to stop between claim and call: nothing went out, the quota comes back.
                hand_back(self._store, self.in_hand)
                break
            if OPERATIONS[claimed.object_type].covers:  # it covers paths pending under it
                covered = self._cover(claimed)
                if covered is None:
                    self.in_hand.settled(claimed.id)
                    continue  # reclaimed meanwhile (a stalled worker): not ours to send
                claimed = covered
            report.batches += 1
            if len(claimed.paths) >= paths_per_call(self._settings, op) and (
                self._on_more_work is not None
            ):
                # A full batch suggests more is pending: let idle workers join in.
                self._on_more_work(object_type)
            self.send(claimed, report)
        report.more = True
        return report

    def _evicting(self) -> bool:
        """True while Redis may evict keys (read once a minute): nothing is claimed, since an
        eviction would drop the paths of the batch in hand with the rest. Said once a change."""
        problem = self._store.eviction.problem()
        if problem != self._eviction_said:
            if problem is not None:
                log.critical("claiming nothing: %s", problem)
            else:
                log.warning("redis may no longer evict keys: claiming again")
            self._eviction_said = problem
        return problem is not None

    def _cover(self, batch: Batch) -> Batch | None:
        """Let a Directory batch carry the pending paths under it (they go back with it if
        the call fails); ``None`` when the batch is no longer ours."""
        coverage = self._store.batches.cover(batch)
        if coverage is None:
            return None
        if coverage.paths:
            log.info(
                "covering batch id=%s directories=%d files=%d subdirectories=%d nested=%d",
                batch.id,
                len(coverage.batch.paths),
                coverage.files,
                coverage.directories,
                coverage.nested,
            )
        return coverage.batch

    def send(self, batch: Batch, report: FlushReport) -> None:
        """Make the call for a claimed batch and settle every one of its paths."""
        started = time.monotonic()
        calls_before, tasks_before = report.calls, len(report.task_ids)
        covered_before = report.covered
        report.batch_first_call = calls_before
        report.top_attempt = 0
        outcome = "submitted"
        error: CdnError | None = None
        if not self.in_hand.call_starting(batch.id):
            log.info("batch id=%s handed back before its call: not sent", batch.id)
            return
        try:
            self._submit(batch, batch.paths, report)
        except CdnError as exc:
            error = exc
            outcome = self._settle_error(batch, exc, report)
        except Exception as exc:
            self._release(batch, ON_OUR_BUG, code=type(exc).__name__, calls=report.take_calls())
            outcome = "error"
            raise
        finally:
            self.in_hand.settled(batch.id)
            # The one line per batch an operator reads: what went, where, how, how long.
            log.info(
                "batch id=%s type=%s paths=%d covered=%d domains=%d attempt=%d calls=%d "
                "outcome=%s code=%s task_ids=%s duration_ms=%d",
                batch.id,
                batch.object_type,
                len(batch.paths),
                report.covered - covered_before,
                len(batch.domains),
                report.top_attempt,
                report.calls - calls_before,
                outcome,
                error.code if error else "-",
                ",".join(report.task_ids[tasks_before:]) or "-",
                (time.monotonic() - started) * 1000,
            )

    def _submit(self, batch: Batch, paths: tuple[str, ...], report: FlushReport) -> None:
        report.calls += 1
        started = time.monotonic()
        try:
            result = self._client.refresh_object_caches(list(paths), batch.object_type)
        except CdnError as exc:
            policy = policy_for(exc)
            report.note_call(policy.outcome_label(), started)
            if policy.action is not Action.SPLIT:
                raise
            self._split(batch, paths, exc, report)
            return
        except Exception:
            report.note_call("error", started)
            raise
        report.note_call("submitted", started)
        done = self._store.batches.submit(
            batch,
            # The whole batch (no split so far): no paths means every path still in the batch,
            # and spares Redis a copy of all of them.
            () if paths is batch.paths else paths,
            result.task_ids,
            result.request_id,
            calls=report.take_calls(),
        )
        if done.settled == 0:
            # The lease ran out before this answer (a stalled worker) and the paths went
            # back to pending: they may go out again, but this call's task IDs are kept.
            self._store.batches.record_late(batch, paths, result.task_ids, result.request_id)
            log.warning(
                "late answer batch=%s paths=%d task_ids=%s: its lease had run out",
                batch.id,
                len(paths),
                ",".join(result.task_ids),
            )
        report.submitted += done.settled
        report.covered += done.covered
        report.task_ids.extend(result.task_ids)
        report.top_attempt = max(report.top_attempt, done.top_attempts)
        log.debug(
            "submitted batch=%s paths=%d task_ids=%s request_id=%s",
            batch.id,
            len(paths),
            ",".join(result.task_ids),
            result.request_id,
        )

    def _split(
        self, batch: Batch, paths: tuple[str, ...], exc: CdnError, report: FlushReport
    ) -> None:
        """Halve a refused call until the bad paths stand alone; dead-letter those."""
        if len(paths) == 1:
            policy = policy_for(exc)
            done = self._store.batches.release(
                batch.id,
                batch.object_type,
                policy.release(),
                paths=paths,
                code=exc.code,
                message=exc.message,
                return_quota=policy.quota_back(exc),
                calls=report.take_calls(),
            )
            report.dead_lettered += done.dead_lettered
            report.top_attempt = max(report.top_attempt, done.top_attempts)
            log.warning(
                "dead-lettered type=%s path=%s code=%s", batch.object_type, paths[0], exc.code
            )
            return
        if report.calls - report.batch_first_call >= MAX_SPLIT_CALLS:
            # Many bad paths (a whole domain gone offline, say): stop splitting now. The
            # rest go back with an attempt counted and a backoff, not a call per path.
            raise exc
        self._store.batches.extend_lease(batch.id)
        middle = len(paths) // 2
        self._submit(batch, paths[:middle], report)
        self._submit(batch, paths[middle:], report)

    def _release(
        self,
        batch: Batch,
        policy: Policy,
        *,
        code: str,
        message: str = "",
        back: bool = False,
        calls: list[CallSample] | None = None,
    ) -> Settled:
        """Send what is left of a batch back to pending by ``policy`` (an attempt counted
        when the row spends one, which dead-letters the paths that reach MAX_ATTEMPTS)."""
        return self._store.batches.release(
            batch.id,
            batch.object_type,
            policy.release(),
            code=code,
            message=message,
            return_quota=back,
            calls=calls or (),
        )

    def _settle_error(self, batch: Batch, exc: CdnError, report: FlushReport) -> str:
        """Settle what is left of a batch after an error by its row, and start the row's
        wait; returns the outcome for the log."""
        policy = policy_for(exc)
        if policy.action is Action.SPLIT:
            # Splitting gave up (MAX_SPLIT_CALLS): what is left is retried.
            policy = ON_SPLIT_BUDGET_SPENT
        done = self._release(
            batch,
            policy,
            code=exc.code,
            message=exc.message,
            back=policy.quota_back(exc),
            calls=report.take_calls(),
        )
        report.requeued += done.settled - done.dead_lettered
        report.dead_lettered += done.dead_lettered
        report.top_attempt = max(report.top_attempt, done.top_attempts)
        if done.dead_lettered:
            log.warning(
                "dead-lettered type=%s paths=%d code=%s after attempts=%d",
                batch.object_type,
                done.dead_lettered,
                exc.code,
                done.top_attempts,
            )
        facts = WaitFacts(
            self._settings.retry,
            self._rng,
            attempts=done.top_attempts,
            retry_after_s=exc.retry_after_s,
        )
        if policy.action is Action.HOLD_TYPE:
            self._hold_type(batch, exc, policy, facts, done.settled)
        elif policy.action is Action.HOLD_ALL:
            self._hold_all(exc, policy, facts, done.settled)
        else:
            self._back_off(batch, exc, policy, facts)
        return policy.outcome_label()

    def _back_off(self, batch: Batch, exc: CdnError, policy: Policy, facts: WaitFacts) -> None:
        """Stop claiming the batch's type for the row's wait."""
        kind = batch.object_type
        delay = policy.wait_s(facts)
        self._store.quota.set_backoff(kind, delay)
        log.info("backing off type=%s for_s=%.2f after code=%s", kind, delay, exc.code)

    def _hold_all(self, exc: CdnError, policy: Policy, facts: WaitFacts, kept: int) -> None:
        """Hold every claim for the row's wait, which grows with the streak, after a
        credential error or an endpoint that does not answer; said once per streak (a worker
        meeting a dead endpoint every few seconds must not fill the log), then only at DEBUG
        until a call goes through."""
        failures = self._store.quota.count_hold_failure(exc.code)
        seconds = policy.wait_s(replace(facts, failures=failures))
        self._store.quota.set_auth_hold(exc.code, exc.message, seconds, failures)
        log.log(
            logging.ERROR if failures == 1 else logging.DEBUG,
            "%s code=%s paths_kept=%d all_work_holds_for_s=%.1f failures=%d: %s",
            exc.problem,
            exc.code,
            kept,
            seconds,
            failures,
            exc.remedy,
        )

    def _hold_type(
        self, batch: Batch, exc: CdnError, policy: Policy, facts: WaitFacts, kept: int
    ) -> None:
        """The provider says its quota of this type is spent: hold the type for the row's
        wait, which reads the provider's count (others may have spent the account's quota)."""
        kind = batch.object_type
        now = self._store.now()
        counted = self.provider_count.sync(now_too=True)
        left = self.provider_count.remaining(kind) if counted is not None else None
        hold_s = policy.wait_s(
            replace(facts, now=now, provider_left=left, batch_paths=len(batch.paths))
        )
        self._store.quota.set_hold(kind, hold_s, exc.code)
        log.warning(
            "provider quota exhausted type=%s paths_kept=%d holds_for_s=%d", kind, kept, hold_s
        )
