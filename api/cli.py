"""``cdn-refresh api``: serve the HTTP API, reached through the front door
(:mod:`cdn_refresh.cli`)."""

from __future__ import annotations

import click

from cdn_refresh.cli_support import command_settings
from cdn_refresh.constants import API_HOST, API_PORT


@click.command()
@click.option("--host", default=API_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=API_PORT, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API (bearer tokens in CDN_REFRESH_API_TOKENS; schema at /openapi.json)."""
    # Loaded only when asked for, like the other wings: FastAPI and uvicorn are not small.
    from api.server import serve

    serve(command_settings(), host, port)
