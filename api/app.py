"""The FastAPI application: the producer's questions over HTTP, for backends in any language.

Each answer is the document the CLI's ``--json`` prints, built by the same function
(:mod:`cdn_refresh.documents`). Work runs in FastAPI's thread pool (the producer is
synchronous); the store's Redis client is shared, its pool safe across threads.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import errors, openapi
from api.auth import TokenCheck, TokenGate
from api.errors import ApiError
from api.limits import BodyBounds, BodyLimit
from api.metrics import registry_for
from api.models import TYPE_LABELS
from api.refresh import add_refresh
from cdn_refresh.paths import InvalidPathError
from cdn_refresh.settings import Settings
from cdn_refresh.store import JobNotFoundError, Store, redis_from_settings
from cdn_refresh.store.records import JobState, PathState
from producer.producer import (
    FlushNotifier,
    Producer,
)

log = logging.getLogger("cdn_refresh.api")

# Redis retries of the API's client: a blip is ridden out, a Redis that is down is a 503 in
# well under a second, not after the workers' 4 to 8 s of retries; a host that does not
# answer at all (no refusal) is given up on after the connect timeout, and one that accepts
# connections but never answers (hung, or a black hole) after the socket timeout, not retried.
API_REDIS_RETRIES = 2
# `?type=` of /v1/lookup: an operation's label, in any case.
TYPE_PATTERN = "^(?i:" + "|".join(re.escape(label) for label in TYPE_LABELS) + ")$"
API_REDIS_CONNECT_TIMEOUT_S = 2.0
API_REDIS_SOCKET_TIMEOUT_S = 2.0


def create_app(settings: Settings, *, notify_workers: bool = True) -> FastAPI:
    """The application for ``settings`` (no connection is made until a request needs one)."""
    client = redis_from_settings(
        settings.redis,
        retries=API_REDIS_RETRIES,
        connect_timeout_s=API_REDIS_CONNECT_TIMEOUT_S,
        socket_timeout_s=API_REDIS_SOCKET_TIMEOUT_S,
    )
    store = Store(client, settings)
    producer = Producer(store, notify=FlushNotifier(store) if notify_workers else None)
    tokens = [t.get_secret_value() for t in settings.api.tokens]
    if not tokens:
        log.warning("CDN_REFRESH_API_TOKENS is empty: every /v1 request is refused (401)")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        producer.close()

    app = FastAPI(
        title="cdn-refresh",
        summary="Queue Alibaba Cloud CDN refreshes; ask about jobs, paths and the quota.",
        version="1",
        lifespan=lifespan,
    )
    errors.install(app)
    openapi.install(app)
    bounds = BodyBounds(
        settings.api.max_body_bytes,
        settings.api.max_body_bytes_in_flight,
        settings.api.body_timeout_s,
        settings.api.body_max_s,
    )
    app.add_middleware(BodyLimit, bounds=bounds)
    check = TokenCheck(tokens)
    # Added last, so it runs first: no body is read for a request without a valid token.
    app.add_middleware(TokenGate, check=check)
    app.include_router(_v1(producer, settings, check))
    app.include_router(_open(store))
    return app


def _v1(producer: Producer, settings: Settings, auth: TokenCheck) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], responses=openapi.V1_ERRORS)
    add_refresh(router, producer, settings, auth)
    _add_reads(router, producer)
    return router


def _add_reads(router: APIRouter, producer: Producer) -> None:
    """The ``/v1`` routes that only read: each answers the CLI's ``--json`` document."""

    @router.get("/jobs/{job_id}", responses={404: openapi.error("`not_found`: no such job")})
    def job(job_id: str) -> dict[str, Any]:
        """A job's state, counts and task IDs: the ``status --json`` document."""
        try:
            return producer.status(job_id).to_dict()
        except JobNotFoundError:
            raise ApiError(404, "not_found", f"no job {job_id}") from None

    @router.get("/jobs")
    def jobs(
        state: Annotated[str | None, Query(pattern="^[a-z_]+$")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    ) -> list[dict[str, Any]]:
        """The most recent jobs, newest first (in ``state``, when given): the ``jobs --json``
        document."""
        try:
            wanted = JobState(state) if state else None
        except ValueError:
            raise ApiError(400, "invalid_request", f"no job state {state}") from None
        return [j.to_dict() for j in producer.recent_jobs(limit, wanted)]

    @router.get(
        "/lookup",
        response_model=None,
        responses={404: {"description": "a path never seen: the document, `state` unknown"}},
    )
    def lookup(
        path: Annotated[str, Query(max_length=16 * 1024)],
        object_type: Annotated[str, Query(alias="type", pattern=TYPE_PATTERN)] = "file",
    ) -> JSONResponse:
        """Was ``path`` refreshed, and under which task? The ``lookup --json`` document; 404
        with it when the path was never seen (``hint`` names a near spelling that is)."""
        try:
            found = producer.lookup(path, object_type)
        except InvalidPathError as exc:
            raise ApiError(400, "invalid_path", f"invalid path: {exc.reason}") from None
        status = 404 if found.state is PathState.UNKNOWN else 200
        return JSONResponse(found.to_dict(), status_code=status)

    @router.get("/quota")
    def quota() -> dict[str, Any]:
        """Our count of the rolling quota window: the ``quota --json`` document."""
        return producer.quota()


def _open(store: Store) -> APIRouter:
    """The routes without a token: what load balancers and Prometheus ask."""
    router = APIRouter()
    registry = registry_for(store)

    @router.get(
        "/healthz",
        responses={
            200: {"content": {"application/json": {"example": {"status": "ok"}}}},
            503: openapi.error("`redis_unavailable`"),
        },
    )
    def healthz() -> JSONResponse:
        """200 when Redis answers, 503 when it does not."""
        try:
            store.ping()
        except redis.RedisError as exc:
            body = errors.error_document(
                "redis_unavailable", f"Redis is unavailable: {type(exc).__name__}"
            )
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok"})

    @router.get("/metrics", responses={503: openapi.error("`redis_unavailable`")})
    def metrics() -> Response:
        """Prometheus text: every cdn_refresh_* figure, read from Redis now."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
