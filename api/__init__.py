"""The HTTP API: ``cdn-refresh api`` serves the producer to services in any language.

- :mod:`api.app`: the FastAPI application and its routes.
- :mod:`api.models`: request bodies, validated at the edge.
- :mod:`api.errors`: one JSON shape for every error (``{"error": code, "message": ...}``).
- :mod:`api.auth`: bearer tokens, compared in constant time.
- :mod:`api.limits`: the request-body size limit, enforced before a body is parsed.
- :mod:`api.metrics`: ``/metrics``, a Prometheus collector over the store.
- :mod:`api.server`: uvicorn, and logging that never shows a token.
"""
