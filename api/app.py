"""The FastAPI application: the producer's questions over HTTP, for backends in any language.

Each answer is the document the CLI's ``--json`` prints, built by the same function
(:mod:`cdn_refresh.documents`). Work runs in FastAPI's thread pool (the producer is
synchronous); the store's Redis client is shared, its pool safe across threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, FastAPI, Header, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import errors, openapi
from api.auth import TokenCheck, TokenGate
from api.errors import ApiError
from api.limits import BodyBounds, BodyLimit
from api.metrics import registry_for
from api.models import RefreshReceipt, RefreshRequest
from cdn_refresh import callbacks
from cdn_refresh.beat import Beat
from cdn_refresh.documents import quota_document
from cdn_refresh.paths import InvalidPathError
from cdn_refresh.settings import Settings
from cdn_refresh.store import JobNotFoundError, Store, redis_from_settings
from cdn_refresh.store.idempotency import (
    RUNNING_BEAT_S,
    IdempotencyConflictError,
    IdempotencyStore,
    Reservation,
    StoredAnswer,
    fingerprint,
    scoped_key,
)
from cdn_refresh.store.records import JobHeader, JobState, PathState
from cdn_refresh.store.webhooks import Registration
from producer.producer import (
    EnqueueInterruptedError,
    EnqueueRejectedError,
    FlushNotifier,
    Producer,
    RedisEvictsError,
    RedisRefusesWritesError,
)

log = logging.getLogger("cdn_refresh.api")

# Redis retries of the API's client: a blip is ridden out, a Redis that is down is a 503 in
# well under a second, not after the workers' 4 to 8 s of retries; a host that does not
# answer at all (no refusal) is given up on after the connect timeout, and one that accepts
# connections but never answers (hung, or a black hole) after the socket timeout, not retried.
API_REDIS_RETRIES = 2
API_REDIS_CONNECT_TIMEOUT_S = 2.0
API_REDIS_SOCKET_TIMEOUT_S = 2.0


def create_app(settings: Settings, *, notify_workers: bool = True) -> FastAPI:
    """The application for ``settings`` (no connection is made until a request needs one)."""
    client = redis_from_settings(
        settings,
        retries=API_REDIS_RETRIES,
        connect_timeout_s=API_REDIS_CONNECT_TIMEOUT_S,
        socket_timeout_s=API_REDIS_SOCKET_TIMEOUT_S,
    )
    store = Store(client, settings)
    producer = Producer(store, notify=FlushNotifier(store) if notify_workers else None)
    tokens = [t.get_secret_value() for t in settings.api_tokens]
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
        settings.api_max_body_bytes,
        settings.api_max_body_bytes_in_flight,
        settings.api_body_timeout_s,
        settings.api_body_max_s,
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

    @router.post(
        "/refresh",
        status_code=202,
        response_model=None,
        responses={
            202: {"model": RefreshReceipt, "description": "enqueued: the receipt"},
            **openapi.REFRESH_ERRORS,
        },
    )
    def refresh(
        body: RefreshRequest,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
        # A default, not Annotated: the dependency is this function's local, which a
        # postponed annotation cannot name.
        scope: str = Depends(auth),
    ) -> JSONResponse:
        """Enqueue ``paths`` as one job: the ``enqueue --json`` document (202); 400 with
        ``rejected`` and nothing enqueued when a path is invalid (unless ``skip_invalid``)."""
        key = None if idempotency_key is None else (scope, idempotency_key)
        return _refresh(producer, settings, body, key)

    _add_reads(router, producer)
    return router


def _add_reads(router: APIRouter, producer: Producer) -> None:
    """The ``/v1`` routes that only read: each answers the CLI's ``--json`` document."""
    store = producer.store

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
        return [j.to_dict() for j in store.jobs.recent(limit, wanted)]

    @router.get(
        "/lookup",
        response_model=None,
        responses={404: {"description": "a path never seen: the document, `state` unknown"}},
    )
    def lookup(
        path: Annotated[str, Query(max_length=16 * 1024)],
        object_type: Annotated[str, Query(alias="type", pattern="^(?i:file|directory)$")] = "file",
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
        return quota_document(store)


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


def _refresh(
    producer: Producer,
    settings: Settings,
    body: RefreshRequest,
    idempotency_key: tuple[str, str] | None,
) -> JSONResponse:
    """POST /v1/refresh: check the edge limits, then enqueue once per Idempotency-Key
    (``idempotency_key``: the caller's scope and the key it sent)."""
    if len(body.paths) > settings.api_max_paths:
        raise ApiError(
            413,
            "too_many_paths",
            f"{len(body.paths)} paths, at most {settings.api_max_paths} per request: "
            "nothing was enqueued",
        )
    if body.callback_url is not None:
        _check_callback(body.callback_url, body.callback_secret, settings)
    if idempotency_key is None:
        return _answer(_enqueue_fresh(producer, body))
    digest = fingerprint(body.canonical_json())
    registration = None
    if body.callback_url is not None:
        registration = Registration.new(body.callback_url, secret=body.callback_secret or "")
    scope, key = idempotency_key
    try:
        claim = producer.store.idempotency.begin(
            scoped_key(scope, key), digest, registration, unscoped=key
        )
    except IdempotencyConflictError as exc:
        extra = {"job_id": exc.job_id} if exc.job_id else None
        headers = {"Retry-After": "1"}
        if exc.job_id:
            headers["Location"] = f"/v1/jobs/{exc.job_id}"
        raise ApiError(409, "idempotency_conflict", exc.reason, extra, headers) from None
    if isinstance(claim, StoredAnswer):
        return _answer(claim, replayed=True)
    if claim.resumed:
        header = producer.store.jobs.header(claim.job_id)
        if header is not None and header.complete and not header.incomplete:
            # Every path went in; only the answer was lost: the receipt from the job itself.
            return _answer(_keep(producer, claim, _receipt_of(header)), replayed=True)
        if _rest_of(producer, body, claim)[1] == 0:
            # Every path went in, but the POST died before it closed the job: close it (a
            # path sent again would be counted, or refreshed, twice).
            header = producer.finish_resumed(claim.job_id, claim.done)
            return _answer(_keep(producer, claim, _receipt_of(header)), replayed=True)
    return _answer(_enqueue_once(producer, body, claim))


def _receipt_of(header: JobHeader) -> StoredAnswer:
    """The 202 receipt of a job whose enqueue ended (its rejections are no longer known one
    by one: only their count)."""
    document = {
        "job_id": header.job_id,
        "accepted": header.accepted,
        "duplicates": header.duplicates,
        "rejected": [],
    }
    if header.rejected:
        document["rejected_count"] = header.rejected
    return StoredAnswer(202, document)


def _check_callback(url: str, own_secret: str | None, settings: Settings) -> None:
    problem = callbacks.url_problem(url, settings.webhook_allowed_hosts)
    if problem is None and not own_secret and not settings.webhook_secret.get_secret_value():
        problem = (
            "callbacks need a callback_secret, or CDN_REFRESH_WEBHOOK_SECRET set on the server"
        )
    if problem is not None:
        raise ApiError(400, "callback_not_allowed", problem + ": nothing was enqueued")


def _enqueue_fresh(producer: Producer, body: RefreshRequest) -> StoredAnswer:
    """Enqueue without an Idempotency-Key. A callback is registered under a job id reserved
    first, before the job exists: once the job is in, its end cannot go unannounced."""
    store = producer.store
    job_id = None
    if body.callback_url is not None:
        job_id = store.jobs.new_id()
        store.webhooks.register(job_id, body.callback_url, body.callback_secret or "")
    answer = _enqueue(producer, body, job_id)
    if job_id is not None and not _opened(answer):
        with contextlib.suppress(redis.RedisError):  # else the workers bury it, job gone
            store.webhooks.forget(job_id)
    return answer


def _enqueue_once(producer: Producer, body: RefreshRequest, claim: Reservation) -> StoredAnswer:
    """Enqueue as the job ``claim`` reserved, then keep the answer for retries.

    Only a request whose every path is in is answered for good. One that failed part way
    (a Redis error, raised or as ``enqueue_interrupted``) leaves the key running, its beat
    going stale: a retry then takes the key over with the same job id and goes on from the
    paths that are in. A request that opened no job (its paths refused) frees the key.
    """
    skipped, _ = _rest_of(producer, body, claim)
    idempotency = producer.store.idempotency
    # Whatever the enqueue waits on, the key goes stale only when this process is gone.
    beat = Beat(lambda: idempotency.beat(claim), RUNNING_BEAT_S, f"idempotency-beat-{claim.job_id}")
    with beat:
        answer = _enqueue(
            producer,
            body,
            claim.job_id,
            _progress(producer, claim),
            body.paths[skipped:],
            resumed=claim.done if claim.resumed else None,
        )
    if claim.resumed:
        for rejection in answer.document.get("rejected") or []:
            rejection["line"] += skipped  # a line of the body, not of the rest
    if answer.status == 202:
        if claim.resumed:
            answer.document["resumed_after"] = skipped
        return _keep(producer, claim, answer)
    if _opened(answer) or claim.resumed:
        return answer  # unfinished: a retry with the key goes on with it
    try:
        producer.store.idempotency.abandon(claim)
    except redis.RedisError as exc:
        log.warning("could not free the idempotency key of job %s (%s)", claim.job_id, exc)
    return answer


def _rest_of(producer: Producer, body: RefreshRequest, claim: Reservation) -> tuple[int, int]:
    """How many of the body's paths a POST that died had put in (the first ``claim.done``
    valid ones, in order: the retry skips them, and every path before them), and how many
    valid paths remain. Without ``skip_invalid`` every path is valid (else nothing had gone
    in); with it, the body's paths are validated again to find where those ``done`` end."""
    if not claim.resumed:
        return 0, len(body.paths)
    if body.skip_invalid:
        return producer.split_valid(body.paths, body.type, claim.done)
    skipped = min(claim.done, len(body.paths))
    return skipped, len(body.paths) - skipped


def _keep(producer: Producer, claim: Reservation, answer: StoredAnswer) -> StoredAnswer:
    """Keep ``answer`` for retries of the key. Once the job is in, no failure here makes a
    second one: a failed ``finish`` is logged, and the client is still told what went in."""
    try:
        if not producer.store.idempotency.finish(claim, answer):
            log.warning("idempotency key of job %s was taken over", claim.job_id)
    except redis.RedisError as exc:
        log.warning("could not keep the answer of job %s for retries (%s)", claim.job_id, exc)
    return answer


def _progress(producer: Producer, claim: Reservation) -> Callable[[str, int], None]:
    """The enqueue's progress callback: record every confirmed round of valid paths (in
    order, after the ``claim.done`` a POST that died had put in), so that a retry after
    this POST dies goes on from there."""
    idempotency: IdempotencyStore = producer.store.idempotency
    done = claim.done

    def progress(phase: str, n: int) -> None:
        nonlocal done
        if phase != "enqueued":
            return
        done += n
        try:
            idempotency.beat(claim, done)
        except redis.RedisError as exc:  # the enqueue itself will say if Redis is gone
            log.debug("idempotency beat of job %s failed (%s)", claim.job_id, exc)

    return progress


def _enqueue(
    producer: Producer,
    body: RefreshRequest,
    job_id: str | None,
    progress: Callable[[str, int], None] | None = None,
    paths: list[str] | None = None,
    *,
    resumed: int | None = None,
) -> StoredAnswer:
    """Enqueue ``paths`` (default: the body's) as ``job_id``: the answer (202, or an error
    document) to keep for a key."""
    try:
        receipt = producer.enqueue(
            body.paths if paths is None else paths,
            body.type,
            body.priority,
            skip_invalid=body.skip_invalid,
            progress=progress,
            job_id=job_id,
            resumed=resumed,
        )
    except EnqueueRejectedError as exc:
        return _error(400, "rejected", str(exc), exc.receipt.to_dict())
    except EnqueueInterruptedError as exc:
        return _error(503, "enqueue_interrupted", str(exc), exc.receipt.to_dict())
    except RedisRefusesWritesError as exc:
        return _error(503, "redis_refuses_writes", str(exc))
    except RedisEvictsError as exc:
        return _error(503, "redis_evicts", str(exc))
    if not receipt.job_id:
        message = "every path is invalid (skip_invalid): nothing was enqueued"
        return _error(400, "rejected", message, receipt.to_dict())
    return StoredAnswer(202, receipt.to_dict())


def _error(
    status: int, code: str, message: str, extra: dict[str, Any] | None = None
) -> StoredAnswer:
    return StoredAnswer(status, errors.error_document(code, message, **(extra or {})))


def _opened(answer: StoredAnswer) -> bool:
    """Whether the enqueue that answered this opened its job (all of it, or a part)."""
    return answer.status == 202 or answer.document.get("error") == "enqueue_interrupted"


def _answer(answer: StoredAnswer, *, replayed: bool = False) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    job_id = answer.document.get("job_id")
    if job_id:
        headers["Location"] = f"/v1/jobs/{job_id}"
    return JSONResponse(answer.document, status_code=answer.status, headers=headers)
