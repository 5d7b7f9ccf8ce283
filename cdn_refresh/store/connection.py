"""One way to open Redis from settings: the URL carries password, TLS (``rediss://``), db.

The store's own client and Celery's broker URL are both made here, from the same setting.
"""

from __future__ import annotations

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from cdn_refresh.settings import Settings

# A command that meets a dropped connection or a Redis restarting is retried for about
# 4 to 8 s in all before its error is raised. redis-py's own default retries do not apply to
# clients made by ``from_url``, which without this give up at once: a worker then abandons a
# batch it has already sent, and it goes out again when its lease runs out.
RETRY_ATTEMPTS = 10
RETRY_BACKOFF = EqualJitterBackoff(cap=1.0, base=0.05)


def redis_from_settings(settings: Settings) -> redis.Redis:
    """A client for ``CDN_REFRESH_REDIS_URL`` (``decode_responses`` on: keys are text)."""
    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        retry=Retry(RETRY_BACKOFF, RETRY_ATTEMPTS),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
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
