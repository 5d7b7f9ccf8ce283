"""``cdn-refresh api``: the application under uvicorn, with logs that never show a secret.

uvicorn's access log shows the client, the request line and the status; never a header, so
never a bearer token. Our own lines name how many tokens there are, never one of them.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from api.app import create_app
from api.protocol import timed_protocol
from cdn_refresh.settings import Settings


def log_config(level: str) -> dict[str, Any]:
    """One line per event on stderr, for uvicorn and for cdn_refresh.*."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
            "cdn_refresh": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    level = settings.log.level.upper()
    logging.config.dictConfig(log_config(level))
    app = create_app(settings)
    logging.getLogger("cdn_refresh.api").info(
        "api on http://%s:%d with %d token(s); redis %s",
        host,
        port,
        len(settings.api.tokens),
        settings.redis.redacted_url(),
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config(level),
        server_header=False,
        # Headers must be in within API_HEADER_TIMEOUT_S (the body has its own deadline, in
        # the application): a client that stalls part way holds no connection for long.
        http=timed_protocol(settings.api.header_timeout_s),
    )
    uvicorn.Server(config).run()
