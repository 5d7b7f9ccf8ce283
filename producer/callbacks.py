"""A job's callback: which URLs and secrets are allowed, registering one before its job
exists, and forgetting it when no job was opened."""

from __future__ import annotations

import contextlib

import redis

from cdn_refresh import callbacks
from cdn_refresh.settings import WebhookSettings
from cdn_refresh.store.webhooks import WebhookStore


class CallbackNotAllowedError(ValueError):
    """A callback_url (or its missing secret) this server does not call: nothing enqueued."""


def check_callback(url: str, own_secret: str | None, webhooks: WebhookSettings) -> None:
    """Raise :class:`CallbackNotAllowedError` unless ``url`` may be called back, signed with
    ``own_secret`` or the server's webhook secret."""
    problem = callbacks.url_problem(url, webhooks.allowed_hosts)
    if problem is None and not own_secret and not webhooks.secret.get_secret_value():
        problem = (
            "callbacks need a callback_secret, or CDN_REFRESH_WEBHOOK_SECRET set on the server"
        )
    if problem is not None:
        raise CallbackNotAllowedError(problem + ": nothing was enqueued")


def forget_unopened(webhooks: WebhookStore, job_id: str) -> None:
    """Drop the callback of a job that was never opened. A failure here is harmless: the
    workers bury a registration whose job never came."""
    with contextlib.suppress(redis.RedisError):
        webhooks.forget(job_id)
