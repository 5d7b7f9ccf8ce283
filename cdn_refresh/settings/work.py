"""The groups that say how the work goes: the quota, flushing and claiming, retries, and
tracking calls to completion (with how long records are kept)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cdn_refresh import constants as c
from cdn_refresh.settings.base import ENV_PREFIX, SettingsGroup


class QuotaSettings(SettingsGroup):
    """The quota, a rolling window shared by every worker through Redis, and what gets more out
    of it (docs/behaviour.md "Getting more out of the quota")."""

    title = "Quota"

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
    window_s: float = Field(
        default=c.QUOTA_WINDOW_S,
        gt=0,
        le=c.QUOTA_WINDOW_MAX_S,
        allow_inf_nan=False,
        validation_alias="CDN_REFRESH_QUOTA_WINDOW_S",
    )
    """The rolling window. Stored by the first claim; change it for every worker with `cdn-refresh
    quota --set-window S` (60 s to 7 days).
    """
    interactive_reserve: float = Field(default=c.INTERACTIVE_RESERVE, ge=0, le=1)
    """Fraction of the quota that bulk work must leave unspent for interactive paths."""
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
    # The provider's own count (docs/behaviour.md, "From pending to complete"); 0: never read it.
    sync_s: float = Field(default=c.QUOTA_SYNC_S, ge=0, validation_alias="CDN_REFRESH_QUOTA_SYNC_S")
    """Read the provider's own count (`DescribeRefreshQuota`) at most this often, and at once after
    a `QuotaExceeded`; 0: never.
    """


class FlushSettings(SettingsGroup):
    """Flushing (when the queue is drained) and claiming (how long a claimed batch is held)."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}FLUSH_")
    title = "Flushing and claiming"

    debounce_s: float = Field(default=c.FLUSH_DEBOUNCE_S, ge=0)
    """Enqueues within this long ask for one flush, not one each."""
    interval_s: float = Field(default=c.FLUSH_INTERVAL_S, gt=0)
    """The periodic tick, the safety net of flushing."""
    batch_lease_s: float = Field(
        default=c.BATCH_LEASE_S, gt=0, validation_alias="CDN_REFRESH_BATCH_LEASE_S"
    )
    """How long a claimed batch is its worker's before anyone may reclaim it (a dead worker's
    batches are reclaimed sooner, through its heartbeat).
    """


class RetrySettings(SettingsGroup):
    """Retries: backoff after transient errors, attempts, and holds after credential errors."""

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}RETRY_")
    title = "Retries"

    base_delay_s: float = Field(default=c.RETRY_BASE_DELAY_S, ge=0)
    """First backoff after a transient error (doubling, jittered)."""
    max_delay_s: float = Field(default=c.RETRY_MAX_DELAY_S, ge=0)
    """Longest backoff after transient errors."""
    max_attempts: int = Field(
        default=c.MAX_ATTEMPTS, ge=1, validation_alias="CDN_REFRESH_MAX_ATTEMPTS"
    )
    """Attempts before a path is dead-lettered with its last error."""
    auth_hold_max_s: float = Field(
        default=c.AUTH_HOLD_MAX_S, gt=0, validation_alias="CDN_REFRESH_AUTH_HOLD_MAX_S"
    )
    """Longest hold after credential errors or an endpoint that does not answer (the hold doubles
    up to it).
    """

    @model_validator(mode="after")
    def _check_delays(self) -> RetrySettings:
        if self.max_delay_s < self.base_delay_s:
            raise ValueError("RETRY_MAX_DELAY_S must not be below RETRY_BASE_DELAY_S")
        return self


class TrackingSettings(SettingsGroup):
    """Tracking a call's tasks to completion (docs/behaviour.md, "From pending to complete"), and
    how long records are kept."""

    title = "Tracking and retention"

    task_first_check_s: float = Field(default=c.TASK_FIRST_CHECK_S, ge=0)
    """First check of a call's tasks after it was sent; also the shortest gap between checks."""
    task_check_max_s: float = Field(default=c.TASK_CHECK_MAX_S, gt=0)
    """Longest gap between two checks of a call's tasks."""
    task_timeout_s: float = Field(default=c.TASK_TIMEOUT_S, gt=0)
    """A task still running after this long is logged and left as submitted (tracking gives up on
    it).
    """
    record_retention_days: float = Field(default=c.RECORD_RETENTION_DAYS, gt=0)
    """How long submissions, finished jobs and task outcomes are kept."""
