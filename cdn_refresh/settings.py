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
    )

    # Connections
    redis_url: SecretStr = SecretStr(c.REDIS_URL)
    # An enqueue is acknowledged only once this many replicas have its writes (WAIT).
    redis_min_replicas_ack: int = Field(default=c.REDIS_MIN_REPLICAS_ACK, ge=0)
    redis_replica_ack_timeout_s: float = Field(default=c.REDIS_REPLICA_ACK_TIMEOUT_S, gt=0)
    # Accept and claim even when Redis may evict keys (README "Redis must not evict").
    allow_eviction: bool = c.ALLOW_EVICTION
    key_prefix: str = Field(default=c.KEY_PREFIX, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    endpoint: str = c.DEFAULT_ENDPOINT
    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")
    security_token: SecretStr | None = None
    http_connect_timeout_s: float = Field(default=c.HTTP_CONNECT_TIMEOUT_S, gt=0)
    http_read_timeout_s: float = Field(default=c.HTTP_READ_TIMEOUT_S, gt=0)

    # Provider limits per call
    urls_per_call: int = Field(default=c.URLS_PER_CALL, ge=1, le=c.URLS_PER_CALL)
    directories_per_call: int = Field(
        default=c.DIRECTORIES_PER_CALL, ge=1, le=c.DIRECTORIES_PER_CALL
    )
    max_domains_per_call: int = Field(
        default=c.MAX_DOMAINS_PER_CALL, ge=1, le=c.MAX_DOMAINS_PER_CALL
    )

    # Quota (a rolling window shared by every worker through Redis)
    url_daily_quota: int = Field(default=c.URL_DAILY_QUOTA, ge=0)
    directory_daily_quota: int = Field(default=c.DIRECTORY_DAILY_QUOTA, ge=0)
    # Shorter than QUOTA_WINDOW_MIN_S is allowed here for the demo and tests, never nan or inf.
    quota_window_s: float = Field(
        default=c.QUOTA_WINDOW_S, gt=0, le=c.QUOTA_WINDOW_MAX_S, allow_inf_nan=False
    )
    interactive_reserve: float = Field(default=c.INTERACTIVE_RESERVE, ge=0, le=1)

    # Getting more out of the quota (README "Getting more out of the quota")
    refresh_cooldown_s: float = Field(default=c.REFRESH_COOLDOWN_S, ge=0)
    promote: c.Promotion = c.Promotion.OFF
    promote_min_paths: int = Field(default=c.PROMOTE_MIN_PATHS, ge=2)
    promote_min_depth: int = Field(default=c.PROMOTE_MIN_DEPTH, ge=1)

    # The provider's own count and completion tracking (README "From pending to complete")
    quota_sync_s: float = Field(default=c.QUOTA_SYNC_S, ge=0)  # 0: never read it
    task_first_check_s: float = Field(default=c.TASK_FIRST_CHECK_S, ge=0)
    task_check_max_s: float = Field(default=c.TASK_CHECK_MAX_S, gt=0)
    task_timeout_s: float = Field(default=c.TASK_TIMEOUT_S, gt=0)

    # Retries and scheduling
    retry_base_delay_s: float = Field(default=c.RETRY_BASE_DELAY_S, ge=0)
    retry_max_delay_s: float = Field(default=c.RETRY_MAX_DELAY_S, ge=0)
    max_attempts: int = Field(default=c.MAX_ATTEMPTS, ge=1)
    batch_lease_s: float = Field(default=c.BATCH_LEASE_S, gt=0)
    flush_debounce_s: float = Field(default=c.FLUSH_DEBOUNCE_S, ge=0)
    flush_interval_s: float = Field(default=c.FLUSH_INTERVAL_S, gt=0)
    auth_hold_max_s: float = Field(default=c.AUTH_HOLD_MAX_S, gt=0)
    record_retention_days: float = Field(default=c.RECORD_RETENTION_DAYS, gt=0)

    # Input policy: empty means any domain.
    allowed_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # The HTTP API (`cdn-refresh api`) and the webhooks it registers. No token: no access.
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_max_body_bytes: int = Field(default=c.API_MAX_BODY_BYTES, ge=1024)
    api_max_paths: int = Field(default=c.API_MAX_PATHS, ge=1)
    api_max_body_bytes_in_flight: int = Field(default=c.API_MAX_BODY_BYTES_IN_FLIGHT, ge=1024)
    api_header_timeout_s: float = Field(default=c.API_HEADER_TIMEOUT_S, gt=0)
    api_body_timeout_s: float = Field(default=c.API_BODY_TIMEOUT_S, gt=0)
    api_body_max_s: float = Field(default=c.API_BODY_MAX_S, gt=0)
    webhook_secret: SecretStr = SecretStr("")
    # Hosts a callback_url may name; empty: callbacks are refused.
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_timeout_s: float = Field(default=c.WEBHOOK_TIMEOUT_S, gt=0)
    webhook_retry_base_delay_s: float = Field(default=c.WEBHOOK_RETRY_BASE_DELAY_S, gt=0)
    webhook_retry_max_delay_s: float = Field(default=c.WEBHOOK_RETRY_MAX_DELAY_S, gt=0)
    webhook_max_age_s: float = Field(default=c.WEBHOOK_MAX_AGE_S, gt=0)

    log_level: str = Field(default="INFO", pattern=r"^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

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
        """The rolling-window limit for one object type."""
        return self.url_daily_quota if object_type == "File" else self.directory_daily_quota

    def paths_per_call(self, object_type: c.ObjectType) -> int:
        """How many paths of one object type fit in one call."""
        return self.urls_per_call if object_type == "File" else self.directories_per_call

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
