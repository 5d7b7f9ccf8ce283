"""The Celery application factory: JSON only, late acks, redelivery of lost work."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import cast

import redis
from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu.transport import redis as kombu_redis

from cdn_refresh.constants import TASK_TICK
from cdn_refresh.settings import Settings
from cdn_refresh.store import QuotaWindowMismatchError, Store, broker_url
from worker import runtime

log = logging.getLogger("cdn_refresh.worker")


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


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; the worker's tasks are registered on it."""
    runtime.configure(settings)
    # On kombu's own class: Celery picks the transport by the URL's scheme (redis, rediss).
    kombu_redis.Transport.Channel = _ReconnectSafeChannel
    app = Celery("cdn_refresh", broker=broker_url(settings))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # A task is acknowledged after it ran, and requeued if its worker dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        beat_schedule={
            "cdn-refresh-tick": {
                "task": TASK_TICK,
                "schedule": settings.flush_interval_s,
                # A tick that waited two intervals is stale (later ones are queued behind it):
                # dropped, so that ticks never pile up behind a busy worker.
                "options": {"expires": 2 * settings.flush_interval_s},
            },
        },
        beat_schedule_filename=os.path.join(
            tempfile.gettempdir(), f"cdn-refresh-beat-{settings.key_prefix}"
        ),
        imports=["worker.tasks"],
    )
    return app


@worker_process_init.connect
def _fresh_runtime_after_fork(**_: object) -> None:
    # Connections made in the parent must not be shared with the forked pool processes.
    runtime.reset()


@worker_init.connect
def _check_redis_at_start(**_: object) -> None:
    """Refuse to start on a quota window other workers do not share; warn when Redis would
    lose everything on a restart."""
    store = Store.from_settings(runtime.settings())
    try:
        store.quota.check_window()
        warning = store.persistence_warning()
        if warning:
            log.warning("redis: %s", warning)
        indexed = store.batches.repair_coverage_index()
        if indexed:
            log.info("coverage index: added %d pending paths queued before it existed", indexed)
    except QuotaWindowMismatchError as exc:
        log.critical("%s", exc)
        # SystemExit, not an exception: Celery logs and ignores what a signal handler raises.
        raise SystemExit(1) from None
    except redis.RedisError as exc:
        # Redis down at start: the worker waits for it like for its broker; checked no more.
        log.warning("redis: could not check the quota window or persistence (%s)", exc)
    finally:
        store.close()
