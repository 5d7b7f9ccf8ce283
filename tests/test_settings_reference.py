"""The settings reference is made from the settings models, so it cannot drift from the code; the
groups keep every environment variable's name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cdn_refresh.settings import Settings, SettingsGroup, env_names, groups, load_settings
from cdn_refresh.settings_reference import render

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"

# The variables of every deployment before settings were grouped (docs/settings.md on main):
# none may be renamed, dropped or added by accident.
VARIABLES = (
    "CDN_REFRESH_REDIS_URL",
    "CDN_REFRESH_REDIS_MIN_REPLICAS_ACK",
    "CDN_REFRESH_REDIS_REPLICA_ACK_TIMEOUT_S",
    "CDN_REFRESH_ALLOW_EVICTION",
    "CDN_REFRESH_KEY_PREFIX",
    "CDN_REFRESH_ENDPOINT",
    "CDN_REFRESH_ACCESS_KEY_ID",
    "CDN_REFRESH_ACCESS_KEY_SECRET",
    "CDN_REFRESH_SECURITY_TOKEN",
    "CDN_REFRESH_HTTP_CONNECT_TIMEOUT_S",
    "CDN_REFRESH_HTTP_READ_TIMEOUT_S",
    "CDN_REFRESH_URLS_PER_CALL",
    "CDN_REFRESH_DIRECTORIES_PER_CALL",
    "CDN_REFRESH_IGNORE_PARAMS_PER_CALL",
    "CDN_REFRESH_MAX_DOMAINS_PER_CALL",
    "CDN_REFRESH_URL_DAILY_QUOTA",
    "CDN_REFRESH_DIRECTORY_DAILY_QUOTA",
    "CDN_REFRESH_REGEX_DAILY_QUOTA",
    "CDN_REFRESH_IGNORE_PARAMS_DAILY_QUOTA",
    "CDN_REFRESH_QUOTA_WINDOW_S",
    "CDN_REFRESH_INTERACTIVE_RESERVE",
    "CDN_REFRESH_REFRESH_COOLDOWN_S",
    "CDN_REFRESH_PROMOTE",
    "CDN_REFRESH_PROMOTE_MIN_PATHS",
    "CDN_REFRESH_PROMOTE_MIN_DEPTH",
    "CDN_REFRESH_QUOTA_SYNC_S",
    "CDN_REFRESH_FLUSH_DEBOUNCE_S",
    "CDN_REFRESH_FLUSH_INTERVAL_S",
    "CDN_REFRESH_RETRY_BASE_DELAY_S",
    "CDN_REFRESH_RETRY_MAX_DELAY_S",
    "CDN_REFRESH_MAX_ATTEMPTS",
    "CDN_REFRESH_BATCH_LEASE_S",
    "CDN_REFRESH_AUTH_HOLD_MAX_S",
    "CDN_REFRESH_TASK_FIRST_CHECK_S",
    "CDN_REFRESH_TASK_CHECK_MAX_S",
    "CDN_REFRESH_TASK_TIMEOUT_S",
    "CDN_REFRESH_RECORD_RETENTION_DAYS",
    "CDN_REFRESH_ALLOWED_DOMAINS",
    "CDN_REFRESH_API_TOKENS",
    "CDN_REFRESH_API_MAX_BODY_BYTES",
    "CDN_REFRESH_API_MAX_PATHS",
    "CDN_REFRESH_API_MAX_BODY_BYTES_IN_FLIGHT",
    "CDN_REFRESH_API_HEADER_TIMEOUT_S",
    "CDN_REFRESH_API_BODY_TIMEOUT_S",
    "CDN_REFRESH_API_BODY_MAX_S",
    "CDN_REFRESH_WEBHOOK_SECRET",
    "CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS",
    "CDN_REFRESH_WEBHOOK_TIMEOUT_S",
    "CDN_REFRESH_WEBHOOK_RETRY_BASE_DELAY_S",
    "CDN_REFRESH_WEBHOOK_RETRY_MAX_DELAY_S",
    "CDN_REFRESH_WEBHOOK_MAX_AGE_S",
    "CDN_REFRESH_LOG_LEVEL",
)


def test_the_groups_read_exactly_the_variables_of_the_flat_settings() -> None:
    assert sorted(env_names()) == sorted(VARIABLES)


def test_no_two_fields_read_the_same_variable() -> None:
    every = Counter(name for model in groups().values() for name in model.env_names().values())
    assert [name for name, n in every.items() if n > 1] == []


def test_every_group_field_says_what_it_is_for() -> None:
    missing = [
        f"{group}.{name}"
        for group, model in groups().items()
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert missing == []


def test_every_group_is_a_settings_group_with_a_title() -> None:
    assert list(groups()) == list(Settings.model_fields)
    for model in groups().values():
        assert issubclass(model, SettingsGroup) and model.title


@pytest.mark.parametrize("variable", VARIABLES)
def test_each_variable_reaches_its_field(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Set in the environment, in `.env`, or as a keyword: the same field takes it."""
    group, field = env_names()[variable]
    model = groups()[group]
    default = model.model_fields[field].get_default(call_default_factory=True)
    value = _other_value(variable)
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    from_env = getattr(getattr(load_settings(_env_file=None), group), field)
    monkeypatch.delenv(variable)
    env_file = tmp_path / ".env"
    env_file.write_text(f"{variable}={value}\n", encoding="utf-8")
    from_file = getattr(getattr(load_settings(_env_file=env_file), group), field)
    keyword = variable.removeprefix("CDN_REFRESH_").lower()
    from_keyword = getattr(getattr(load_settings(_env_file=None, **{keyword: value}), group), field)
    assert _plain(from_env) == _plain(from_file) == _plain(from_keyword) != _plain(default)


def _other_value(variable: str) -> str:
    """A valid value other than the default, as the environment would spell it."""
    special = {
        "CDN_REFRESH_REDIS_URL": "redis://other:6380/1",
        "CDN_REFRESH_ENDPOINT": "http://127.0.0.1:9",
        "CDN_REFRESH_PROMOTE": "auto",
        "CDN_REFRESH_LOG_LEVEL": "DEBUG",
        "CDN_REFRESH_ALLOW_EVICTION": "true",
        "CDN_REFRESH_KEY_PREFIX": "other",
        "CDN_REFRESH_ALLOWED_DOMAINS": "a.example",
        "CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS": "hooks.example",
        "CDN_REFRESH_URLS_PER_CALL": "7",
        "CDN_REFRESH_DIRECTORIES_PER_CALL": "7",
        "CDN_REFRESH_MAX_DOMAINS_PER_CALL": "7",
        "CDN_REFRESH_INTERACTIVE_RESERVE": "0.5",
        "CDN_REFRESH_API_MAX_BODY_BYTES": "2048",
        "CDN_REFRESH_API_MAX_BODY_BYTES_IN_FLIGHT": str(1 << 30),
        "CDN_REFRESH_RETRY_BASE_DELAY_S": "0",
    }
    if variable in special:
        return special[variable]
    if variable.endswith(("_SECRET", "_TOKEN", "_TOKENS", "_KEY_ID")):
        return "some-value"
    return "7"


def _plain(value: object) -> object:
    got = getattr(value, "get_secret_value", None)
    if callable(got):
        return got()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


def test_the_reference_in_docs_is_the_one_the_models_make() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), "run `make docs`"


def test_the_reference_shows_defaults_and_bounds_but_no_secret_value() -> None:
    text = render()
    assert "| `CDN_REFRESH_URLS_PER_CALL` | `urls_per_call` | `1000` | ≥ 1, ≤ 1000 |" in text
    assert "| `CDN_REFRESH_REFRESH_COOLDOWN_S` | `refresh_cooldown_s` | `60` | ≥ 0 |" in text
    for secret in ("ACCESS_KEY_SECRET", "WEBHOOK_SECRET", "API_TOKENS"):
        row = next(line for line in text.splitlines() if f"CDN_REFRESH_{secret}`" in line)
        assert row.split("|")[3].strip() == "", row
