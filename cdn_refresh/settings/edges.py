"""The groups of the edges: the HTTP API, the webhooks it registers, and the logs."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from cdn_refresh import constants as c
from cdn_refresh.settings.base import ENV_PREFIX, SettingsGroup


class ApiSettings(SettingsGroup):
    """The HTTP API (`cdn-refresh api`). No token: no access."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}API_")
    title = "HTTP API"

    tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Comma-separated bearer tokens of the HTTP API (secret; empty: every `/v1` request is
    refused). Tokens are not tenants: each sees every job.
    """
    max_body_bytes: int = Field(default=c.API_MAX_BODY_BYTES, ge=1024)
    """Largest body of one POST (else 413)."""
    max_paths: int = Field(default=c.API_MAX_PATHS, ge=1)
    """Most paths in one POST (else 413)."""
    max_body_bytes_in_flight: int = Field(default=c.API_MAX_BODY_BYTES_IN_FLIGHT, ge=1024)
    """Bytes of request bodies held at once, all requests together (else 503 `server_busy`)."""
    header_timeout_s: float = Field(default=c.API_HEADER_TIMEOUT_S, gt=0)
    """Time a client has to send its headers (else the connection is closed)."""
    body_timeout_s: float = Field(default=c.API_BODY_TIMEOUT_S, gt=0)
    """No byte of the body for this long: 408."""
    body_max_s: float = Field(default=c.API_BODY_MAX_S, gt=0)
    """The longest a whole body may take to arrive (else 408), however steadily it comes."""

    @field_validator("tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return [SecretStr(t.strip()) for t in value.split(",") if t.strip()]
        return value

    @model_validator(mode="after")
    def _check_body_bounds(self) -> ApiSettings:
        if self.max_body_bytes > self.max_body_bytes_in_flight:
            # Else a body within its own bound could never fit: every large POST a 503.
            raise ValueError("API_MAX_BODY_BYTES must not be above API_MAX_BODY_BYTES_IN_FLIGHT")
        return self


class WebhookSettings(SettingsGroup):
    """The webhooks the HTTP API registers: signing, allowed hosts, timeouts, retries."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}WEBHOOK_")
    title = "Webhooks"

    secret: SecretStr = SecretStr("")
    """HMAC-SHA256 key of webhook signatures, for callbacks without their own `callback_secret`
    (secret; empty: only those are accepted).
    """
    # Hosts a callback_url may name; empty: callbacks are refused.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Hosts a `callback_url` may name, `host[:port]` (no port: 80 and 443; `:*` any);
    `*.example.com` for subdomains; an internal address only when listed exactly; empty:
    callbacks are refused.
    """
    timeout_s: float = Field(default=c.WEBHOOK_TIMEOUT_S, gt=0)
    """Overall timeout of one webhook attempt (lookup, connect, send, answer)."""
    retry_base_delay_s: float = Field(default=c.WEBHOOK_RETRY_BASE_DELAY_S, gt=0)
    """First backoff between webhook attempts."""
    retry_max_delay_s: float = Field(default=c.WEBHOOK_RETRY_MAX_DELAY_S, gt=0)
    """Longest backoff between webhook attempts."""
    max_age_s: float = Field(default=c.WEBHOOK_MAX_AGE_S, gt=0)
    """A delivery no receiver took in this long goes to the webhook dead letters."""

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [h.strip().lower().rstrip(".") for h in value.split(",") if h.strip()]
        return value


class LogSettings(SettingsGroup):
    """The logs of the workers and the API."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}LOG_")
    title = "Logs"

    level: str = Field(default="INFO", pattern=r"^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    """Log level of the workers and the API."""
