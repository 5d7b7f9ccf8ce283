"""Settings: defaults, the CDN_REFRESH_ environment, .env files, errors that name the variable,
and secrets that never show."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from cdn_refresh import constants as c
from cdn_refresh.operations import OPERATIONS, ObjectType, daily_quota, paths_per_call
from cdn_refresh.sentinel import parse_sentinel_url
from cdn_refresh.settings import ENV_PREFIX, Settings, SettingsError, load_settings, redact_url

SECRET = "Sk-Very-Secret-4711"
REDIS_PASSWORD = "Redis-Pw-0815"
REDIS_URL_WITH_PASSWORD = f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No CDN_REFRESH_ variable from the outer environment, and no stray .env in the cwd."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    yield workdir


def assert_hidden(settings: Settings, *secrets: str) -> None:
    for text in (repr(settings), str(settings), settings.model_dump_json(), f"{settings}"):
        for secret in secrets:
            assert secret not in text


# --- defaults ----------------------------------------------------------------------------


def test_defaults_come_from_constants() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.redis.url.get_secret_value() == c.REDIS_URL
    assert settings.redis.key_prefix == c.KEY_PREFIX
    assert settings.provider.endpoint == c.DEFAULT_ENDPOINT == "https://cdn.aliyuncs.com"
    assert settings.provider.access_key_id == ""
    assert settings.provider.access_key_secret.get_secret_value() == ""
    assert settings.provider.security_token is None
    assert settings.provider.urls_per_call == 1000
    assert settings.provider.directories_per_call == 100
    assert settings.provider.max_domains_per_call == 10
    assert settings.quota.url_daily_quota == c.URL_DAILY_QUOTA
    assert settings.quota.directory_daily_quota == c.DIRECTORY_DAILY_QUOTA
    assert settings.provider.http_connect_timeout_s == c.HTTP_CONNECT_TIMEOUT_S
    assert settings.provider.http_read_timeout_s == c.HTTP_READ_TIMEOUT_S
    assert settings.retry.max_attempts == c.MAX_ATTEMPTS
    assert settings.provider.allowed_domains == []
    assert settings.log.level == "INFO"


def test_daily_quota_and_paths_per_call_follow_object_type() -> None:
    settings = Settings(_env_file=None, url_daily_quota=7, directory_daily_quota=3)  # type: ignore[call-arg]
    assert daily_quota(settings, ObjectType.FILE) == 7
    assert daily_quota(settings, ObjectType.DIRECTORY) == 3
    assert paths_per_call(settings, OPERATIONS[ObjectType.FILE]) == 1000
    assert paths_per_call(settings, OPERATIONS[ObjectType.DIRECTORY]) == 100


def test_a_setting_is_found_by_its_variable_as_by_its_group() -> None:
    settings = Settings(_env_file=None, quota_window_s=120, key_prefix="shop")  # type: ignore[call-arg]
    assert settings.value_of("QUOTA_WINDOW_S") == settings.quota.window_s == 120
    assert settings.value_of("key_prefix") == settings.redis.key_prefix == "shop"
    assert Settings.field_of("URLS_PER_CALL").default == 1000


def test_an_unknown_keyword_is_refused_not_ignored() -> None:
    with pytest.raises(TypeError, match="url_daily_quotas"):
        Settings(_env_file=None, url_daily_quotas=7)  # type: ignore[call-arg]


# --- environment and .env ----------------------------------------------------------------


def test_environment_variables_with_prefix_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_ACCESS_KEY_ID", "envid")
    monkeypatch.setenv("CDN_REFRESH_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("CDN_REFRESH_URL_DAILY_QUOTA", "10000")
    monkeypatch.setenv("CDN_REFRESH_ENDPOINT", "http://127.0.0.1:8080/")
    monkeypatch.setenv("CDN_REFRESH_REDIS_URL", REDIS_URL_WITH_PASSWORD)
    monkeypatch.setenv("CDN_REFRESH_SECURITY_TOKEN", "sts")
    monkeypatch.setenv("CDN_REFRESH_HTTP_READ_TIMEOUT_S", "2.5")
    for settings in (Settings(_env_file=None), load_settings()):  # type: ignore[call-arg]
        assert settings.provider.access_key_id == "envid"
        assert settings.provider.access_key_secret.get_secret_value() == SECRET
        assert settings.quota.url_daily_quota == 10000
        assert settings.provider.endpoint == "http://127.0.0.1:8080"  # trailing slash dropped
        assert settings.redis.url.get_secret_value() == REDIS_URL_WITH_PASSWORD
        assert isinstance(settings.provider.security_token, SecretStr)
        assert settings.provider.security_token.get_secret_value() == "sts"
        assert settings.provider.http_read_timeout_s == 2.5


def test_variables_without_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URL_DAILY_QUOTA", "5")
    monkeypatch.setenv("ACCESS_KEY_ID", "plain")
    settings = load_settings()
    assert settings.quota.url_daily_quota == c.URL_DAILY_QUOTA
    assert settings.provider.access_key_id == ""


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_MAX_ATTEMPTS", "3")
    assert load_settings(max_attempts=5).retry.max_attempts == 5


def test_dotenv_file_in_working_directory_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "CDN_REFRESH_ACCESS_KEY_ID=fromfile\n"
        f"CDN_REFRESH_ACCESS_KEY_SECRET={SECRET}\n"
        "CDN_REFRESH_DIRECTORY_DAILY_QUOTA=42\n"
        "UNRELATED=1\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.provider.access_key_id == "fromfile"
    assert settings.provider.access_key_secret.get_secret_value() == SECRET
    assert settings.quota.directory_daily_quota == 42


def test_environment_wins_over_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("CDN_REFRESH_ACCESS_KEY_ID=fromfile\n", encoding="utf-8")
    monkeypatch.setenv("CDN_REFRESH_ACCESS_KEY_ID", "fromenv")
    assert load_settings().provider.access_key_id == "fromenv"


def test_dotenv_is_skipped_when_env_file_is_none(clean_env: Path) -> None:
    (clean_env / ".env").write_text("CDN_REFRESH_ACCESS_KEY_ID=fromfile\n", encoding="utf-8")
    assert Settings(_env_file=None).provider.access_key_id == ""  # type: ignore[call-arg]


# --- allowed domains ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com", ["example.com"]),
        ("example.com,cdn.example.org", ["example.com", "cdn.example.org"]),
        (" Example.COM. , ,cdn.example.org,, ", ["example.com", "cdn.example.org"]),
        ("", []),
    ],
)
def test_allowed_domains_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("CDN_REFRESH_ALLOWED_DOMAINS", raw)
    assert load_settings().provider.allowed_domains == expected


def test_allowed_domains_accept_a_list_override() -> None:
    assert load_settings(allowed_domains=["a.com"]).provider.allowed_domains == ["a.com"]


# --- bad values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CDN_REFRESH_URL_DAILY_QUOTA", "abc"),
        ("CDN_REFRESH_URL_DAILY_QUOTA", "-1"),
        ("CDN_REFRESH_ENDPOINT", "ftp://x"),
        ("CDN_REFRESH_ENDPOINT", "https://"),
        ("CDN_REFRESH_REDIS_URL", "http://x"),
        ("CDN_REFRESH_URLS_PER_CALL", "1001"),
        ("CDN_REFRESH_DIRECTORIES_PER_CALL", "0"),
        ("CDN_REFRESH_INTERACTIVE_RESERVE", "1.5"),
        ("CDN_REFRESH_HTTP_CONNECT_TIMEOUT_S", "0"),
        ("CDN_REFRESH_KEY_PREFIX", "has space"),
        ("CDN_REFRESH_LOG_LEVEL", "LOUD"),
        ("CDN_REFRESH_QUOTA_WINDOW_S", "nan"),
        ("CDN_REFRESH_QUOTA_WINDOW_S", "inf"),
        ("CDN_REFRESH_QUOTA_WINDOW_S", "604801"),
    ],
)
def test_bad_value_raises_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert isinstance(caught.value, ValueError)
    # No chained pydantic error whose text would echo the input.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_settings_error_lists_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_URL_DAILY_QUOTA", "abc")
    monkeypatch.setenv("CDN_REFRESH_ENDPOINT", "ftp://x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "CDN_REFRESH_URL_DAILY_QUOTA" in str(caught.value)
    assert "CDN_REFRESH_ENDPOINT" in str(caught.value)


def test_inverted_retry_delays_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_RETRY_BASE_DELAY_S", "5")
    monkeypatch.setenv("CDN_REFRESH_RETRY_MAX_DELAY_S", "1")
    with pytest.raises(SettingsError, match="RETRY_MAX_DELAY_S"):
        load_settings()


def test_a_body_bound_over_the_in_flight_bound_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDN_REFRESH_API_MAX_BODY_BYTES", str(20 * 1024 * 1024))
    monkeypatch.setenv("CDN_REFRESH_API_MAX_BODY_BYTES_IN_FLIGHT", str(16 * 1024 * 1024))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "API_MAX_BODY_BYTES must not be above API_MAX_BODY_BYTES_IN_FLIGHT" in str(caught.value)


def test_settings_error_never_shows_secrets_or_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("CDN_REFRESH_SECURITY_TOKEN", "Sts-Token-Secret")
    monkeypatch.setenv("CDN_REFRESH_REDIS_URL", REDIS_URL_WITH_PASSWORD)
    monkeypatch.setenv("CDN_REFRESH_URL_DAILY_QUOTA", "abc-not-a-number")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    for text in (str(caught.value), repr(caught.value)):
        assert "CDN_REFRESH_URL_DAILY_QUOTA" in text
        assert SECRET not in text
        assert REDIS_PASSWORD not in text
        assert "Sts-Token-Secret" not in text
        assert "abc-not-a-number" not in text


def test_bad_redis_url_error_hides_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_REDIS_URL", f"http://:{REDIS_PASSWORD}@x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "CDN_REFRESH_REDIS_URL" in str(caught.value)
    assert REDIS_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis+sentinel://:{REDIS_PASSWORD}@h:notaport/m",
        f"redis+sentinel://:{REDIS_PASSWORD}@h1:26379,h2:99999/m",
        f"redis://:{REDIS_PASSWORD}@h:notaport/0",
        f"redis://:{REDIS_PASSWORD}@h:99999/0",
        f"rediss://:{REDIS_PASSWORD}@h:0/0",
    ],
)
def test_a_bad_redis_port_is_one_line_naming_the_variable_in_every_command(url: str) -> None:
    env = {**os.environ, "CDN_REFRESH_REDIS_URL": url}
    commands = (
        [sys.executable, "-m", "cdn_refresh", "quota"],
        [sys.executable, "-m", "celery", "-A", "worker", "worker"],
    )
    root = Path(__file__).resolve().parent.parent
    for argv in commands:
        done = subprocess.run(
            argv, env=env, cwd=root, capture_output=True, text=True, timeout=60, check=False
        )
        output = (done.stdout + done.stderr).strip()
        assert done.returncode != 0
        assert len(output.splitlines()) == 1, output
        assert "CDN_REFRESH_REDIS_URL" in output and "port" in output
        assert REDIS_PASSWORD not in output


# --- secrets stay hidden -----------------------------------------------------------------


def test_secrets_never_show_in_repr_str_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDN_REFRESH_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("CDN_REFRESH_SECURITY_TOKEN", "Sts-Token-Secret")
    monkeypatch.setenv("CDN_REFRESH_REDIS_URL", REDIS_URL_WITH_PASSWORD)
    settings = load_settings()
    # Loaded for real, so the assertions below are not vacuous.
    assert settings.provider.access_key_secret.get_secret_value() == SECRET
    assert REDIS_PASSWORD in settings.redis.url.get_secret_value()
    assert_hidden(settings, SECRET, REDIS_PASSWORD, "Sts-Token-Secret")
    assert REDIS_PASSWORD not in str(settings.model_dump())


def test_a_validation_error_from_the_model_shows_no_value_either() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, redis_url=f"http://:{REDIS_PASSWORD}@x", api_tokens=[SECRET, 3])  # type: ignore[call-arg]
    assert [e["loc"][0] for e in caught.value.errors()] == ["redis", "api"]
    assert REDIS_PASSWORD not in str(caught.value) and SECRET not in str(caught.value)


def test_redacted_redis_url_hides_password_but_keeps_host() -> None:
    settings = load_settings(redis_url=REDIS_URL_WITH_PASSWORD)
    assert settings.redis.redacted_url() == "redis://:***@redis.internal:6379/0"


# --- redact_url --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host", "redis://user:***@host"),
        ("redis://user:pw@host:6379/2", "redis://user:***@host:6379/2"),
        ("rediss://:pw@cache.example.com:6380/1", "rediss://:***@cache.example.com:6380/1"),
        ("rediss://default:pw@Cache.Example.com/0", "rediss://default:***@Cache.Example.com/0"),
        (
            "rediss://:pw@host:6380/0?ssl_cert_reqs=none",
            "rediss://:***@host:6380/0?ssl_cert_reqs=none",
        ),
        ("redis://:p@ss:w%40rd@host/0", "redis://:***@host/0"),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://token@host:6379", "redis://***@host:6379"),
        ("unix:///tmp/redis.sock?db=0&password=pw", "unix:///tmp/redis.sock?db=0&password=***"),
        ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("unix:///tmp/redis.sock?db=0", "unix:///tmp/redis.sock?db=0"),
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    redacted = redact_url(url)
    assert redacted == expected
    assert "pw" not in redacted.replace("password=", "")


def test_a_sentinel_url_shows_neither_password() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url="redis+sentinel://:data-pw@h1:26379,h2:26379/mymaster/1?sentinel_password=s+pw",
    )
    shown = settings.redis.redacted_url()
    assert "data-pw" not in shown and "s+pw" not in shown and "h2:26379" in shown
    parsed = parse_sentinel_url(settings.redis.url.get_secret_value())
    # A "+" in a password is a plus, not a space; and no repr shows either password.
    assert parsed.sentinel_password == "s+pw"
    assert "data-pw" not in repr(parsed) and "s+pw" not in repr(parsed)
