"""The module ``celery -A worker`` finds: the app, built from the environment's settings."""

from __future__ import annotations

from cdn_refresh.settings import load_settings
from worker.app import create_app

app = create_app(load_settings())
