"""Settings from the environment (prefix ``CDN_REFRESH_``) and an optional ``.env`` file, in
groups: ``settings.redis.url`` is read from ``CDN_REFRESH_REDIS_URL``, as it always was.

Built by :func:`load_settings` and passed into constructors, a component that needs one group
taking that group; nothing reads the environment at import time. Secrets (the access key secret,
the STS token, the Redis URL, which may hold a password, API tokens, the webhook key) are
``SecretStr`` so that no repr, log line or exception shows them.

Why each group is its own ``BaseSettings``: pydantic-settings reads a nested model only from
``PARENT__CHILD`` variables (``env_nested_delimiter``) or from one JSON variable, which would
rename every variable a deployment has. A ``BaseSettings`` per group keeps the flat names (its
own ``env_prefix``, or a whole-name alias, :mod:`cdn_refresh.settings.base`) and reads the
environment and ``.env`` itself; :class:`Settings` builds each one. Its keywords are the
variables' names without the prefix, lower-cased (``Settings(redis_url=...)``, as the
environment spells it), each routed to its group, so tests, the demo and the bench override
settings by the one name an operator knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails
from pydantic_settings.sources import ENV_FILE_SENTINEL, DotenvType

from cdn_refresh.settings.base import ENV_PREFIX, SettingsGroup
from cdn_refresh.settings.connections import ProviderSettings, RedisSettings, redact_url
from cdn_refresh.settings.edges import ApiSettings, LogSettings, WebhookSettings
from cdn_refresh.settings.work import FlushSettings, QuotaSettings, RetrySettings, TrackingSettings

__all__ = [
    "ENV_PREFIX",
    "ApiSettings",
    "FlushSettings",
    "LogSettings",
    "ProviderSettings",
    "QuotaSettings",
    "RedisSettings",
    "RetrySettings",
    "Settings",
    "SettingsError",
    "SettingsGroup",
    "TrackingSettings",
    "WebhookSettings",
    "env_names",
    "load_settings",
    "redact_url",
]


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


class Settings(BaseModel):
    """Every knob of cdn-refresh, one attribute per group (docs/settings.md, in this order)."""

    redis: RedisSettings
    provider: ProviderSettings
    quota: QuotaSettings
    flush: FlushSettings
    retry: RetrySettings
    tracking: TrackingSettings
    api: ApiSettings
    webhooks: WebhookSettings
    log: LogSettings

    def __init__(self, *, _env_file: DotenvType | None = ENV_FILE_SENTINEL, **values: Any) -> None:
        """Build every group from ``values`` (flat names, or a whole group by its attribute),
        the environment and ``_env_file`` (``.env`` unless given; ``None``: none).

        Raises ``ValidationError`` listing the bad values of every group, located as
        ``(group, field)``; :func:`load_settings` words it by variable.
        """
        super().__init__(**_build_groups(_env_file, values))

    def value_of(self, variable: str) -> Any:
        """The setting read from ``CDN_REFRESH_<variable>`` (``URL_DAILY_QUOTA``): for tables
        that name a setting by its variable, as the operations table does."""
        group, field = env_names()[ENV_PREFIX + variable.upper()]
        return getattr(getattr(self, group), field)

    @classmethod
    def field_of(cls, variable: str) -> FieldInfo:
        """The model field of ``CDN_REFRESH_<variable>``: its default, bounds, description."""
        group, field = env_names()[ENV_PREFIX + variable.upper()]
        return groups()[group].model_fields[field]


def groups() -> dict[str, type[SettingsGroup]]:
    """Each group's model, by its attribute on :class:`Settings`, in order."""
    found = {}
    for name, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, SettingsGroup)
        found[name] = field.annotation
    return found


def env_names() -> dict[str, tuple[str, str]]:
    """Every environment variable, with the ``(group, field)`` it sets."""
    return {
        env: (group, field)
        for group, model in groups().items()
        for field, env in model.env_names().items()
    }


def _build_groups(env_file: DotenvType | None, values: Mapping[str, Any]) -> dict[str, Any]:
    routes = {env.removeprefix(ENV_PREFIX).lower(): where for env, where in env_names().items()}
    models = groups()
    given: dict[str, Any] = {}
    keywords: dict[str, dict[str, Any]] = {name: {} for name in models}
    for key, value in values.items():
        if key in models:
            given[key] = value
        elif key in routes:
            group, field = routes[key]
            keywords[group][models[group].init_key(field)] = value
        else:
            raise TypeError(f"Settings() got an unknown setting {key!r}")
    errors: list[InitErrorDetails] = []
    for name, model in models.items():
        if name in given:
            continue
        try:
            # mypy sees the fields' signature, not BaseSettings' own ``_env_file`` keyword.
            given[name] = model(_env_file=env_file, **keywords[name])  # type: ignore[call-arg]
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                detail = InitErrorDetails(type=err["type"], loc=(name, *err["loc"]), input=None)
                if "ctx" in err:
                    detail["ctx"] = err["ctx"]
                errors.append(detail)
    if errors:
        raise ValidationError.from_exception_data("Settings", errors, hide_input=True)
    return given


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable an error's location names (``settings`` for a whole group)."""
    if len(loc) < 2:
        return "settings"
    group, field, *rest = loc
    model = groups()[str(group)]
    name = model.env_names().get(str(field), str(field).upper())
    return ".".join([name, *(str(p) for p in rest)])


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, ``.env`` and ``overrides`` (flat names).

    Raises :class:`SettingsError` whose message names each bad variable, never its value.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            problems.append(f"{_variable(err['loc'])}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
