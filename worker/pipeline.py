"""The flush loop: claim a batch, make the call, settle every path by the answer.

What each answer does (the error classes are in :mod:`worker.errors`):

- success: each path is recorded with its task IDs; the reservation is spent.
- bad path or call shape: split the batch in halves until the bad paths stand alone; those
  are dead-lettered with the provider's code, the rest go through.
- transient (InternalError, throttling, 5xx, network): the paths go back to pending with one
  more attempt counted, and the type backs off (exponential, full jitter, at least the
  provider's ``x-acs-retry-after``). At ``MAX_ATTEMPTS`` a path is dead-lettered.
  A definite answer returns the reservation; a call whose outcome is unknown keeps it.
- ``QuotaExceeded.Refresh``: the paths go back to pending; the type holds until the
  provider's reset at 00:00 UTC+8.
- credentials or account: the paths go back to pending, not failed; everything holds with an
  exponential backoff until an operator fixes it (``lookup`` and ``status`` show the error).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cdn_refresh.constants import PROVIDER_RESET_UTC_OFFSET_H, ObjectType
from cdn_refresh.settings import Settings
from worker.batches import Batch, BatchStore, Wait
from worker.client import CdnClient
from worker.errors import (
    CdnError,
    CredentialError,
    InvalidPathError,
    QuotaExhaustedError,
    TransientError,
)

log = logging.getLogger("cdn_refresh.worker")

# One flush claims at most this many batches before it hands over to a fresh task, so that
# one long drain does not starve the other types.
MAX_BATCHES_PER_FLUSH = 50
# Calls one batch may make while splitting to isolate bad paths (about 20 find one bad path
# among 1,000); past this the rest is retried later, with a backoff.
MAX_SPLIT_CALLS = 100


@dataclass
class FlushReport:
    """What one flush did, and why it stopped."""

    batches: int = 0
    submitted: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    wait: Wait | None = None
    more: bool = False
    calls: int = 0
    task_ids: list[str] = field(default_factory=list)
    top_attempt: int = 0
    batch_first_call: int = 0


def seconds_until_provider_reset(now: float) -> float:
    """Seconds until the provider's next quota reset, 00:00 in UTC+8."""
    zone_now = datetime.fromtimestamp(now, UTC) + timedelta(hours=PROVIDER_RESET_UTC_OFFSET_H)
    next_midnight = (zone_now + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return (next_midnight - zone_now).total_seconds()


def backoff_delay_s(attempt: int, settings: Settings, rng: random.Random) -> float:
    """Exponential backoff with full jitter for the given attempt (1-based)."""
    ceiling = min(settings.retry_max_delay_s, settings.retry_base_delay_s * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


class Flusher:
    """Drains pending paths into provider calls. Safe to run in many processes at once."""

    def __init__(
        self,
        store: BatchStore,
        client: CdnClient,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        on_more_work: Callable[[ObjectType], object] | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._rng = rng or random.Random()
        self._on_more_work = on_more_work

    def flush(
        self, object_type: ObjectType, max_batches: int = MAX_BATCHES_PER_FLUSH
    ) -> FlushReport:
        """Claim and send batches of one type until none is left, or a wait, or the cap."""
        report = FlushReport()
        while report.batches < max_batches:
            claimed = self._store.claim(object_type)
            if claimed is None:
                return report
            if isinstance(claimed, Wait):
                report.wait = claimed
                return report
            report.batches += 1
            if len(claimed.paths) >= self._settings.paths_per_call(object_type) and (
                self._on_more_work is not None
            ):
                # A full batch suggests more is pending: let idle workers join in.
                self._on_more_work(object_type)
            self.send(claimed, report)
        report.more = True
        return report

    def send(self, batch: Batch, report: FlushReport) -> None:
        """Make the call for a claimed batch and settle every one of its paths."""
        started = time.monotonic()
        calls_before, tasks_before = report.calls, len(report.task_ids)
        report.batch_first_call = calls_before
        report.top_attempt = 0
        outcome = "submitted"
        error: CdnError | None = None
        try:
            self._submit(batch, batch.paths, report)
        except CdnError as exc:
            error = exc
            outcome = self._settle_error(batch, exc, report)
        except Exception as exc:
            # A bug of ours: keep the paths (back to pending, one attempt counted) and the
            # reservation (we cannot know whether the call went out), then let Celery see it.
            self._store.settle(batch.id, batch.object_type, "retry", code=type(exc).__name__)
            outcome = "error"
            raise
        finally:
            # The one line per batch an operator reads: what went, where, how, how long.
            log.info(
                "batch id=%s type=%s paths=%d domains=%d attempt=%d calls=%d outcome=%s "
                "code=%s task_ids=%s duration_ms=%d",
                batch.id,
                batch.object_type,
                len(batch.paths),
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
        try:
            result = self._client.refresh_object_caches(list(paths), batch.object_type)
        except InvalidPathError as exc:
            if len(paths) == 1:
                done = self._store.settle(
                    batch.id,
                    batch.object_type,
                    "dead",
                    paths=paths,
                    code=exc.code,
                    message=exc.message,
                    return_quota=True,
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
                raise
            # Split to isolate the bad paths: the good ones of the batch must go through.
            self._store.extend_lease(batch.id)
            middle = len(paths) // 2
            self._submit(batch, paths[:middle], report)
            self._submit(batch, paths[middle:], report)
            return
        done = self._store.settle(
            batch.id,
            batch.object_type,
            "submitted",
            # The whole batch (no split so far): no paths means every path still in the batch,
            # and spares Redis a copy of all of them.
            paths=() if paths is batch.paths else paths,
            task_ids=result.task_ids,
            request_id=result.request_id,
        )
        if done.settled == 0:
            # The lease ran out before this answer (a stalled worker) and the paths went
            # back to pending: they may go out again, but this call's task IDs are kept.
            self._store.record_late(batch, paths, result.task_ids, result.request_id)
            log.warning(
                "late answer batch=%s paths=%d task_ids=%s: its lease had run out",
                batch.id,
                len(paths),
                ",".join(result.task_ids),
            )
        report.submitted += done.settled
        report.task_ids.extend(result.task_ids)
        report.top_attempt = max(report.top_attempt, done.top_attempts)
        log.debug(
            "submitted batch=%s paths=%d task_ids=%s request_id=%s",
            batch.id,
            len(paths),
            ",".join(result.task_ids),
            result.request_id,
        )

    def _settle_error(self, batch: Batch, exc: CdnError, report: FlushReport) -> str:
        """Settle what is left of a batch after an error; returns the outcome for the log."""
        kind = batch.object_type
        if isinstance(exc, QuotaExhaustedError | CredentialError):
            # Nothing is wrong with the paths: back to pending, no attempt counted, and the
            # reservation returns (the provider answered, so it did not take them).
            done = self._store.settle(
                batch.id,
                kind,
                "requeue",
                return_quota=True,
                code=exc.code,
                message=exc.message,
            )
            report.requeued += done.settled
        if isinstance(exc, QuotaExhaustedError):
            hold_s = seconds_until_provider_reset(self._store.now())
            self._store.set_hold(kind, hold_s, exc.code)
            log.warning(
                "provider quota exhausted type=%s paths_kept=%d holds_for_s=%d",
                kind,
                done.settled,
                hold_s,
            )
            return "provider_quota"
        if isinstance(exc, CredentialError):
            hold_s = self._store.set_auth_hold(
                exc.code,
                exc.message,
                self._settings.retry_base_delay_s,
                self._settings.auth_hold_max_s,
            )
            log.error(
                "credential error code=%s paths_kept=%d all_work_holds_for_s=%.1f: "
                "fix the access key, then `cdn-refresh dead-letter replay --all` resumes",
                exc.code,
                done.settled,
                hold_s,
            )
            return "credentials"
        # Transient, or a permanent answer that is not about one path: count an attempt.
        unknown = isinstance(exc, TransientError) and exc.outcome_unknown
        done = self._store.settle(
            batch.id,
            kind,
            "retry",
            return_quota=not unknown,
            code=exc.code,
            message=exc.message,
        )
        report.requeued += done.settled - done.dead_lettered
        report.dead_lettered += done.dead_lettered
        report.top_attempt = max(report.top_attempt, done.top_attempts)
        if done.dead_lettered:
            log.warning(
                "dead-lettered type=%s paths=%d code=%s after attempts=%d",
                kind,
                done.dead_lettered,
                exc.code,
                done.top_attempts,
            )
        delay = backoff_delay_s(max(1, done.top_attempts), self._settings, self._rng)
        if isinstance(exc, TransientError) and exc.retry_after_s:
            delay = max(delay, exc.retry_after_s)
        self._store.set_backoff(kind, delay)
        log.info("backing off type=%s for_s=%.2f after code=%s", kind, delay, exc.code)
        return "retry"

    def reclaim_expired(self) -> int:
        """Return the paths of batches whose worker died to pending; the reservation stays,
        since the call may have gone out. Returns how many paths came back."""
        back = 0
        for batch_id, kind in self._store.expired_batches():
            done = self._store.settle(
                batch_id,
                kind,
                "retry",
                code="WorkerLost",
                message="the batch's lease ran out before its answer was recorded",
                only_if_lease_expired=True,
            )
            if done.settled:
                log.warning(
                    "reclaimed batch id=%s type=%s paths=%d (lease ran out)",
                    batch_id,
                    kind,
                    done.settled,
                )
            back += done.settled
        return back
