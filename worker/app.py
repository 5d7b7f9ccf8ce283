"""The Celery application factory: JSON only, late acks, redelivery of lost work."""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from types import FrameType
from typing import cast

import redis
from celery import Celery
from celery.signals import (
    after_setup_logger,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_shutting_down,
)
from kombu.transport import redis as kombu_redis

from cdn_refresh.constants import TASK_TICK, TASK_WEBHOOKS
from cdn_refresh.settings import Settings
from cdn_refresh.store import (
    QuotaLimitMismatchError,
    QuotaWindowMismatchError,
    RedisEvictsError,
    Store,
    broker_transport_options,
    broker_url,
    celery_names,
)
from cdn_refresh.store.liveness import OlderWorkerError, node_id
from worker import runtime
from worker.recovery import hand_back

# How long a stopping process may spend handing its batches back before it exits anyway
# (their owner's heartbeat then runs out, and the sweep takes them).
HAND_BACK_TIMEOUT_S = 5.0
# How long a stop request lives: longer than any warm shutdown, shorter than a pid's reuse.
STOP_REQUEST_TTL_S = 600.0

log = logging.getLogger("cdn_refresh.worker")


def queue_names(settings: Settings) -> tuple[str, str]:
    """(the queue of flushes and ticks, the queue of webhook runs). The webhook runs have
    their own, so that no flush ever waits in line behind one; a worker consumes both unless
    told otherwise (``-Q``: docs/http-api.md "Webhooks"). The work queue is the deployment's own
    (:func:`celery_names`); the webhook queue is named after it."""
    work = celery_names(settings.redis).queue
    return work, f"{work}.webhooks"


class _ReconnectSafeChannel(kombu_redis.Channel):
    """Kombu's Redis channel, but a lost broker connection cannot kill the worker.

    On a broker connection loss Celery 5.7 collects the connection, which detaches kombu's
    transport from it, and only then closes it. The old channel still talks to Redis after
    that: closing it restores the unacknowledged messages, and a task that ends after the
    reconnect acknowledges its message on it. Each needs a new Redis pool, whose parameters
    come from the detached transport: ``AttributeError``, which Celery does not expect, so
    "Unrecoverable error" and the worker stops consuming for good (its process may even stay
    up). As a connection error it is expected: logged, and the worker goes on. The messages
    stay in Redis's unacked set until the visibility timeout; no work depends on them anyway,
    since the tick finds pending paths in Redis.
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, object]:
        if self.connection.client is None:
            raise redis.ConnectionError("this broker connection was closed after a loss")
        params = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        return cast(dict[str, object], params)


class _ReconnectSafeSentinelChannel(kombu_redis.SentinelChannel):
    """The same guard for Redis behind Sentinel (``redis+sentinel://``)."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, object]:
        if self.connection.client is None:
            raise redis.ConnectionError("this broker connection was closed after a loss")
        params = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        return cast(dict[str, object], params)


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; the worker's tasks are registered on it."""
    runtime.configure(settings)
    # On kombu's own class: Celery picks the transport by the URL's scheme (redis, rediss).
    kombu_redis.Transport.Channel = _ReconnectSafeChannel
    kombu_redis.SentinelTransport.Channel = _ReconnectSafeSentinelChannel
    app = Celery("cdn_refresh", broker=broker_url(settings.redis))
    names = celery_names(settings.redis)
    work_queue, webhook_queue = queue_names(settings)
    app.conf.update(
        # KEY_PREFIX's own names, so that deployments sharing a Redis DB keep their tasks
        # apart (the default prefix keeps Celery's "celery": an upgrade keeps its queue).
        task_default_queue=work_queue,
        task_queues={work_queue: {}, webhook_queue: {}},  # each bound to its own name
        task_routes={TASK_WEBHOOKS: {"queue": webhook_queue}},
        control_exchange=names.control_exchange,
        event_exchange=names.event_exchange,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # A task is acknowledged after it ran, and requeued if its worker dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": 3600,
            **broker_transport_options(settings.redis),
        },
        worker_hijack_root_logger=False,
        beat_schedule={
            "cdn-refresh-tick": {
                "task": TASK_TICK,
                "schedule": settings.flush.interval_s,
                # A tick that waited two intervals is stale (later ones are queued behind it):
                # dropped, so that ticks never pile up behind a busy worker.
                "options": {"expires": 2 * settings.flush.interval_s},
            },
        },
        beat_schedule_filename=os.path.join(
            tempfile.gettempdir(), f"cdn-refresh-beat-{settings.redis.key_prefix}"
        ),
        imports=["worker.tasks"],
    )
    return app


# Celery's own line per task received, per task ended and per tick sent: 36 lines a minute
# from an idle worker. Below DEBUG they say nothing an operator needs (a task that fails is
# still logged, as an error); what a task did is logged by the task, one line per action.
ROUTINE_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


@after_setup_logger.connect
def _quiet_routine_lines(loglevel: int | str | None = None, **_: object) -> None:
    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    if isinstance(level, int) and level > logging.DEBUG:
        for name in ROUTINE_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


# The SIGTERM handler billiard installed in this pool process (it exits cleanly), and the
# process it was installed in (a handler inherited across a fork is not this process's).
_billiard_sigterm: list[object] = [None, 0]


@task_prerun.connect
def _hand_back_on_sigterm(**_: object) -> None:
    """Before this pool process's first task, put our SIGTERM handler in front of billiard's
    (billiard installs its own after every initializer Celery offers a hook in)."""
    if _billiard_sigterm[1] == os.getpid():
        return
    if threading.current_thread() is not threading.main_thread():
        return  # a thread pool: signals are the main process's business
    _billiard_sigterm[:] = [signal.getsignal(signal.SIGTERM), os.getpid()]
    signal.signal(signal.SIGTERM, _hand_back_then_die)


def _hand_back_then_die(signum: int, frame: FrameType | None) -> None:
    """SIGTERM in a pool process: no new call goes out, every batch this process holds goes
    back at once (with its reservation, if its call never went out), the heartbeat goes,
    and then billiard's own handler ends the process as it would have."""
    rt = runtime.current()
    if rt is not None:
        rt.flusher.stopping.set()
        # Another thread on its own client: the interrupted main thread may hold a lock of
        # the runtime's connection pool.
        worker = threading.Thread(target=_leave, args=(rt,), name="cdn-refresh-hand-back")
        worker.start()
        worker.join(HAND_BACK_TIMEOUT_S)
    previous = _billiard_sigterm[0]
    if callable(previous):
        signal.signal(signal.SIGTERM, previous)
        previous(signum, frame)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _leave(rt: runtime.Runtime) -> None:
    store = Store.from_settings(rt.settings)
    try:
        hand_back(store, rt.flusher.in_hand)
        store.liveness.leave(rt.heartbeat.owner)
    except redis.RedisError as exc:
        log.warning("could not hand back batches (%s); the sweep will take them", exc)
    finally:
        store.close()


@worker_shutting_down.connect
def _tell_the_pool_to_stop(**_: object) -> None:
    """The main process was told to stop (under Docker, SIGTERM reaches it alone): its pool
    processes claim no more, hand back what they claimed but did not send, and finish the
    call in flight, so that the warm shutdown ends in seconds, not after a long flush."""
    store = Store.from_settings(runtime.settings())
    try:
        store.liveness.request_stop(node_id(), STOP_REQUEST_TTL_S)
    except redis.RedisError as exc:
        log.warning("could not tell the pool processes to stop (%s)", exc)
    finally:
        store.close()


@worker_process_shutdown.connect
def _leave_at_exit(**_: object) -> None:
    """A pool process ends (a warm shutdown, a restart): nothing it holds is waited for."""
    rt = runtime.current()
    if rt is not None:
        rt.flusher.stopping.set()
        _leave(rt)
        rt.heartbeat.stop()


def missing_credentials(settings: Settings) -> list[str]:
    """The settings of the static credentials that are empty: a worker does not start
    without them (every call would meet a credential error and hold every path)."""
    missing = []
    if not settings.provider.access_key_id.strip():
        missing.append("CDN_REFRESH_ACCESS_KEY_ID")
    if not settings.provider.access_key_secret.get_secret_value().strip():
        missing.append("CDN_REFRESH_ACCESS_KEY_SECRET")
    return missing


@worker_init.connect
def _refuse_empty_credentials(**_: object) -> None:
    missing = missing_credentials(runtime.settings())
    if missing:
        log.critical(
            "%s empty: set the AccessKey of a RAM user allowed cdn:RefreshObjectCaches "
            "(see .env.example); the worker does not start without it",
            " and ".join(missing) + (" is" if len(missing) == 1 else " are"),
        )
        raise SystemExit(1)


@worker_init.connect
def _check_redis_at_start(**_: object) -> None:
    """Refuse to start beside a worker of an older release, on a quota window or limit other
    workers do not share, or on a Redis that may evict keys; warn when Redis would lose
    everything on a restart."""
    store = Store.from_settings(runtime.settings())
    try:
        store.liveness.check_no_older_worker()
        store.quota.check_window()
        store.quota.check_limits()
        store.eviction.check(fresh=True)
        warning = store.persistence_warning()
        if warning:
            log.warning("redis: %s", warning)
        indexed = store.batches.repair_coverage_index()
        if indexed:
            log.info("coverage index: added %d pending paths queued before it existed", indexed)
        digested = store.digesting.pass_once()
        if digested:
            log.info("waiters: moved %d keyed by their path to their digest", digested)
        respelled = store.respelling.pass_once()
        if respelled:
            log.info("respelled %d pending paths stored with dot segments", respelled)
    except (
        OlderWorkerError,
        QuotaWindowMismatchError,
        QuotaLimitMismatchError,
        RedisEvictsError,
    ) as exc:
        log.critical("%s", exc)
        # SystemExit, not an exception: Celery logs and ignores what a signal handler raises.
        raise SystemExit(1) from None
    except redis.RedisError as exc:
        # Redis down at start: the worker waits for it like for its broker; checked no more.
        log.warning("redis: could not check the quota window or persistence (%s)", exc)
    finally:
        store.close()
