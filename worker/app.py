"""The Celery application factory: JSON only, late acks, redelivery of lost work."""

from __future__ import annotations

import os
import tempfile

from celery import Celery
from celery.signals import worker_process_init

from cdn_refresh.constants import TASK_TICK
from cdn_refresh.redis_conn import broker_url
from cdn_refresh.settings import Settings
from worker import runtime


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; the worker's tasks are registered on it."""
    runtime.configure(settings)
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
            "cdn-refresh-tick": {"task": TASK_TICK, "schedule": settings.flush_interval_s},
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
