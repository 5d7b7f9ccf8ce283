"""What one worker process holds: settings, the store (one Redis client), one CDN client,
the flusher, and its heartbeat.

Built lazily in each process (after Celery forks its pool), never at import time: a socket
or connection pool made before a fork would be shared by the children.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cdn_refresh.constants import OBJECT_TYPES, ObjectType
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store.liveness import new_owner_id, node_id
from worker.client import CdnClient
from worker.heartbeat import Heartbeat
from worker.pipeline import Flusher
from worker.webhooks import WebhookSender


@dataclass
class Runtime:
    """The long-lived objects of one worker process."""

    settings: Settings
    store: Store
    client: CdnClient
    flusher: Flusher
    webhooks: WebhookSender
    heartbeat: Heartbeat


_settings: Settings | None = None
_runtime: Runtime | None = None


def configure(settings: Settings) -> None:
    """Set the settings this process's runtime will be built from."""
    global _settings
    _settings = settings
    reset()


def settings() -> Settings:
    """The settings given to :func:`configure`."""
    if _settings is None:
        raise RuntimeError("worker.runtime.configure(settings) was not called")
    return _settings


def reset() -> None:
    """Forget the runtime (after a fork); the next :func:`get_runtime` builds a fresh one.

    A heartbeat thread does not survive a fork: the child beats under its own name."""
    global _runtime
    _runtime = None


def current() -> Runtime | None:
    """This process's runtime if it was built (a signal handler must not build one)."""
    return _runtime


def get_runtime(on_more_work: Callable[[ObjectType], object] | None = None) -> Runtime:
    """This process's runtime, built on first use; its heartbeat starts before any claim."""
    global _runtime
    if _runtime is None:
        if _settings is None:
            raise RuntimeError("worker.runtime.configure(settings) was not called")
        store = Store.from_settings(_settings)
        cdn = CdnClient(_settings.provider)
        owner = new_owner_id()
        flusher = Flusher(store, cdn, _settings, on_more_work=on_more_work, owner=owner)
        webhooks = WebhookSender(store, _settings.webhooks)

        def wake() -> None:
            if on_more_work is not None:
                for kind in OBJECT_TYPES:
                    on_more_work(kind)

        heartbeat = Heartbeat(
            store,
            owner,
            in_hand=flusher.in_hand,
            on_reclaimed=wake,
            parent=node_id(os.getppid()),
            on_stop_requested=flusher.stopping.set,
        )
        heartbeat.start()
        _runtime = Runtime(_settings, store, cdn, flusher, webhooks, heartbeat)
    return _runtime
