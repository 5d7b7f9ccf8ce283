"""One way to open Redis from settings: the URL carries password, TLS (``rediss://``), db."""

from __future__ import annotations

from importlib import resources

import redis

from cdn_refresh.settings import Settings


def redis_from_settings(settings: Settings) -> redis.Redis:
    """A client for ``CDN_REFRESH_REDIS_URL`` (``decode_responses`` on: keys are text)."""
    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
    )


def broker_url(settings: Settings) -> str:
    """The Redis URL as Celery's broker wants it.

    Kombu refuses a ``rediss://`` URL that does not say how to check the server's
    certificate; without one we ask for verification, as redis-py does by default.
    """
    url = settings.redis_url.get_secret_value()
    if url.startswith("rediss://") and "ssl_cert_reqs=" not in url:
        url += ("&" if "?" in url else "?") + "ssl_cert_reqs=required"
    return url


def load_script(client: redis.Redis, package: str, name: str) -> redis.commands.core.Script:
    """Register a ``.lua`` file shipped in ``package/lua``; redis-py reloads it on NOSCRIPT."""
    source = resources.files(package).joinpath("lua", name).read_text(encoding="utf-8")
    return client.register_script(source)
