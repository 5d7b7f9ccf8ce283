"""Job-end webhooks: registrations, and an outbox that loses no delivery.

A POST with a ``callback_url`` registers it for its job. The workers' tick looks at the
registered jobs; when one has ended, ``webhook_fire.lua`` moves its registration into the
outbox (once, whichever worker sees it first), with the exact body that will be signed and
sent. Deliveries are leased (``webhook_lease.lua``) while a worker sends them, retried with
backoff after a failure (``webhook_retry.lua``) and removed only once a receiver took them:
delivery is at least once, with a delivery id a receiver can deduplicate on. A delivery
still not taken after ``WEBHOOK_MAX_AGE_S``, or a registration whose job is gone, moves to
the dead letters (``webhook_bury.lua``), kept for an operator: none is dropped silently.

A POST with an Idempotency-Key registers its callback in the step that reserves its job id
(``idempotency_begin.lua``), before the job is opened: a registration whose job does not
exist yet is left alone for ``UNOPENED_JOB_GRACE_S``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import cast

from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext, time_arg

# A registration may precede its job by the time an enqueue takes to validate its paths (and
# a retry to take over a POST that died): only past this is a missing job gone.
UNOPENED_JOB_GRACE_S = 600.0


@dataclass(frozen=True, slots=True)
class Registration:
    """A callback waiting for its job to end. ``secret``: the callback's own signing secret
    (empty: ``CDN_REFRESH_WEBHOOK_SECRET``), so that one receiver cannot forge another's."""

    job_id: str
    url: str
    registered_at: float
    secret: str = field(default="", repr=False)

    @classmethod
    def new(cls, url: str, job_id: str = "", secret: str = "") -> Registration:
        """A registration made now (this host's clock: only the grace above reads it)."""
        return cls(job_id, url, time.time(), secret)

    def encode(self) -> str:
        """The JSON kept in the ``webhooks`` hash (the job id is the field)."""
        data: dict[str, object] = {"url": self.url, "registered_at": self.registered_at}
        if self.secret:
            data["secret"] = self.secret
        return json.dumps(data)

    @classmethod
    def decode(cls, job_id: str, raw: str) -> Registration:
        """From :meth:`encode`'s JSON (one registered before secrets existed has none)."""
        data = json.loads(raw)
        return cls(
            job_id, str(data["url"]), float(data["registered_at"]), str(data.get("secret") or "")
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook to send: ``body`` is the exact bytes signed and sent, every attempt."""

    id: str
    job_id: str
    url: str
    body: str
    created_at: float
    attempts: int = 0
    last_error: str = ""
    secret: str = field(default="", repr=False)  # the callback's own; empty: the global one

    def encode(self) -> str:
        """The JSON kept in the ``webhook_deliveries`` hash."""
        data = asdict(self)
        if not self.secret:
            del data["secret"]  # deliveries without one read as before
        return json.dumps(data)

    @classmethod
    def decode(cls, raw: str) -> Delivery:
        """From :meth:`encode`'s JSON."""
        data = json.loads(raw)
        return cls(
            id=str(data["id"]),
            job_id=str(data["job_id"]),
            url=str(data["url"]),
            body=str(data["body"]),
            created_at=float(data["created_at"]),
            attempts=int(data.get("attempts") or 0),
            last_error=str(data.get("last_error") or ""),
            secret=str(data.get("secret") or ""),
        )


@dataclass(frozen=True, slots=True)
class WebhookFigures:
    """What ``/metrics`` shows of the webhooks."""

    outbox: int  # deliveries not yet taken by their receiver
    oldest_age_s: float  # how long ago the oldest of them was fired; 0 when none
    dead_letters: int  # deliveries given up on
    registrations: int  # callbacks whose job has not ended yet


class WebhookStore:
    """Registrations and the outbox, shared by the API and every worker."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def register(self, job_id: str, url: str, secret: str = "") -> None:
        """Call ``url`` when the job ends (it may have ended already: the tick sees that),
        signed with ``secret`` (empty: the global one)."""
        self._ctx.redis.hset(
            self._ctx.keys.shared.webhooks, job_id, Registration.new(url, job_id, secret).encode()
        )

    def registrations(self) -> Iterator[Registration]:
        """Every callback whose job has not been seen ending yet."""
        for job_id, raw in self._ctx.redis.hscan_iter(self._ctx.keys.shared.webhooks, count=500):
            yield Registration.decode(str(job_id), raw)

    def forget(self, job_id: str) -> None:
        """Drop the registration of a job that was never opened (its paths were refused)."""
        self._ctx.redis.hdel(self._ctx.keys.shared.webhooks, job_id)

    def bury_registration(self, delivery: Delivery) -> bool:
        """Move a registration whose job is gone into the dead letters as ``delivery`` (its
        ``last_error`` says why); False when another worker did it first."""
        answer = self._ctx.scripts.run(
            scripts.WEBHOOK_BURY,
            {"delivery_id": delivery.id, "delivery": delivery.encode(), "job_id": delivery.job_id},
        )
        return bool(answer)

    def bury(self, delivery: Delivery, error: str) -> bool:
        """Give up on a delivery: out of the outbox, into the dead letters with ``error``;
        False when it is gone already (another worker delivered it meanwhile)."""
        # Without its secret: a dead letter is for an operator to read, and is never sent.
        updated = replace(delivery, last_error=error[:500], secret="")
        answer = self._ctx.scripts.run(
            scripts.WEBHOOK_BURY,
            {"delivery_id": delivery.id, "delivery": updated.encode(), "job_id": ""},
        )
        return bool(answer)

    def dead_letters(self) -> list[Delivery]:
        """Every delivery given up on (for operators and tests)."""
        raws = self._ctx.redis.hvals(self._ctx.keys.shared.webhook_dead)
        return [Delivery.decode(r) for r in cast(list[str], raws)]

    def fire(self, delivery: Delivery, now: float | None = None) -> bool:
        """Move the job's registration into the outbox as ``delivery``; False when another
        worker did it first."""
        answer = self._ctx.scripts.run(
            scripts.WEBHOOK_FIRE,
            {
                "job_id": delivery.job_id,
                "delivery_id": delivery.id,
                "delivery": delivery.encode(),
                "now": time_arg(now),
                "created_at": repr(delivery.created_at),
            },
        )
        return bool(answer)

    def lease_due(self, limit: int, lease_s: float, now: float | None = None) -> list[Delivery]:
        """Deliveries due now, each leased to the caller for ``lease_s``."""
        raws = self._ctx.scripts.run(
            scripts.WEBHOOK_LEASE, {"now": time_arg(now), "most": limit, "lease_s": repr(lease_s)}
        )
        return [Delivery.decode(raw) for raw in cast(list[str], raws)]

    def delivered(self, delivery_id: str) -> None:
        """A receiver took it: it leaves the outbox."""
        k = self._ctx.keys.shared
        with self._ctx.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(k.webhook_outbox, delivery_id)
            pipe.hdel(k.webhook_deliveries, delivery_id)
            pipe.zrem(k.webhook_created, delivery_id)
            pipe.execute()

    def retry_later(self, delivery: Delivery, error: str, delay_s: float) -> bool:
        """Count a failed attempt and send again after ``delay_s``."""
        updated = replace(delivery, attempts=delivery.attempts + 1, last_error=error[:500])
        answer = self._ctx.scripts.run(
            scripts.WEBHOOK_RETRY,
            {"delivery_id": delivery.id, "delivery": updated.encode(), "delay_s": repr(delay_s)},
        )
        return bool(answer)

    def has_work(self) -> bool:
        """Whether a callback waits for its job, or a delivery for its receiver."""
        k = self._ctx.keys.shared
        return bool(self._ctx.redis.exists(k.webhooks, k.webhook_outbox))

    def schedule_delivery(self, ttl_s: float) -> bool:
        """True when no delivery task is scheduled or running (and now one is, for at most
        ``ttl_s``: a task lost on its way does not block the next for longer)."""
        key = self._ctx.keys.shared.webhook_send_scheduled
        return bool(self._ctx.redis.set(key, "1", nx=True, px=max(1, int(ttl_s * 1000))))

    def delivery_ended(self) -> None:
        """The delivery task ended: the next tick may schedule another."""
        self._ctx.redis.delete(self._ctx.keys.shared.webhook_send_scheduled)

    def figures(self) -> WebhookFigures:
        """The outbox, its oldest delivery, the dead letters and the registrations, now."""
        k = self._ctx.keys.shared
        with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.zcard(k.webhook_outbox)
            pipe.zrange(k.webhook_created, 0, 0, withscores=True)
            pipe.hlen(k.webhook_dead)
            pipe.hlen(k.webhooks)
            (seconds, micros), outbox, oldest, dead, registrations = pipe.execute()
        now = seconds + micros / 1e6
        return WebhookFigures(
            outbox=int(outbox),
            oldest_age_s=max(0.0, now - float(oldest[0][1])) if oldest else 0.0,
            dead_letters=int(dead),
            registrations=int(registrations),
        )

    def outbox_size(self) -> int:
        """Deliveries not yet taken by their receiver."""
        return int(self._ctx.redis.zcard(self._ctx.keys.shared.webhook_outbox))

    def pending(self) -> list[Delivery]:
        """Every delivery in the outbox (for tests and operators)."""
        raws = self._ctx.redis.hvals(self._ctx.keys.shared.webhook_deliveries)
        return [Delivery.decode(r) for r in cast(list[str], raws)]
