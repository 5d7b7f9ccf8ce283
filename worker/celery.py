"""The module ``celery -A worker`` finds: the app, built from the environment's settings."""

from __future__ import annotations

import sys

from cdn_refresh.settings import SettingsError, load_settings
from worker.app import create_app

try:
    _settings = load_settings()
except SettingsError as exc:
    # One line naming the variable (never its value), not Celery's traceback of the import.
    print(f"Error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

app = create_app(_settings)
