"""Every error the API answers has one shape: ``{"error": "<code>", "message": "<text>"}``,
plus fields of its own where they help (``rejected`` on a refused enqueue). The codes are
stable; clients may branch on them."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("cdn_refresh.api")


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable ``code``, a message and extra fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra or {}
        self.headers = headers


def error_document(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The body of an error answer."""
    return {**extra, "error": code, "message": message}


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    body = error_document(exc.code, exc.message, **exc.extra)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Where and what, never the input itself: a body may be large, or hold what it should not.
    details = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    body = error_document(
        "invalid_request", "the request does not match the schema", details=details
    )
    return JSONResponse(body, status_code=400)


def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    # redis-py's messages name Redis's host and port: for the operator's log, never for a
    # client (``/metrics`` answers without a token). They never name the password.
    log.warning("redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    message = f"Redis is unavailable: {type(exc).__name__}"
    if request.method == "POST":
        # Redis may have failed after it took some of the request: say so, and how to be sure.
        message += (
            "; the request may have gone in, in part or in full: retry it with the same "
            "Idempotency-Key to get the one job it made"
        )
    return JSONResponse(error_document("redis_unavailable", message), status_code=503)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # A 400 here is a body FastAPI could not parse (JSON nested past what the parser takes,
    # say): off the schema like any other, so it gets the same code.
    codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    return JSONResponse(
        error_document(code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install(app: FastAPI) -> None:
    """Answer every error in the one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(redis.RedisError, _redis_down)
    app.add_exception_handler(StarletteHTTPException, _http)
