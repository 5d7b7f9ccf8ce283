"""What one worker process holds: settings, the store (one Redis client), one CDN client,
the flusher.

Built lazily in each process (after Celery forks its pool), never at import time: a socket
or connection pool made before a fork would be shared by the children.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cdn_refresh.constants import ObjectType
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from worker.client import CdnClient
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
    """Forget the runtime (after a fork); the next :func:`get_runtime` builds a fresh one."""
    global _runtime
    _runtime = None


def get_runtime(on_more_work: Callable[[ObjectType], object] | None = None) -> Runtime:
    """This process's runtime, built on first use."""
    global _runtime
    if _runtime is None:
        if _settings is None:
            raise RuntimeError("worker.runtime.configure(settings) was not called")
        store = Store.from_settings(_settings)
        cdn = CdnClient(_settings)
        flusher = Flusher(store, cdn, _settings, on_more_work=on_more_work)
        webhooks = WebhookSender(store, _settings)
        _runtime = Runtime(_settings, store, cdn, flusher, webhooks)
    return _runtime
