"""What the emulator is told: credentials, limits, quotas, domain sets and faults.

One flat model so that a test, the CLI and ``POST /_emulator/config`` all change it the same way
(by field name). Defaults are the provider's, from :mod:`cdn_refresh.constants`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cdn_refresh import constants as c

#: The only action faults apply to unless ``fault_actions`` says otherwise.
REFRESH_ACTION = "RefreshObjectCaches"
#: In ``fault_actions``, stands for every action.
ALL_ACTIONS = "*"


def _rate() -> Any:
    """A probability field, 0 (never) to 1 (always)."""
    return Field(default=0.0, ge=0.0, le=1.0)


class EmulatorConfig(BaseModel):
    """Every knob of the emulator; change it at run time with ``EmulatorState.configure``."""

    # Unknown keys are refused so that a typo in a test or an admin call does not pass silently.
    model_config = ConfigDict(extra="forbid", frozen=True)

    # AccessKeyId -> AccessKeySecret. Kept out of repr: the secrets must never be printed.
    credentials: dict[str, str] = Field(
        default_factory=lambda: {"testid": "testsecret"}, repr=False
    )

    # Daily quotas, counted per path (per tag for cache tags), reset at 00:00 UTC+8: one per
    # counter of emulator.quota.COUNTERS. Refresh and preload count apart. Regex 20 and
    # IgnoreParams 100 are the provider's current defaults; it documents no cache-tag quota,
    # so 100 is ours.
    url_quota: int = Field(default=c.URL_DAILY_QUOTA, ge=0)
    dir_quota: int = Field(default=c.DIRECTORY_DAILY_QUOTA, ge=0)
    regex_quota: int = Field(default=c.REGEX_DAILY_QUOTA, ge=0)
    ignore_params_quota: int = Field(default=c.IGNORE_PARAMS_DAILY_QUOTA, ge=0)
    tag_quota: int = Field(default=100, ge=0)
    preload_quota: int = Field(default=1000, ge=0)
    reset_utc_offset_h: int = Field(default=c.PROVIDER_RESET_UTC_OFFSET_H, ge=-12, le=14)
    # Units another user of the same account (the console, another tool) has spent: they count
    # as used on every provider day while set, so both DescribeRefreshQuota and the quota check
    # of RefreshObjectCaches see them. Static rather than per day: a test sets the share it
    # wants, and 0 clears it.
    url_spent_elsewhere: int = Field(default=0, ge=0)
    dir_spent_elsewhere: int = Field(default=0, ge=0)
    regex_spent_elsewhere: int = Field(default=0, ge=0)
    ignore_params_spent_elsewhere: int = Field(default=0, ge=0)
    tag_spent_elsewhere: int = Field(default=0, ge=0)
    preload_spent_elsewhere: int = Field(default=0, ge=0)

    # Per-call limits.
    urls_per_call: int = Field(default=c.URLS_PER_CALL, ge=1)
    directories_per_call: int = Field(default=c.DIRECTORIES_PER_CALL, ge=1)
    regexes_per_call: int = Field(default=c.REGEXES_PER_CALL, ge=1)
    # The provider documents no figure of its own for IgnoreParams: treated as URLs.
    ignore_params_per_call: int = Field(default=c.IGNORE_PARAMS_PER_CALL, ge=1)
    domains_per_call: int = Field(default=c.MAX_DOMAINS_PER_CALL, ge=1)
    preload_per_call: int = Field(default=100, ge=1)
    # URLs of unfinished preload tasks an account may have queued; past it, 403
    # PreloadQueueFull (100,000 on current pages, 50,000 on 2024 ones).
    preload_queue_limit: int = Field(default=100_000, ge=1)
    max_path_length: int = Field(default=c.MAX_PATH_LENGTH, ge=1)
    task_ids_per_query: int = Field(default=10, ge=1)

    # Signature checks.
    timestamp_window_s: float = Field(default=c.TIMESTAMP_WINDOW_S, gt=0)

    # Domains. ``known_domains`` empty means every domain not listed elsewhere is served.
    known_domains: frozenset[str] = frozenset()
    unknown_domains: frozenset[str] = frozenset()
    offline_domains: frozenset[str] = frozenset()

    # Tasks turn from Refreshing to Complete (or Failed) this long after creation.
    complete_after_s: float = Field(default=0.5, ge=0)
    # Share of tasks that end Failed instead of Complete; each task's fate is drawn from
    # (seed, task ID) when it is created, so a run repeats and the fault sequence is untouched.
    task_failure_rate: float = _rate()

    # Per-action call rate limits (calls per second, per account), answered 503 Throttling
    # when passed. Empty by default: off. The provider's documented ones are
    # DescribeRefreshTasks 5 (older pages say 10), DescribeRefreshTaskById 30,
    # RefreshObjectCaches 50.
    calls_per_s: dict[str, int] = Field(default_factory=dict)

    # Faults, drawn from random.Random(seed) so that a test sees the same sequence each run.
    seed: int | None = None
    internal_error_rate: float = _rate()
    throttle_rate: float = _rate()
    throttle_retry_after_ms: int = Field(default=1000, ge=1)
    drop_rate: float = _rate()
    drop_after_accept_rate: float = _rate()
    latency_s: float = Field(default=0.0, ge=0)
    fault_actions: frozenset[str] = frozenset({REFRESH_ACTION})

    @field_validator("known_domains", "unknown_domains", "offline_domains", mode="after")
    @classmethod
    def _lower_domains(cls, value: frozenset[str]) -> frozenset[str]:
        # Host names compare without case, as DNS does.
        return frozenset(d.strip().lower() for d in value if d.strip())

    @field_validator("calls_per_s", mode="after")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        # A limit of 0 would refuse every call: that is a fault rate of 1, not a rate limit.
        if any(limit < 1 for limit in value.values()):
            raise ValueError("calls_per_s limits must be >= 1")
        return value

    @model_validator(mode="after")
    def _early_faults_fit(self) -> EmulatorConfig:
        # The early faults split one draw into bands; together they cannot pass 1.
        if self.drop_rate + self.internal_error_rate + self.throttle_rate > 1:
            raise ValueError("drop_rate + internal_error_rate + throttle_rate must be <= 1")
        return self

    def updated(self, **changes: Any) -> EmulatorConfig:
        """A validated copy with ``changes`` applied (``model_copy`` would skip validation)."""
        return EmulatorConfig.model_validate({**self.model_dump(), **changes})

    def faults_apply_to(self, action: str) -> bool:
        """Whether fault injection covers ``action``."""
        return ALL_ACTIONS in self.fault_actions or action in self.fault_actions

    def public_view(self) -> dict[str, Any]:
        """The settings as JSON, with credentials reduced to their key IDs."""
        view = self.model_dump(mode="json", exclude={"credentials"})
        view["access_key_ids"] = sorted(self.credentials)
        for name in ("known_domains", "unknown_domains", "offline_domains", "fault_actions"):
            view[name] = sorted(view[name])
        return view
