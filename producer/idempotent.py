"""An enqueue once per Idempotency-Key, with its callback: the rules every edge shares.

An edge (the HTTP API) hands in a :class:`RefreshOrder` and the key it was sent, and gets a
:class:`Reply`: the answer to give, and whether it is a replay. How an enqueue's outcome
reads as an answer (status, document) is the edge's, through :class:`Answers`; what is
enqueued, kept, resumed and abandoned is decided here.

A key's life (:mod:`cdn_refresh.store.idempotency`): ``begin`` reserves it (or finds its
kept answer, or a POST still running: :class:`IdempotencyConflictError`), ``finish`` keeps
the answer of a job whose every path is in, ``abandon`` frees a key whose request opened no
job. A request that died part way leaves the key running; a retry resumes it after the
paths that went in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import redis

from cdn_refresh.beat import Beat
from cdn_refresh.store import RedisEvictsError, Store
from cdn_refresh.store.idempotency import (
    RUNNING_BEAT_S,
    IdempotencyConflictError,
    Reservation,
    StoredAnswer,
    scoped_key,
)
from cdn_refresh.store.records import JobHeader
from cdn_refresh.store.webhooks import Registration
from producer.callbacks import check_callback, forget_unopened
from producer.receipts import (
    EnqueueInterruptedError,
    EnqueueRejectedError,
    Receipt,
    RedisRefusesWritesError,
)

if TYPE_CHECKING:
    from producer.producer import Producer

__all__ = [
    "Answers",
    "EnqueueOutcome",
    "IdempotencyConflictError",
    "RefreshOrder",
    "Reply",
    "refresh",
]

log = logging.getLogger("cdn_refresh.producer")


@dataclass(frozen=True, slots=True)
class RefreshOrder:
    """One request to enqueue ``paths`` as a job, as the edge received it. ``fingerprint``:
    what identifies the request under its Idempotency-Key (needed only with a key)."""

    paths: list[str]
    object_type: str = "file"
    priority: str = "interactive"
    skip_invalid: bool = False
    callback_url: str | None = None
    callback_secret: str | None = field(default=None, repr=False)  # a secret: never shown
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class EnqueueOutcome:
    """What one enqueue did: its receipt (None when Redis refused before any), and the
    failure it ended with (None: it ended well)."""

    receipt: Receipt | None
    failure: Exception | None = None

    @property
    def enqueued(self) -> bool:
        """Every path is in, as a job (not: every path was invalid)."""
        return self.failure is None and self.receipt is not None and bool(self.receipt.job_id)

    @property
    def opened(self) -> bool:
        """The enqueue opened its job (all of it went in, or a part)."""
        return self.enqueued or isinstance(self.failure, EnqueueInterruptedError)


class Answers(Protocol):
    """How an edge words an outcome: the answer kept for retries of a key."""

    def of_outcome(self, outcome: EnqueueOutcome) -> StoredAnswer:
        """The answer to an enqueue."""

    def of_job(self, header: JobHeader) -> StoredAnswer:
        """The answer of a job whose enqueue ended (only its header is left to tell)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to give, and whether it repeats one given before."""

    answer: StoredAnswer
    replayed: bool = False


def refresh(
    producer: Producer,
    store: Store,
    order: RefreshOrder,
    key: tuple[str, str] | None,
    answers: Answers,
) -> Reply:
    """Enqueue ``order`` once per ``key`` (the caller's scope and the key it sent; None: no
    key). Raises :class:`CallbackNotAllowedError` (nothing enqueued) for a callback this
    server does not call, and :class:`IdempotencyConflictError` while the key is in use."""
    if order.callback_url is not None:
        check_callback(order.callback_url, order.callback_secret, store.settings.webhooks)
    if key is None:
        return Reply(answers.of_outcome(_enqueue_fresh(producer, store, order)))
    registration = None
    if order.callback_url is not None:
        registration = Registration.new(order.callback_url, secret=order.callback_secret or "")
    scope, sent = key
    claim = store.idempotency.begin(
        scoped_key(scope, sent), order.fingerprint, registration, unscoped=sent
    )
    if isinstance(claim, StoredAnswer):
        return Reply(claim, replayed=True)
    if claim.resumed:
        header = store.jobs.header(claim.job_id)
        if header is not None and header.complete and not header.incomplete:
            # Every path went in; only the answer was lost: the answer from the job itself.
            return Reply(_keep(store, claim, answers.of_job(header)), replayed=True)
        if _rest_of(producer, order, claim)[1] == 0:
            # Every path went in, but the request died before it closed the job: close it (a
            # path sent again would be counted, or refreshed, twice).
            header = producer.finish_resumed(claim.job_id, claim.done)
            return Reply(_keep(store, claim, answers.of_job(header)), replayed=True)
    return Reply(_enqueue_once(producer, store, order, claim, answers))


def _enqueue_fresh(producer: Producer, store: Store, order: RefreshOrder) -> EnqueueOutcome:
    """Enqueue without a key. A callback is registered under a job id reserved first,
    before the job exists: once the job is in, its end cannot go unannounced."""
    job_id = None
    if order.callback_url is not None:
        job_id = store.jobs.new_id()
        store.webhooks.register(job_id, order.callback_url, order.callback_secret or "")
    outcome = _enqueue(producer, order, job_id)
    if job_id is not None and not outcome.opened:
        forget_unopened(store.webhooks, job_id)
    return outcome


def _enqueue_once(
    producer: Producer, store: Store, order: RefreshOrder, claim: Reservation, answers: Answers
) -> StoredAnswer:
    """Enqueue as the job ``claim`` reserved, then keep the answer for retries.

    Only a request whose every path is in is answered for good. One that failed part way
    (a Redis error, raised or as an interrupted enqueue) leaves the key running, its beat
    going stale: a retry then takes the key over with the same job id and goes on from the
    paths that are in. A request that opened no job (its paths refused) frees the key.
    """
    skipped, _ = _rest_of(producer, order, claim)
    idempotency = store.idempotency
    # Whatever the enqueue waits on, the key goes stale only when this process is gone.
    beat = Beat(lambda: idempotency.beat(claim), RUNNING_BEAT_S, f"idempotency-beat-{claim.job_id}")
    with beat:
        outcome = _enqueue(
            producer,
            order,
            claim.job_id,
            _progress(store, claim),
            order.paths[skipped:],
            resumed=claim.done if claim.resumed else None,
        )
    if claim.resumed and outcome.receipt is not None:
        receipt = outcome.receipt
        # A line of the request, not of the rest it resumed with.
        receipt.rejected = [replace(r, line=r.line + skipped) for r in receipt.rejected]
        if outcome.enqueued:
            receipt.resumed_after = skipped
    answer = answers.of_outcome(outcome)
    if outcome.enqueued:
        return _keep(store, claim, answer)
    if outcome.opened or claim.resumed:
        return answer  # unfinished: a retry with the key goes on with it
    try:
        idempotency.abandon(claim)
    except redis.RedisError as exc:
        log.warning("could not free the idempotency key of job %s (%s)", claim.job_id, exc)
    return answer


def _rest_of(producer: Producer, order: RefreshOrder, claim: Reservation) -> tuple[int, int]:
    """How many of the order's paths a request that died had put in (the first
    ``claim.done`` valid ones, in order: the retry skips them, and every path before them),
    and how many valid paths remain. Without ``skip_invalid`` every path is valid (else
    nothing had gone in); with it, the paths are validated again to find where those end."""
    if not claim.resumed:
        return 0, len(order.paths)
    if order.skip_invalid:
        return producer.split_valid(order.paths, order.object_type, claim.done)
    skipped = min(claim.done, len(order.paths))
    return skipped, len(order.paths) - skipped


def _keep(store: Store, claim: Reservation, answer: StoredAnswer) -> StoredAnswer:
    """Keep ``answer`` for retries of the key. Once the job is in, no failure here makes a
    second one: a failed ``finish`` is logged, and the client is still told what went in."""
    try:
        if not store.idempotency.finish(claim, answer):
            log.warning("idempotency key of job %s was taken over", claim.job_id)
    except redis.RedisError as exc:
        log.warning("could not keep the answer of job %s for retries (%s)", claim.job_id, exc)
    return answer


def _progress(store: Store, claim: Reservation) -> Callable[[str, int], None]:
    """The enqueue's progress callback: record every confirmed round of valid paths (in
    order, after the ``claim.done`` a request that died had put in), so that a retry after
    this one dies goes on from there."""
    idempotency = store.idempotency
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
    order: RefreshOrder,
    job_id: str | None,
    progress: Callable[[str, int], None] | None = None,
    paths: list[str] | None = None,
    *,
    resumed: int | None = None,
) -> EnqueueOutcome:
    """Enqueue ``paths`` (default: the order's) as ``job_id``: the receipt, or the failure
    it ended with (each an answer to keep, not an error of this request)."""
    try:
        receipt = producer.enqueue(
            order.paths if paths is None else paths,
            order.object_type,
            order.priority,
            skip_invalid=order.skip_invalid,
            progress=progress,
            job_id=job_id,
            resumed=resumed,
        )
    except (EnqueueRejectedError, EnqueueInterruptedError) as exc:
        return EnqueueOutcome(exc.receipt, exc)
    except (RedisRefusesWritesError, RedisEvictsError) as exc:
        return EnqueueOutcome(None, exc)
    return EnqueueOutcome(receipt)
