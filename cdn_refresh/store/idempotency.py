"""Idempotency keys of the HTTP API: a retried POST gets the job of the first one, never a
second job.

A key belongs to the API token that used it: it is kept as a hash of a digest of the token
and the key (never the token, nor the key: a client may treat it as private), for
``IDEMPOTENCY_TTL_S``; the same key under another token is another key. The first POST with
a key *begins* it (``idempotency_begin.lua``): in one step it marks the key ``running``,
reserves the job id the enqueue will use and registers the callback for that id. From then
on a retry always knows the job:

- while the first POST runs (its mark's beat, refreshed every ``RUNNING_BEAT_S`` while it
  runs, is fresh), a retry is told to wait, with the job id
  (:class:`IdempotencyConflictError`);
- once it answered (``finish``, only by the POST that owns the mark), a retry gets the same
  answer (:class:`StoredAnswer`);
- when it died (the beat went stale), a retry takes the key over with the same job id (a
  :class:`Reservation` of its own) and goes on after the valid paths the first had put in
  (its beat records how many, in order): the rest go into the same job, and none twice,
  until every path is in. The callback is registered by the first POST only (or again by a
  retry while the job was never opened): one that fired never fires a second time.

The key is freed (``abandon``) only when no job was opened: its paths were refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

from cdn_refresh.constants import IDEMPOTENCY_TTL_S
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.webhooks import Registration

# A running mark whose beat is older than this belongs to a POST that died: a retry may act.
RUNNING_STALE_S = 30.0
# How often the POST that owns a mark refreshes its beat while it runs (from a thread of its
# own: a slow enqueue is not a dead one).
RUNNING_BEAT_S = 5.0


class IdempotencyConflictError(RuntimeError):
    """The key is in use by a POST still running (``job_id``: the job it is making), or was
    used with another body (``job_id`` empty)."""

    def __init__(self, reason: str, job_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What the first POST with a key answered."""

    status: int
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reservation:
    """This POST owns the key: enqueue as job ``job_id``, then finish (or abandon) it.
    ``resumed``: a POST with the key that died had opened the job, and put in its first
    ``done`` valid paths."""

    key: str
    fingerprint: str
    job_id: str
    owner: str
    resumed: bool = False
    done: int = 0


def fingerprint(body: bytes) -> str:
    """A digest of a request body: the same key with another body is a client bug."""
    return hashlib.sha256(body).hexdigest()


def scoped_key(scope: str, key: str) -> str:
    """An Idempotency-Key as its token's: ``scope`` is a digest of the token, never the
    token itself (:mod:`api.auth`)."""
    return f"{scope}:{key}"


class IdempotencyStore:
    """Begin, beat, finish or abandon the POST of one Idempotency-Key."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def _key(self, key: str) -> str:
        """``key`` is already scoped (:func:`scoped_key`)."""
        return self._ctx.keys.idempotency(hashlib.sha256(key.encode("utf-8")).hexdigest())

    def begin(
        self,
        key: str,
        body_digest: str,
        registration: Registration | None = None,
        *,
        unscoped: str = "",
    ) -> Reservation | StoredAnswer:
        """What this POST does with ``key`` (see the module's docstring). Raises
        :class:`IdempotencyConflictError` while another POST with the key runs, or when the
        key was used with a different body. ``unscoped``: the key as the client sent it,
        whose mark from before keys were scoped moves under ``key`` if it is still there and
        was used with this body."""
        owner = uuid.uuid4().hex
        legacy = self._key(unscoped) if unscoped else self._key(key)
        answer = self._ctx.scripts.run(
            scripts.IDEMPOTENCY_BEGIN,
            {
                "fingerprint": body_digest,
                "owner": owner,
                "stale_after_s": repr(RUNNING_STALE_S),
                "ttl_s": IDEMPOTENCY_TTL_S,
                "callback": "" if registration is None else registration.encode(),
            },
            extra_keys={"idempotency": self._key(key), "legacy_idempotency": legacy},
        )
        outcome, value, *rest = (str(v) for v in cast(list[Any], answer))
        if outcome in ("begun", "resume"):
            done = int(float(rest[0])) if rest else 0
            return Reservation(key, body_digest, value, owner, outcome == "resume", done)
        if outcome == "done":
            data = json.loads(value)
            return StoredAnswer(int(data["status"]), dict(data["document"]))
        if outcome == "conflict":
            raise IdempotencyConflictError("this Idempotency-Key was used with another body")
        raise IdempotencyConflictError(
            "a request with this Idempotency-Key is running: retry later", job_id=value
        )

    def beat(self, reservation: Reservation, done: int | None = None) -> bool:
        """The POST is still at it (``done``: its first valid paths that are in, when that
        changed); False when it no longer owns the key."""
        answer = self._ctx.scripts.run(
            scripts.IDEMPOTENCY_BEAT,
            {"owner": reservation.owner, "done": "" if done is None else done},
            extra_keys={"idempotency": self._key(reservation.key)},
        )
        return bool(answer)

    def finish(self, reservation: Reservation, answer: StoredAnswer) -> bool:
        """Keep the answer for retries of this key; False when this POST no longer owns it
        (then nothing changes)."""
        value = {
            "state": "done",
            "fingerprint": reservation.fingerprint,
            "status": answer.status,
            "document": answer.document,
        }
        kept = self._ctx.scripts.run(
            scripts.IDEMPOTENCY_FINISH,
            {
                "owner": reservation.owner,
                "done_mark": json.dumps(value),
                "ttl_s": IDEMPOTENCY_TTL_S,
            },
            extra_keys={"idempotency": self._key(reservation.key)},
        )
        return bool(kept)

    def abandon(self, reservation: Reservation) -> bool:
        """The POST opened no job (its paths were refused): a retry may run afresh, and the
        callback registered for the reserved job id goes."""
        freed = self._ctx.scripts.run(
            scripts.IDEMPOTENCY_ABANDON,
            {"owner": reservation.owner},
            extra_keys={"idempotency": self._key(reservation.key)},
        )
        return bool(freed)
