"""The settings reference is made from the settings model, so it cannot drift from the code."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cdn_refresh.settings import Settings
from cdn_refresh.settings_reference import GROUPS, render

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_every_setting_is_in_exactly_one_group() -> None:
    placed = Counter(name for _, names in GROUPS for name in names)
    assert set(placed) == set(Settings.model_fields)
    assert [name for name, n in placed.items() if n > 1] == []


def test_every_setting_says_what_it_is_for() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_the_reference_in_docs_is_the_one_the_model_makes() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render(), "run `make docs`"


def test_the_reference_shows_defaults_and_bounds_but_no_secret_value() -> None:
    text = render()
    assert "| `CDN_REFRESH_URLS_PER_CALL` | `1000` | ≥ 1, ≤ 1000 |" in text
    assert "| `CDN_REFRESH_REFRESH_COOLDOWN_S` | `60` | ≥ 0 |" in text
    for secret in ("ACCESS_KEY_SECRET", "WEBHOOK_SECRET", "API_TOKENS"):
        row = next(line for line in text.splitlines() if f"CDN_REFRESH_{secret}`" in line)
        assert row.split("|")[2].strip() == "", row
