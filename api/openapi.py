"""The OpenAPI document says what the API really answers: every error in its one shape
(:class:`api.models.ErrorDocument`), and no 422 (a request off the schema is a 400
``invalid_request``, see :mod:`api.errors`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.models import ErrorDocument


def error(description: str) -> dict[str, Any]:
    """One documented error answer."""
    return {"model": ErrorDocument, "description": description}


# Answers every /v1 route may give.
V1_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("`invalid_request`: off the schema (`details` says where)"),
    401: error("`unauthorized`: no bearer token, or a wrong one"),
    503: error("`redis_unavailable`: Redis is down, unreachable or does not answer"),
}
REFRESH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error(
        "`invalid_request`; `rejected` (an invalid path, or none valid with skip_invalid: "
        "the receipt's fields, nothing enqueued); `callback_not_allowed`"
    ),
    409: error(
        "`idempotency_conflict`: the key's first request still runs (`job_id`, Location, "
        "Retry-After), or the key was used with another body"
    ),
    408: error("`body_timeout`: the body did not arrive in time; nothing enqueued"),
    413: error("`body_too_large` / `too_many_paths`: nothing enqueued"),
    503: error(
        "`redis_unavailable`; `redis_refuses_writes` / `redis_evicts` (nothing enqueued); "
        "`enqueue_interrupted` (the receipt of what went in: retry with the Idempotency-Key "
        "to put the rest in); `server_busy` (too many bodies arriving at once, Retry-After)"
    ),
}


def install(app: FastAPI) -> None:
    """Serve the schema without FastAPI's 422 answers and their schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
