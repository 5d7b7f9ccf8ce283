"""Job-end webhooks: registrations, and an outbox that loses no delivery.

A POST with a ``callback_url`` registers it for its job. The workers' tick looks at the
registered jobs; when one has ended, ``webhook_fire.lua`` moves its registration into the
outbox (once, whichever worker sees it first), with the exact body that will be signed and
sent. Deliveries are leased (``webhook_lease.lua``) while a worker sends them, retried with
backoff after a failure (``webhook_retry.lua``) and removed only once a receiver took them:
delivery is at least once, with a delivery id a receiver can deduplicate on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import cast

from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext, time_arg


@dataclass(frozen=True, slots=True)
class Registration:
    """A callback waiting for its job to end."""

    job_id: str
    url: str
    registered_at: float


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

    def encode(self) -> str:
        """The JSON kept in the ``webhook_deliveries`` hash."""
        return json.dumps(asdict(self))

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
        )


class WebhookStore:
    """Registrations and the outbox, shared by the API and every worker."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def register(self, job_id: str, url: str) -> None:
        """Call ``url`` when the job ends (it may have ended already: the tick sees that)."""
        record = {"url": url, "registered_at": self._ctx.now()}
        self._ctx.redis.hset(self._ctx.keys.shared.webhooks, job_id, json.dumps(record))

    def registrations(self) -> Iterator[Registration]:
        """Every callback whose job has not been seen ending yet."""
        for job_id, raw in self._ctx.redis.hscan_iter(self._ctx.keys.shared.webhooks, count=500):
            data = json.loads(raw)
            yield Registration(str(job_id), str(data["url"]), float(data["registered_at"]))

    def forget(self, job_id: str) -> None:
        """Drop a registration whose job is gone (older than the retention)."""
        self._ctx.redis.hdel(self._ctx.keys.shared.webhooks, job_id)

    def fire(self, delivery: Delivery, now: float | None = None) -> bool:
        """Move the job's registration into the outbox as ``delivery``; False when another
        worker did it first."""
        answer = self._ctx.scripts.run(
            scripts.WEBHOOK_FIRE,
            [delivery.job_id, delivery.id, delivery.encode(), time_arg(now)],
        )
        return bool(answer)

    def lease_due(self, limit: int, lease_s: float, now: float | None = None) -> list[Delivery]:
        """Deliveries due now, each leased to the caller for ``lease_s``."""
        raws = self._ctx.scripts.run(scripts.WEBHOOK_LEASE, [time_arg(now), limit, repr(lease_s)])
        return [Delivery.decode(raw) for raw in cast(list[str], raws)]

    def delivered(self, delivery_id: str) -> None:
        """A receiver took it: it leaves the outbox."""
        k = self._ctx.keys.shared
        with self._ctx.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(k.webhook_outbox, delivery_id)
            pipe.hdel(k.webhook_deliveries, delivery_id)
            pipe.execute()

    def retry_later(self, delivery: Delivery, error: str, delay_s: float) -> bool:
        """Count a failed attempt and send again after ``delay_s``."""
        updated = replace(delivery, attempts=delivery.attempts + 1, last_error=error[:500])
        answer = self._ctx.scripts.run(
            scripts.WEBHOOK_RETRY, [delivery.id, updated.encode(), repr(delay_s)]
        )
        return bool(answer)

    def outbox_size(self) -> int:
        """Deliveries not yet taken by their receiver."""
        return int(self._ctx.redis.zcard(self._ctx.keys.shared.webhook_outbox))

    def pending(self) -> list[Delivery]:
        """Every delivery in the outbox (for tests and operators)."""
        raws = self._ctx.redis.hvals(self._ctx.keys.shared.webhook_deliveries)
        return [Delivery.decode(r) for r in cast(list[str], raws)]
