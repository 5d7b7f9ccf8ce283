"""``POST /v1/refresh``: the HTTP request into a :class:`RefreshOrder`, the producer's reply
into a response. What is enqueued, kept for a key or resumed is the producer's
(:mod:`producer.idempotent`); here only the edge's limit and the wording of each answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse

from api import errors, openapi
from api.auth import TokenCheck
from api.errors import ApiError
from api.models import RefreshReceipt, RefreshRequest
from cdn_refresh.settings import Settings
from cdn_refresh.store import RedisEvictsError
from cdn_refresh.store.idempotency import IdempotencyConflictError, StoredAnswer, fingerprint
from cdn_refresh.store.records import JobHeader
from producer.callbacks import CallbackNotAllowedError
from producer.idempotent import EnqueueOutcome, RefreshOrder, Reply
from producer.producer import (
    EnqueueInterruptedError,
    EnqueueRejectedError,
    Producer,
    RedisRefusesWritesError,
)


def add_refresh(
    router: APIRouter, producer: Producer, settings: Settings, auth: TokenCheck
) -> None:
    """Add ``POST /refresh`` to ``router``."""

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


def _refresh(
    producer: Producer,
    settings: Settings,
    body: RefreshRequest,
    idempotency_key: tuple[str, str] | None,
) -> JSONResponse:
    """Check the edge's limit, then ask the producer to enqueue once per Idempotency-Key
    (``idempotency_key``: the caller's scope and the key it sent)."""
    if len(body.paths) > settings.api.max_paths:
        raise ApiError(
            413,
            "too_many_paths",
            f"{len(body.paths)} paths, at most {settings.api.max_paths} per request: "
            "nothing was enqueued",
        )
    order = RefreshOrder(
        paths=body.paths,
        object_type=body.type,
        priority=body.priority,
        skip_invalid=body.skip_invalid,
        callback_url=body.callback_url,
        callback_secret=body.callback_secret,
        # Only a key compares requests: a body without one is not hashed.
        fingerprint="" if idempotency_key is None else fingerprint(body.canonical_json()),
    )
    try:
        reply = producer.refresh(order, idempotency_key, HttpAnswers())
    except CallbackNotAllowedError as exc:
        raise ApiError(400, "callback_not_allowed", str(exc)) from None
    except IdempotencyConflictError as exc:
        extra = {"job_id": exc.job_id} if exc.job_id else None
        headers = {"Retry-After": "1"}
        if exc.job_id:
            headers["Location"] = f"/v1/jobs/{exc.job_id}"
        raise ApiError(409, "idempotency_conflict", exc.reason, extra, headers) from None
    return _response(reply)


class HttpAnswers:
    """An enqueue's outcome as the status and document of a response (kept for a key)."""

    def of_outcome(self, outcome: EnqueueOutcome) -> StoredAnswer:
        """202 with the receipt, or the error document of the failure."""
        failure, receipt = outcome.failure, outcome.receipt
        if isinstance(failure, EnqueueRejectedError):
            return _error(400, "rejected", str(failure), failure.receipt.to_dict())
        if isinstance(failure, EnqueueInterruptedError):
            return _error(503, "enqueue_interrupted", str(failure), failure.receipt.to_dict())
        if isinstance(failure, RedisRefusesWritesError):
            return _error(503, "redis_refuses_writes", str(failure))
        if isinstance(failure, RedisEvictsError):
            return _error(503, "redis_evicts", str(failure))
        assert receipt is not None  # only a refusal before the first write has none
        if not receipt.job_id:
            message = "every path is invalid (skip_invalid): nothing was enqueued"
            return _error(400, "rejected", message, receipt.to_dict())
        return StoredAnswer(202, receipt.to_dict())

    def of_job(self, header: JobHeader) -> StoredAnswer:
        """The 202 receipt of a job whose enqueue ended (its rejections are no longer known
        one by one: only their count)."""
        document: dict[str, Any] = {
            "job_id": header.job_id,
            "accepted": header.accepted,
            "duplicates": header.duplicates,
            "rejected": [],
        }
        if header.rejected:
            document["rejected_count"] = header.rejected
        return StoredAnswer(202, document)


def _error(
    status: int, code: str, message: str, extra: dict[str, Any] | None = None
) -> StoredAnswer:
    return StoredAnswer(status, errors.error_document(code, message, **(extra or {})))


def _response(reply: Reply) -> JSONResponse:
    answer = reply.answer
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else {}
    job_id = answer.document.get("job_id")
    if job_id:
        headers["Location"] = f"/v1/jobs/{job_id}"
    return JSONResponse(answer.document, status_code=answer.status, headers=headers)
