"""Settings from the environment (prefix ``CDN_REFRESH_``) and an optional ``.env`` file.

Built by :func:`load_settings` and passed into constructors; nothing reads the environment at
import time. Secrets (the access key secret, the STS token, the Redis URL, which may hold a
password) are ``SecretStr`` so that no repr, log line or exception shows them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cdn_refresh import constants as c
from cdn_refresh import operations
from cdn_refresh.sentinel import is_sentinel_url, parse_sentinel_url

ENV_PREFIX = "CDN_REFRESH_"


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


class Settings(BaseSettings):
    """Every knob of cdn-refresh. Field ``x`` is read from ``CDN_REFRESH_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Each field's docstring is its description: docs/settings.md is made from them.
        use_attribute_docstrings=True,
    )

    # Connections
    redis_url: SecretStr = SecretStr(c.REDIS_URL)
    """Redis for the queue, the quota, the records and Celery's broker (secret): `redis://`,
    `rediss://` (TLS), `unix://`, or `redis+sentinel://host:port,host:port/master/db` behind
    Sentinel. A password goes in the user info or `?password=`.
    """
    # An enqueue is acknowledged only once this many replicas have its writes (WAIT).
    redis_min_replicas_ack: int = Field(default=c.REDIS_MIN_REPLICAS_ACK, ge=0)
    """Replicas that must confirm an enqueue's writes (`WAIT`) before it is acknowledged; 0: none.
    """
    redis_replica_ack_timeout_s: float = Field(default=c.REDIS_REPLICA_ACK_TIMEOUT_S, gt=0)
    """How long an enqueue waits for those replicas."""
    # Accept and claim even when Redis may evict keys (docs/behaviour.md "Redis must not evict").
    allow_eviction: bool = c.ALLOW_EVICTION
    """Accept and claim even when Redis's `maxmemory-policy` is not `noeviction` (an evicted key is
    a lost path: only for those who know why).
    """
    key_prefix: str = Field(default=c.KEY_PREFIX, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Prefix (hash tag) of every key. Another value than the default also names the Celery queue
    (`<prefix>.celery`), control exchange and kombu's unacked keys, so two deployments can share
    one Redis DB; the default keeps Celery's `celery`, so an upgrade keeps its queue.
    """
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

    # Provider limits per call
    urls_per_call: int = Field(default=c.URLS_PER_CALL, ge=1, le=c.URLS_PER_CALL)
    """File paths in one call (the provider allows 1,000)."""
    directories_per_call: int = Field(
        default=c.DIRECTORIES_PER_CALL, ge=1, le=c.DIRECTORIES_PER_CALL
    )
    """Directory paths in one call (the provider allows 100)."""
    regexes_per_call: int = Field(default=c.REGEXES_PER_CALL, ge=1, le=c.REGEXES_PER_CALL)
    """Regex paths in one call (the provider allows 1)."""
    ignore_params_per_call: int = Field(
        default=c.IGNORE_PARAMS_PER_CALL, ge=1, le=c.IGNORE_PARAMS_PER_CALL
    )
    """IgnoreParams paths in one call (the provider allows 1,000)."""
    max_domains_per_call: int = Field(
        default=c.MAX_DOMAINS_PER_CALL, ge=1, le=c.MAX_DOMAINS_PER_CALL
    )
    """Distinct domains in one call (the provider allows 10)."""

    # Quota (a rolling window shared by every worker through Redis)
    url_daily_quota: int = Field(default=c.URL_DAILY_QUOTA, ge=0)
    """File paths per rolling window, shared by every worker. Stored by the first claim; change it
    for every worker with `cdn-refresh quota --set-url-quota N`.
    """
    directory_daily_quota: int = Field(default=c.DIRECTORY_DAILY_QUOTA, ge=0)
    """Directory paths per rolling window. Stored by the first claim; change it with `cdn-refresh
    quota --set-directory-quota N`.
    """
    regex_daily_quota: int = Field(default=c.REGEX_DAILY_QUOTA, ge=0)
    """Regex paths per rolling window. Stored by the first claim; change it with `cdn-refresh
    quota --set-regex-quota N`.
    """
    ignore_params_daily_quota: int = Field(default=c.IGNORE_PARAMS_DAILY_QUOTA, ge=0)
    """IgnoreParams paths (URLs whatever their query) per rolling window. Stored by the first
    claim; change it with `cdn-refresh quota --set-ignore-params-quota N`.
    """
    # Shorter than QUOTA_WINDOW_MIN_S is allowed here for the demo and tests, never nan or inf.
    quota_window_s: float = Field(
        default=c.QUOTA_WINDOW_S, gt=0, le=c.QUOTA_WINDOW_MAX_S, allow_inf_nan=False
    )
    """The rolling window. Stored by the first claim; change it for every worker with `cdn-refresh
    quota --set-window S` (60 s to 7 days).
    """
    interactive_reserve: float = Field(default=c.INTERACTIVE_RESERVE, ge=0, le=1)
    """Fraction of the quota that bulk work must leave unspent for interactive paths."""

    # Getting more out of the quota (docs/behaviour.md "Getting more out of the quota")
    refresh_cooldown_s: float = Field(default=c.REFRESH_COOLDOWN_S, ge=0)
    """A path submitted less than this long ago waits this long before it goes again, so that a hot
    path costs a bounded number of units (0: off).
    """
    promote: c.Promotion = c.Promotion.OFF
    """`auto`: send Directories for many pending Files when the File quota is short; `off`: never.
    """
    promote_min_paths: int = Field(default=c.PROMOTE_MIN_PATHS, ge=2)
    """Fewest pending Files a promoted Directory must cover."""
    promote_min_depth: int = Field(default=c.PROMOTE_MIN_DEPTH, ge=1)
    """Fewest path segments below the host of a promoted Directory."""

    # The provider's own count and completion tracking (docs/behaviour.md, "From pending to
    # complete")
    quota_sync_s: float = Field(default=c.QUOTA_SYNC_S, ge=0)  # 0: never read it
    """Read the provider's own count (`DescribeRefreshQuota`) at most this often, and at once after
    a `QuotaExceeded`; 0: never.
    """
    task_first_check_s: float = Field(default=c.TASK_FIRST_CHECK_S, ge=0)
    """First check of a call's tasks after it was sent; also the shortest gap between checks."""
    task_check_max_s: float = Field(default=c.TASK_CHECK_MAX_S, gt=0)
    """Longest gap between two checks of a call's tasks."""
    task_timeout_s: float = Field(default=c.TASK_TIMEOUT_S, gt=0)
    """A task still running after this long is logged and left as submitted (tracking gives up on
    it).
    """

    # Retries and scheduling
    retry_base_delay_s: float = Field(default=c.RETRY_BASE_DELAY_S, ge=0)
    """First backoff after a transient error (doubling, jittered)."""
    retry_max_delay_s: float = Field(default=c.RETRY_MAX_DELAY_S, ge=0)
    """Longest backoff after transient errors."""
    max_attempts: int = Field(default=c.MAX_ATTEMPTS, ge=1)
    """Attempts before a path is dead-lettered with its last error."""
    batch_lease_s: float = Field(default=c.BATCH_LEASE_S, gt=0)
    """How long a claimed batch is its worker's before anyone may reclaim it (a dead worker's
    batches are reclaimed sooner, through its heartbeat).
    """
    flush_debounce_s: float = Field(default=c.FLUSH_DEBOUNCE_S, ge=0)
    """Enqueues within this long ask for one flush, not one each."""
    flush_interval_s: float = Field(default=c.FLUSH_INTERVAL_S, gt=0)
    """The periodic tick, the safety net of flushing."""
    auth_hold_max_s: float = Field(default=c.AUTH_HOLD_MAX_S, gt=0)
    """Longest hold after credential errors or an endpoint that does not answer (the hold doubles
    up to it).
    """
    record_retention_days: float = Field(default=c.RECORD_RETENTION_DAYS, gt=0)
    """How long submissions, finished jobs and task outcomes are kept."""

    # Input policy: empty means any domain.
    allowed_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated hosts a path may name; `*.example.com` for subdomains; empty: any."""

    # The HTTP API (`cdn-refresh api`) and the webhooks it registers. No token: no access.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Comma-separated bearer tokens of the HTTP API (secret; empty: every `/v1` request is
    refused). Tokens are not tenants: each sees every job.
    """
    api_max_body_bytes: int = Field(default=c.API_MAX_BODY_BYTES, ge=1024)
    """Largest body of one POST (else 413)."""
    api_max_paths: int = Field(default=c.API_MAX_PATHS, ge=1)
    """Most paths in one POST (else 413)."""
    api_max_body_bytes_in_flight: int = Field(default=c.API_MAX_BODY_BYTES_IN_FLIGHT, ge=1024)
    """Bytes of request bodies held at once, all requests together (else 503 `server_busy`)."""
    api_header_timeout_s: float = Field(default=c.API_HEADER_TIMEOUT_S, gt=0)
    """Time a client has to send its headers (else the connection is closed)."""
    api_body_timeout_s: float = Field(default=c.API_BODY_TIMEOUT_S, gt=0)
    """No byte of the body for this long: 408."""
    api_body_max_s: float = Field(default=c.API_BODY_MAX_S, gt=0)
    """The longest a whole body may take to arrive (else 408), however steadily it comes."""
    webhook_secret: SecretStr = SecretStr("")
    """HMAC-SHA256 key of webhook signatures, for callbacks without their own `callback_secret`
    (secret; empty: only those are accepted).
    """
    # Hosts a callback_url may name; empty: callbacks are refused.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Hosts a `callback_url` may name, `host[:port]` (no port: 80 and 443; `:*` any);
    `*.example.com` for subdomains; an internal address only when listed exactly; empty:
    callbacks are refused.
    """
    webhook_timeout_s: float = Field(default=c.WEBHOOK_TIMEOUT_S, gt=0)
    """Overall timeout of one webhook attempt (lookup, connect, send, answer)."""
    webhook_retry_base_delay_s: float = Field(default=c.WEBHOOK_RETRY_BASE_DELAY_S, gt=0)
    """First backoff between webhook attempts."""
    webhook_retry_max_delay_s: float = Field(default=c.WEBHOOK_RETRY_MAX_DELAY_S, gt=0)
    """Longest backoff between webhook attempts."""
    webhook_max_age_s: float = Field(default=c.WEBHOOK_MAX_AGE_S, gt=0)
    """A delivery no receiver took in this long goes to the webhook dead letters."""

    log_level: str = Field(default="INFO", pattern=r"^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    """Log level of the workers and the API."""

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return [SecretStr(t.strip()) for t in value.split(",") if t.strip()]
        return value

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip().lower().rstrip(".") for h in value.split(",") if h.strip()]
        return value

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

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
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

    @model_validator(mode="after")
    def _check_delays(self) -> Settings:
        if self.retry_max_delay_s < self.retry_base_delay_s:
            raise ValueError("RETRY_MAX_DELAY_S must not be below RETRY_BASE_DELAY_S")
        if self.api_max_body_bytes > self.api_max_body_bytes_in_flight:
            # Else a body within its own bound could never fit: every large POST a 503.
            raise ValueError("API_MAX_BODY_BYTES must not be above API_MAX_BODY_BYTES_IN_FLIGHT")
        return self

    def daily_quota(self, object_type: c.ObjectType) -> int:
        """The rolling-window limit for one object type (its row's quota setting)."""
        return operations.daily_quota(self, c.ObjectType(object_type))

    def paths_per_call(self, object_type: c.ObjectType) -> int:
        """How many paths of one object type fit in one call (its row's per-call setting)."""
        return operations.paths_per_call(self, operations.OPERATIONS[c.ObjectType(object_type)])

    def redacted_redis_url(self) -> str:
        """The Redis URL with any password replaced, fit for logs and CLI output."""
        return redact_url(self.redis_url.get_secret_value())


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


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, ``.env`` and ``overrides``.

    Raises :class:`SettingsError` whose message names each bad variable, never its value.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            name = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
