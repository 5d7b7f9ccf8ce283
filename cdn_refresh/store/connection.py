"""One way to open Redis from settings: the URL carries password, TLS (``rediss://``), db.

The store's own client and Celery's broker URL are both made here, from the same setting.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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


def redis_from_settings(
    settings: Settings,
    *,
    retries: int = RETRY_ATTEMPTS,
    connect_timeout_s: float | None = None,
    socket_timeout_s: float | None = None,
) -> redis.Redis:
    """A client for ``CDN_REFRESH_REDIS_URL`` (``decode_responses`` on: keys are text).

    ``retries``, ``connect_timeout_s`` and ``socket_timeout_s``: less patience for a client
    that must answer fast (the HTTP API says 503 instead of keeping its caller waiting on an
    unreachable host, or on one that accepts connections and never answers). With a socket
    timeout, a timed-out command is not retried: it may have run, and a Redis that did not
    answer in that long is not going to answer the retry sooner.
    """
    # Only when given: redis-py has defaults of its own (no socket timeout), which the
    # workers keep.
    timeouts: dict[str, float] = {}
    if connect_timeout_s is not None:
        timeouts["socket_connect_timeout"] = connect_timeout_s
    retry = Retry(RETRY_BACKOFF, retries)
    retried: list[type[Exception]] = [redis.ConnectionError, redis.TimeoutError]
    if socket_timeout_s is not None:
        timeouts["socket_timeout"] = socket_timeout_s
        retry = Retry(RETRY_BACKOFF, retries, supported_errors=(redis.ConnectionError,))
        retried = [redis.ConnectionError]
    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=True,
        **timeouts,
        health_check_interval=30,
        socket_keepalive=True,
        retry=retry,
        retry_on_error=retried,
    )


def broker_url(settings: Settings) -> str:
    """The Redis URL as Celery's broker wants it.

    Kombu refuses a ``rediss://`` URL that does not say how to check the server's
    certificate; without one we ask for verification, as redis-py does by default. A
    ``?password=`` (and ``?username=``) in the query, which redis-py honours, crashes kombu
    (it passes the password twice): they move into the URL's user info, where both read them.
    """
    url = _credentials_in_userinfo(settings.redis_url.get_secret_value())
    if url.startswith("rediss://") and "ssl_cert_reqs=" not in url:
        url += ("&" if "?" in url else "?") + "ssl_cert_reqs=required"
    return url


def _credentials_in_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.query:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    found = {k.lower(): v for k, v in query if k.lower() in ("password", "username")}
    if not found:
        return url
    rest = [(k, v) for k, v in query if k.lower() not in ("password", "username")]
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user = quote(found["username"], safe="") if "username" in found else user
    # As redis-py reads it: a password in the user info wins over one in the query.
    if not password and "password" in found:
        password = quote(found["password"], safe="")
    netloc = f"{user}:{password}@{hostport}" if password else f"{user}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(rest), parts.fragment))
