"""The settings reference (``docs/settings.md``), made from the settings model itself: each
field's docstring, default and bounds, in groups. ``make docs`` writes it; a test compares the
file with :func:`render`, so the reference cannot drift from the code.

``python -m cdn_refresh.settings_reference`` prints it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from cdn_refresh.settings import ENV_PREFIX, Settings

# Each field in exactly one group (a test holds this), in the order a reader looks for them.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Redis",
        (
            "redis_url",
            "redis_min_replicas_ack",
            "redis_replica_ack_timeout_s",
            "allow_eviction",
            "key_prefix",
        ),
    ),
    (
        "Provider",
        (
            "endpoint",
            "access_key_id",
            "access_key_secret",
            "security_token",
            "http_connect_timeout_s",
            "http_read_timeout_s",
            "urls_per_call",
            "directories_per_call",
            "regexes_per_call",
            "ignore_params_per_call",
            "max_domains_per_call",
        ),
    ),
    (
        "Quota",
        (
            "url_daily_quota",
            "directory_daily_quota",
            "regex_daily_quota",
            "ignore_params_daily_quota",
            "quota_window_s",
            "interactive_reserve",
            "refresh_cooldown_s",
            "promote",
            "promote_min_paths",
            "promote_min_depth",
            "quota_sync_s",
        ),
    ),
    (
        "Flushing, retries and recovery",
        (
            "flush_debounce_s",
            "flush_interval_s",
            "retry_base_delay_s",
            "retry_max_delay_s",
            "max_attempts",
            "batch_lease_s",
            "auth_hold_max_s",
        ),
    ),
    (
        "Tracking and retention",
        ("task_first_check_s", "task_check_max_s", "task_timeout_s", "record_retention_days"),
    ),
    ("Input", ("allowed_domains",)),
    (
        "HTTP API",
        (
            "api_tokens",
            "api_max_body_bytes",
            "api_max_paths",
            "api_max_body_bytes_in_flight",
            "api_header_timeout_s",
            "api_body_timeout_s",
            "api_body_max_s",
        ),
    ),
    (
        "Webhooks",
        (
            "webhook_secret",
            "webhook_allowed_hosts",
            "webhook_timeout_s",
            "webhook_retry_base_delay_s",
            "webhook_retry_max_delay_s",
            "webhook_max_age_s",
        ),
    ),
    ("Logs", ("log_level",)),
)

_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def default_text(field: FieldInfo) -> str:
    """The default as an environment variable would spell it (empty when there is none)."""
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def bounds_text(field: FieldInfo) -> str:
    """The bounds the model enforces, as ``≥ 0, ≤ 1000``."""
    found = []
    for item in field.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                limit = getattr(item, attribute)
                found.append(f"{sign} {limit:g}" if isinstance(limit, float) else f"{sign} {limit}")
    return ", ".join(found)


def render() -> str:
    """``docs/settings.md``: every setting, grouped, with its default, bounds and meaning."""
    fields = Settings.model_fields
    out = [
        "# Settings reference",
        "",
        "<!-- Made by `make docs` from cdn_refresh/settings.py: edit the field's docstring there."
        " -->",
        "",
        f"Environment variables with the prefix `{ENV_PREFIX}` (or a `.env` file in the working "
        "directory). A bad value stops the program at start with a message naming the "
        "variable, never its value. Secrets are never logged or printed. `.env.example` lists "
        "every one with its default.",
    ]
    for title, names in GROUPS:
        out += ["", f"## {title}", "", "| Variable | Default | Bounds | Meaning |"]
        out.append("| --- | --- | --- | --- |")
        for name in names:
            field = fields[name]
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            out.append(
                f"| `{ENV_PREFIX}{name.upper()}` | {default_text(field)} | {bounds_text(field)} "
                f"| {meaning} |"
            )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
