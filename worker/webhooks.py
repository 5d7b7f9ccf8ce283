"""Job-end webhooks, sent by the workers' periodic tick.

Each tick (1) looks at the jobs with a callback and moves each one that has ended into the
outbox (once, whichever worker sees it first: see :mod:`cdn_refresh.store.webhooks`), then
(2) leases the deliveries that are due and POSTs them, signed. A failure (no answer, a
non-2xx status) counts an attempt and sends again after an exponential backoff; only a 2xx
removes a delivery. A worker that dies mid-send leaves its lease to run out, and another
worker sends it: at least once, with a delivery id to deduplicate on.
"""

from __future__ import annotations

import json
import logging
import random
import uuid

import httpx

from cdn_refresh import callbacks
from cdn_refresh.settings import Settings
from cdn_refresh.store import JobNotFoundError, Store
from cdn_refresh.store.records import JobState
from cdn_refresh.store.webhooks import Delivery

log = logging.getLogger("cdn_refresh.worker")

# Deliveries one tick sends, one after the other; the lease covers all of them.
DELIVERIES_PER_TICK = 10
ENDED = (JobState.DONE, JobState.COMPLETE, JobState.FAILED)


class WebhookSender:
    """Fires ended jobs' callbacks into the outbox and delivers what is due."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._rng = rng or random.Random()
        # No redirects: a receiver must not send the signed body on to a host not allowed.
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.webhook_timeout_s),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "cdn-refresh-webhook"},
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._http.close()

    def tick(self) -> dict[str, int]:
        """Both steps; what each did."""
        return {"fired": self.fire_ended(), "delivered": self.deliver_due()}

    def fire_ended(self) -> int:
        """Move the callbacks of jobs that ended into the outbox; how many this call moved."""
        fired = 0
        webhooks = self._store.webhooks
        for reg in list(webhooks.registrations()):
            try:
                status = self._store.jobs.status(reg.job_id)
            except JobNotFoundError:
                log.warning("webhook dropped job=%s: the job is gone (retention)", reg.job_id)
                webhooks.forget(reg.job_id)
                continue
            if status.state not in ENDED:
                continue
            now = self._store.now()
            delivery_id = uuid.uuid4().hex
            body = json.dumps(
                {
                    "event": callbacks.EVENT,
                    "delivery_id": delivery_id,
                    "fired_at": now,
                    "job": status.to_dict(),
                },
                separators=(",", ":"),
            )
            delivery = Delivery(delivery_id, reg.job_id, reg.url, body, created_at=now)
            if webhooks.fire(delivery):
                fired += 1
                log.info(
                    "webhook due job=%s state=%s delivery=%s", reg.job_id, status.state, delivery_id
                )
        return fired

    def deliver_due(self) -> int:
        """Send the deliveries that are due; how many a receiver took."""
        lease_s = self._settings.webhook_timeout_s * (DELIVERIES_PER_TICK + 1)
        due = self._store.webhooks.lease_due(DELIVERIES_PER_TICK, lease_s)
        return sum(self._send(d) for d in due)

    def _send(self, delivery: Delivery) -> bool:
        s = self._settings
        problem = callbacks.url_problem(delivery.url, s.webhook_allowed_hosts)
        secret = s.webhook_secret.get_secret_value()
        if problem is None and not secret:
            problem = "CDN_REFRESH_WEBHOOK_SECRET is not set"
        if problem is not None:
            # Kept, not dropped: an operator may fix the setting, and nothing is lost.
            return self._failed(delivery, problem, s.webhook_retry_max_delay_s)
        body = delivery.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            callbacks.SIGNATURE_HEADER: callbacks.sign(secret, body),
            callbacks.DELIVERY_HEADER: delivery.id,
        }
        try:
            answer = self._http.post(delivery.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return self._failed(delivery, f"{type(exc).__name__}: {exc}", None)
        if not answer.is_success:
            return self._failed(delivery, f"HTTP {answer.status_code}", None)
        self._store.webhooks.delivered(delivery.id)
        log.info(
            "webhook delivered job=%s delivery=%s attempts=%d status=%d",
            delivery.job_id,
            delivery.id,
            delivery.attempts + 1,
            answer.status_code,
        )
        return True

    def _failed(self, delivery: Delivery, error: str, delay_s: float | None) -> bool:
        s = self._settings
        if delay_s is None:
            # Full jitter over a doubling ceiling: receivers coming back are not stampeded.
            ceiling = s.webhook_retry_base_delay_s * 2 ** min(delivery.attempts, 30)
            delay_s = self._rng.uniform(0.5, 1.0) * min(s.webhook_retry_max_delay_s, ceiling)
        self._store.webhooks.retry_later(delivery, error, delay_s)
        log.warning(
            "webhook failed job=%s delivery=%s attempt=%d error=%s retry_in_s=%.1f",
            delivery.job_id,
            delivery.id,
            delivery.attempts + 1,
            error,
            delay_s,
        )
        return False
