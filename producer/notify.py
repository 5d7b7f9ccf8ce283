"""Waking the workers after an enqueue or a replay."""

from __future__ import annotations

import logging
import threading

from cdn_refresh.constants import TASK_FLUSH
from cdn_refresh.store import Store, broker_transport_options, broker_url, celery_names

log = logging.getLogger("cdn_refresh.producer")

_CELERY_IMPORT = threading.Lock()


class FlushNotifier:
    """Wakes the workers after an enqueue: at once when the system was idle (leading
    edge), else one trailing flush per debounce interval (see ``request_wake_up``)."""

    def __init__(self, store: Store) -> None:
        # Celery's package builds its names on first access, and two threads doing so at
        # once can see it half-built ("cannot import name 'Celery'"): one at a time.
        with _CELERY_IMPORT:
            from celery import Celery

        self._store = store
        self._debounce_s = store.settings.flush.debounce_s
        self._celery = Celery(broker=broker_url(store.settings.redis), set_as_current=False)
        self._celery.conf.task_serializer = "json"
        self._celery.conf.broker_connection_retry_on_startup = True
        self._celery.conf.broker_transport_options = broker_transport_options(store.settings.redis)
        # The workers' queue (KEY_PREFIX's own, or Celery's "celery" for the default prefix).
        self._celery.conf.task_default_queue = celery_names(store.settings.redis).queue

    def close(self) -> None:
        """Release the broker connection pool."""
        self._celery.close()

    def __call__(self) -> None:
        try:
            delay_s = self._store.quota.request_wake_up(self._debounce_s)
            if delay_s is not None:
                # No countdown at all for the leading edge: a countdown of 0 still makes the
                # worker treat it as a scheduled task, a timer's tick later.
                self._celery.send_task(TASK_FLUSH, countdown=delay_s or None)
        except Exception as exc:
            # The enqueue succeeded: failing it now would make a caller retry what is already
            # queued. The workers' periodic tick finds the paths without this wake-up.
            log.warning("could not wake the workers (%s); the periodic tick will", exc)
