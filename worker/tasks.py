"""The Celery tasks. Each is safe to run twice: all state lives in Redis, changed by
idempotent scripts, so a message redelivered after a worker died does no harm."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import redis
from celery import shared_task
from celery.signals import worker_process_init

from cdn_refresh.constants import (
    OBJECT_TYPES,
    TASK_FLUSH,
    TASK_TICK,
    TASK_WEBHOOKS,
    WEBHOOK_RUN_BUDGET_S,
    ObjectType,
)
from cdn_refresh.settings import Settings
from cdn_refresh.store.records import Wait, WaitReason
from worker.recovery import reclaim_expired, reclaim_orphaned
from worker.runtime import Runtime, get_runtime, reset

log = logging.getLogger("cdn_refresh.worker")

# The shortest gap between two flushes scheduled for one type by the workers themselves.
MIN_RESCHEDULE_S = 0.05


def _runtime() -> Runtime:
    return get_runtime(on_more_work=request_flush)


@worker_process_init.connect
def _start_runtime_after_fork(**_: object) -> None:
    """A forked pool process builds its own runtime at once, so its heartbeat beats and sweeps
    from the start, not from its first task: a pool that never ran a task must still reclaim
    the batch of a process that died, when the scheduler (its tick) died with it."""
    # Connections made in the parent must not be shared with the forked pool processes.
    reset()
    try:
        _runtime()
    except Exception:
        log.exception("could not build the runtime at start; the first task builds it")


def request_flush(object_type: ObjectType, delay_s: float = 0.0) -> bool:
    """Schedule one flush of ``object_type`` unless one is already scheduled."""
    rt = _runtime()
    delay_s = max(MIN_RESCHEDULE_S, delay_s)
    if not rt.store.quota.schedule_flush(object_type, delay_s):
        return False
    flush.apply_async(args=[object_type.value], countdown=delay_s)
    return True


@shared_task(name=TASK_FLUSH, ignore_result=True)
def flush(object_type: str | None = None) -> dict[str, Any]:
    """Drain pending paths of one type (or both) into provider calls."""
    rt = _runtime()
    summary: dict[str, Any] = {}
    for kind in [ObjectType(object_type)] if object_type else list(OBJECT_TYPES):
        report = rt.flusher.flush(kind)
        summary[kind.value] = {"batches": report.batches, "submitted": report.submitted}
        if report.more:
            request_flush(kind)
        elif report.wait is not None:
            summary[kind.value]["wait"] = report.wait.reason.value
            _notice_wait(rt, kind, report.wait)
            # Far-off waits (quota refills hours away) are left to the periodic tick: a
            # countdown that long would outlive the broker's visibility timeout.
            # A wait of 0 s means "unknown" (a limit of 0, say): leave it to the tick too.
            if 0 < report.wait.seconds <= rt.settings.flush.interval_s:
                request_flush(kind, report.wait.seconds)
    return summary


def _notice_wait(rt: Runtime, kind: ObjectType, wait: Wait) -> None:
    """Log a quota wait once per wait, not at every flush and tick that meets it."""
    if wait.reason not in (WaitReason.QUOTA, WaitReason.RESERVE):
        return  # holds and backoffs are logged where they start
    if rt.store.quota.first_notice(kind, wait.reason, wait.seconds):
        usage = rt.store.quota.usage(kind)
        log.warning(
            "quota window full type=%s reason=%s used=%d limit=%d pending=%d frees_in_s=%.0f",
            kind,
            wait.reason,
            usage.used,
            usage.limit,
            rt.store.quota.pending_count(kind),
            wait.seconds,
        )


@shared_task(name=TASK_TICK, ignore_result=True)
def tick() -> dict[str, Any]:
    """The periodic safety net: reclaim dead workers' batches (their owner's heartbeat is
    gone, or their lease ran out), trim old records, flush, read the provider's count, poll
    the tasks of submitted calls; and schedule the webhook task when a callback or a delivery
    waits (it sends; the tick never waits on a receiver)."""
    rt = _runtime()
    orphans = reclaim_orphaned(rt.store) if rt.heartbeat.steady() else 0
    reclaimed = orphans + reclaim_expired(rt.store)
    trimmed = rt.store.retention.trim()
    digested = rt.store.digesting.pass_once()  # one GET once the upgrade is over
    if digested:
        log.info("waiters: moved %d keyed by their path to their digest", digested)
    respelled = rt.store.respelling.pass_once()  # one GET once no older spelling is left
    if respelled:
        log.info("respelled %d pending paths stored with dot segments", respelled)
    pending = rt.store.quota.types_pending()
    for kind in pending:
        request_flush(kind)
    rt.flusher.provider_count.sync()
    _notice_window_change(rt)
    # Back to pending (a Failed task) needs a flush too: the next tick's types_pending sees it.
    tracked = rt.flusher.tracker.poll()
    scheduled = rt.store.webhooks.has_work() and request_webhooks()
    return {
        "reclaimed": reclaimed,
        "trimmed": trimmed,
        "pending_types": [k.value for k in pending],
        "webhooks_scheduled": scheduled,
        "tracked": {"calls": tracked.calls, "complete": tracked.complete},
    }


def _notice_window_change(rt: Runtime) -> None:
    """Log a new quota window once for the deployment (the first tick that sees it)."""
    change = rt.store.quota.window_change()
    if change is not None:
        previous, new = change
        log.warning(
            "quota window changed: %g s -> %g s (quota --set-window); every worker counts "
            "the new one now; restart each with CDN_REFRESH_QUOTA_WINDOW_S=%g",
            previous,
            new,
            new,
        )


def webhook_mark_s(settings: Settings) -> float:
    """How long one webhook run may take: its budget, and the last round's timeout."""
    return WEBHOOK_RUN_BUDGET_S + 2 * settings.webhooks.timeout_s + 5.0


def request_webhooks() -> bool:
    """Schedule one run of the webhook task unless one is scheduled or running."""
    rt = _runtime()
    mark_s = webhook_mark_s(rt.settings)
    if not rt.store.webhooks.schedule_delivery(mark_s):
        return False
    # A message that waited longer than a run may take is stale: a later tick sends another.
    webhooks.apply_async(expires=mark_s)
    return True


@shared_task(name=TASK_WEBHOOKS, ignore_result=True)
def webhooks() -> dict[str, bool]:
    """Start a run that fires the callbacks of jobs that ended and delivers what is due,
    within a budget, on a thread of its own: the task returns at once, so that the pool
    process is free for flushes while receivers take their time (a worker of one process
    too). Nothing is lost if the process dies mid-run: a delivery is leased, and its lease
    runs out; the run's mark frees itself after its TTL."""
    rt = _runtime()
    run = threading.Thread(target=_webhook_run, args=(rt,), name="cdn-refresh-webhooks")
    run.daemon = True  # a stopping process does not wait on a receiver
    run.start()
    return {"started": True}


def _webhook_run(rt: Runtime) -> None:
    try:
        done = rt.webhooks.tick()
        log.debug("webhook run: %s", done)
    except Exception:
        log.exception("webhook run failed; the next tick schedules another")
    finally:
        # The next tick may schedule the next run at once (else the mark's TTL frees it).
        with contextlib.suppress(redis.RedisError):
            rt.store.webhooks.delivery_ended()
