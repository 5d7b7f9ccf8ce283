"""One way to open Redis from settings: the URL carries password, TLS (``rediss://``), db,
or the Sentinels to ask for the primary (``redis+sentinel://``, docs/operations.md "High
availability").

The store's own client and Celery's broker URL (with its transport options) are both made
here, from the same setting, and so are the names Celery uses in that Redis (its queue, its
control exchange, kombu's keys of unacknowledged tasks): derived from ``KEY_PREFIX``, so that
two deployments on one Redis DB never take each other's tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from cdn_refresh.constants import KEY_PREFIX
from cdn_refresh.sentinel import SentinelUrl, is_sentinel_url, parse_sentinel_url
from cdn_refresh.settings import RedisSettings

# A command that meets a dropped connection or a Redis restarting is retried for about
# 4 to 8 s in all before its error is raised. redis-py's own default retries do not apply to
# clients made by ``from_url``, which without this give up at once: a worker then abandons a
# batch it has already sent, and it goes out again when its lease runs out. Behind Sentinel
# each retry asks the Sentinels for the primary again, so it also rides out a failover.
RETRY_ATTEMPTS = 10
RETRY_BACKOFF = EqualJitterBackoff(cap=1.0, base=0.05)
# A Sentinel that does not answer within this is skipped for the next one.
SENTINEL_TIMEOUT_S = 1.0


def redis_from_settings(
    config: RedisSettings,
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
    options: dict[str, Any] = {
        "decode_responses": True,
        **timeouts,
        "health_check_interval": 30,
        "socket_keepalive": True,
        "retry": retry,
        "retry_on_error": retried,
    }
    url = config.url.get_secret_value()
    if is_sentinel_url(url):
        return _sentinel_client(parse_sentinel_url(url), options)
    return redis.Redis.from_url(url, **options)


def _sentinel_client(target: SentinelUrl, options: dict[str, Any]) -> redis.Redis:
    """The primary behind Sentinel: each new connection asks the Sentinels where it is, and
    one that meets a demoted primary (READONLY) drops and asks again."""
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        "socket_timeout": SENTINEL_TIMEOUT_S,
    }
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    # Typed in newer redis-py releases only: called through Any so that old and new both
    # type-check without an ignore comment that one of them would call unused.
    sentinel_class: Any = Sentinel
    sentinel = sentinel_class(list(target.hosts), sentinel_kwargs=sentinel_options)
    client = sentinel.master_for(
        target.master,
        redis_class=redis.Redis,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return cast(redis.Redis, client)


def broker_url(config: RedisSettings) -> str:
    """The Redis URL as Celery's broker wants it.

    Kombu refuses a ``rediss://`` URL that does not say how to check the server's
    certificate; without one we ask for verification, as redis-py does by default. A
    ``?password=`` (and ``?username=``) in the query, which redis-py honours, crashes kombu
    (it passes the password twice): they move into the URL's user info, where both read them.
    """
    raw = config.url.get_secret_value()
    if is_sentinel_url(raw):
        return _sentinel_broker_url(parse_sentinel_url(raw))
    url = _credentials_in_userinfo(raw)
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


@dataclass(frozen=True, slots=True)
class CeleryNames:
    """What Celery and kombu call things in Redis, for one deployment (``KEY_PREFIX``)."""

    queue: str  # the task queue (a Redis list of that name) and its exchange
    control_exchange: str  # remote control (`celery inspect`), a pub/sub channel
    event_exchange: str  # worker events, when enabled
    # kombu's keys of delivered but unacknowledged tasks (restored after a worker dies);
    # empty: kombu's own names.
    unacked_prefix: str


def celery_names(config: RedisSettings) -> CeleryNames:
    """Celery's names for this deployment. The default prefix keeps Celery's defaults, so that
    an upgraded deployment keeps its queue and the tasks in it; any other prefix names its own,
    so that two deployments sharing one Redis DB never consume each other's tasks."""
    prefix = config.key_prefix
    if prefix == KEY_PREFIX:
        return CeleryNames("celery", "celery", "celeryev", "")
    return CeleryNames(f"{prefix}.celery", f"{prefix}.celery", f"{prefix}.celeryev", f"{prefix}.")


def broker_transport_options(config: RedisSettings) -> dict[str, Any]:
    """What kombu needs besides the URL: behind Sentinel, the primary's name (and the
    Sentinels' own password); with a prefix of its own, this deployment's names of the
    unacknowledged-task keys; nothing otherwise."""
    options: dict[str, Any] = {}
    unacked = celery_names(config).unacked_prefix
    if unacked:
        for key in ("unacked_key", "unacked_index_key", "unacked_mutex_key"):
            options[key] = unacked + key.removesuffix("_key")
    raw = config.url.get_secret_value()
    if not is_sentinel_url(raw):
        return options
    target = parse_sentinel_url(raw)
    options["master_name"] = target.master
    if target.sentinel_password:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    return options


def _sentinel_broker_url(target: SentinelUrl) -> str:
    """kombu's form: ``sentinel://[user:password@]host:port/db`` per Sentinel, joined by
    ``;`` (kombu reads the password and db of the first)."""
    auth = ""
    if target.password:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    elif target.username:
        auth = f"{quote(target.username, safe='')}@"
    hosts = [f"[{h}]" if ":" in h else h for h, _ in target.hosts]
    return ";".join(
        f"sentinel://{auth}{host}:{port}/{target.db}"
        for host, (_, port) in zip(hosts, target.hosts, strict=True)
    )
