"""What every settings group shares: the ``CDN_REFRESH_`` prefix, the ``.env`` file, field
docstrings as descriptions, and the one rule that names a field's environment variable.

Each group is its own ``BaseSettings`` (see :mod:`cdn_refresh.settings` for why). A group's
``env_prefix`` is ``CDN_REFRESH_`` plus the stem its variables share (``CDN_REFRESH_API_`` for
``tokens``, read from ``CDN_REFRESH_API_TOKENS``); a field whose variable does not start with
that stem names it whole in ``validation_alias``, which pydantic-settings reads instead of
prefix and name (``populate_by_name`` stays off: it would also read ``prefix + name``, a
second variable nobody documented).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CDN_REFRESH_"


class SettingsGroup(BaseSettings):
    """One group of settings, read from the environment and ``.env`` when it is built."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # Each field's docstring is its description: docs/settings.md is made from them.
        use_attribute_docstrings=True,
    )

    title: ClassVar[str]
    """The group's heading in docs/settings.md."""

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each field's environment variable, by field name."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        names = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names[name] = (alias if isinstance(alias, str) else prefix + name).upper()
        return names

    @classmethod
    def init_key(cls, name: str) -> str:
        """The keyword that sets field ``name`` when the group is built (its alias, if any)."""
        alias = cls.model_fields[name].validation_alias
        return alias if isinstance(alias, str) else name
