"""Idempotency keys of the HTTP API: a retried POST gets the answer of the first one.

A key is kept as a hash of itself (the key may be something a client treats as private),
for ``IDEMPOTENCY_TTL_S``. While the first POST runs, the key holds a short-lived ``running``
mark, so that a retry racing it is told to wait rather than enqueue a second job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cdn_refresh.constants import IDEMPOTENCY_TTL_S
from cdn_refresh.store.context import StoreContext

# Longer than any enqueue a body within API_MAX_BODY_BYTES takes; a crashed API's mark goes.
RUNNING_TTL_S = 300


class IdempotencyConflictError(RuntimeError):
    """The key is in use by a POST still running, or was used with another body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What the first POST with a key answered."""

    status: int
    document: dict[str, Any]


def fingerprint(body: bytes) -> str:
    """A digest of a request body: the same key with another body is a client bug."""
    return hashlib.sha256(body).hexdigest()


class IdempotencyStore:
    """Begin, finish or abandon the POST of one Idempotency-Key."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def _key(self, key: str) -> str:
        return self._ctx.keys.idempotency(hashlib.sha256(key.encode("utf-8")).hexdigest())

    def begin(self, key: str, body_digest: str) -> StoredAnswer | None:
        """``None``: this POST is the first, go on. A :class:`StoredAnswer`: answer it again.
        Raises :class:`IdempotencyConflictError` while another POST with the key runs, or
        when the key was used with a different body."""
        name = self._key(key)
        running = json.dumps({"state": "running", "fingerprint": body_digest})
        for _ in range(3):  # the mark may expire between the SET and the GET
            if self._ctx.redis.set(name, running, nx=True, ex=RUNNING_TTL_S):
                return None
            raw = self._ctx.redis.get(name)
            if raw is None:
                continue
            data = json.loads(raw)
            if data.get("fingerprint") != body_digest:
                raise IdempotencyConflictError("this Idempotency-Key was used with another body")
            if data.get("state") != "done":
                raise IdempotencyConflictError("a request with this Idempotency-Key is running")
            return StoredAnswer(int(data["status"]), dict(data["document"]))
        raise IdempotencyConflictError("a request with this Idempotency-Key is running")

    def finish(self, key: str, body_digest: str, answer: StoredAnswer) -> None:
        """Keep the answer for retries of this key."""
        value = {
            "state": "done",
            "fingerprint": body_digest,
            "status": answer.status,
            "document": answer.document,
        }
        self._ctx.redis.set(self._key(key), json.dumps(value), ex=IDEMPOTENCY_TTL_S)

    def abandon(self, key: str) -> None:
        """The POST enqueued nothing (bad input, Redis down): a retry may run afresh."""
        self._ctx.redis.delete(self._key(key))
