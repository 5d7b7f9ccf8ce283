"""The groups that say where things are: Redis, and the provider (endpoint, credentials, what
one call may hold, which domains a path may name)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from cdn_refresh import constants as c
from cdn_refresh.sentinel import is_sentinel_url, parse_sentinel_url
from cdn_refresh.settings.base import ENV_PREFIX, SettingsGroup


class RedisSettings(SettingsGroup):
    """Redis: where the queue, the quota and the records live (``CDN_REFRESH_REDIS_*``)."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}REDIS_")
    title = "Redis"

    url: SecretStr = SecretStr(c.REDIS_URL)
    """Redis for the queue, the quota, the records and Celery's broker (secret): `redis://`,
    `rediss://` (TLS), `unix://`, or `redis+sentinel://host:port,host:port/master/db` behind
    Sentinel. A password goes in the user info or `?password=`.
    """
    # An enqueue is acknowledged only once this many replicas have its writes (WAIT).
    min_replicas_ack: int = Field(default=c.REDIS_MIN_REPLICAS_ACK, ge=0)
    """Replicas that must confirm an enqueue's writes (`WAIT`) before it is acknowledged; 0: none.
    """
    replica_ack_timeout_s: float = Field(default=c.REDIS_REPLICA_ACK_TIMEOUT_S, gt=0)
    """How long an enqueue waits for those replicas."""
    # Accept and claim even when Redis may evict keys (docs/behaviour.md "Redis must not evict").
    allow_eviction: bool = Field(
        default=c.ALLOW_EVICTION, validation_alias="CDN_REFRESH_ALLOW_EVICTION"
    )
    """Accept and claim even when Redis's `maxmemory-policy` is not `noeviction` (an evicted key is
    a lost path: only for those who know why).
    """
    key_prefix: str = Field(
        default=c.KEY_PREFIX,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        validation_alias="CDN_REFRESH_KEY_PREFIX",
    )
    """Prefix (hash tag) of every key. Another value than the default also names the Celery queue
    (`<prefix>.celery`), control exchange and kombu's unacked keys, so two deployments can share
    one Redis DB; the default keeps Celery's `celery`, so an upgrade keeps its queue.
    """

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if is_sentinel_url(url):
            parse_sentinel_url(url)  # its ValueError names no secret
            return value
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss://, unix:// or redis+sentinel:// URL")
        try:
            port = parts.port  # raises for a port that is no number, or out of range
        except ValueError:
            port = 0
        if port == 0 and parts.scheme != "unix" and ":" in parts.netloc.rpartition("@")[2]:
            # Checked here, else redis-py's ValueError is a traceback at the first connection.
            raise ValueError("the port must be a number from 1 to 65535")
        return value

    def redacted_url(self) -> str:
        """The Redis URL with any password replaced, fit for logs and CLI output."""
        return redact_url(self.url.get_secret_value())


class ProviderSettings(SettingsGroup):
    """The provider: endpoint, credentials, timeouts, what one call may hold, allowed domains."""

    title = "Provider"

    endpoint: str = c.DEFAULT_ENDPOINT
    """The provider's endpoint."""
    access_key_id: str = ""
    """Access key ID (a worker refuses to start without one)."""
    access_key_secret: SecretStr = SecretStr("")
    """Access key secret (secret; a worker refuses to start without one)."""
    security_token: SecretStr | None = None
    """STS token, when the credentials are temporary (secret)."""
    http_connect_timeout_s: float = Field(default=c.HTTP_CONNECT_TIMEOUT_S, gt=0)
    """Connect timeout of a provider call (a call that never connected holds the work, spending no
    attempt).
    """
    http_read_timeout_s: float = Field(default=c.HTTP_READ_TIMEOUT_S, gt=0)
    """Read timeout of a provider call (retried with backoff)."""
    urls_per_call: int = Field(default=c.URLS_PER_CALL, ge=1, le=c.URLS_PER_CALL)
    """File paths in one call (the provider allows 1,000)."""
    directories_per_call: int = Field(
        default=c.DIRECTORIES_PER_CALL, ge=1, le=c.DIRECTORIES_PER_CALL
    )
    """Directory paths in one call (the provider allows 100)."""
    ignore_params_per_call: int = Field(
        default=c.IGNORE_PARAMS_PER_CALL, ge=1, le=c.IGNORE_PARAMS_PER_CALL
    )
    """IgnoreParams paths in one call (the provider allows 1,000)."""
    max_domains_per_call: int = Field(
        default=c.MAX_DOMAINS_PER_CALL, ge=1, le=c.MAX_DOMAINS_PER_CALL
    )
    """Distinct domains in one call (the provider allows 10)."""
    # Input policy: empty means any domain.
    allowed_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated hosts a path may name; `*.example.com` for subdomains; empty: any."""

    @field_validator("allowed_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [d.strip().lower().rstrip(".") for d in value.split(",") if d.strip()]
        return value

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")


def redact_url(url: str) -> str:
    """Replace the password (and a lone user token) in a URL with ``***``.

    Covers the user info (``redis://user:pw@host``) and a ``password=`` query parameter, which
    redis-py also honours (``unix:///tmp/redis.sock?password=pw``).
    """
    parts = urlsplit(url)
    # The raw netloc, not .hostname: that would lower-case the host and drop IPv6 brackets.
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and userinfo:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = _PASSWORD_IN_QUERY.sub(r"\g<1>***", parts.query)
    # Edit the text in place: urlunsplit would turn ``unix:///path`` into ``unix:/path``.
    if netloc != parts.netloc:
        url = url.replace("//" + parts.netloc, "//" + netloc, 1)
    if query != parts.query:
        url = url.replace("?" + parts.query, "?" + query, 1)
    return url


# ``password`` (redis-py) and ``sentinel_password`` (our Sentinel URLs, cdn_refresh/sentinel.py).
_PASSWORD_IN_QUERY = re.compile(r"((?:^|&)(?:sentinel_)?password=)[^&]*", re.IGNORECASE)
