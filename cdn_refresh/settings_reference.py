"""The settings reference (``docs/settings.md``), made from the settings models themselves: each
field's variable, docstring, default and bounds, one section per group. ``make docs`` writes it;
a test compares the file with :func:`render`, so the reference cannot drift from the code.

``python -m cdn_refresh.settings_reference`` prints it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from cdn_refresh.settings import ENV_PREFIX, groups

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
    out = [
        "# Settings reference",
        "",
        "<!-- Made by `make docs` from cdn_refresh/settings/: edit the field's docstring there."
        " -->",
        "",
        f"Environment variables with the prefix `{ENV_PREFIX}` (or a `.env` file in the working "
        "directory). A bad value stops the program at start with a message naming the "
        "variable, never its value. Secrets are never logged or printed. `.env.example` lists "
        "every one with its default. In the code each group is one attribute of `Settings` "
        "(named in its heading), and a component that needs one group is given that group.",
    ]
    for attribute, model in groups().items():
        out += ["", f"## {model.title} (`settings.{attribute}`)", ""]
        out += [
            "| Variable | Field | Default | Bounds | Meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        env = model.env_names()
        for name, field in model.model_fields.items():
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            out.append(
                f"| `{env[name]}` | `{name}` | {default_text(field)} | {bounds_text(field)} "
                f"| {meaning} |"
            )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
