"""Job-end webhooks, sent by the workers' webhook task.

The periodic tick only asks whether there is webhook work, and if so schedules one run of
the webhook task (one at a time, deployment-wide: a short mark in Redis), so that receivers
that never answer cannot hold up the tick or the flushes. Each run (1) looks at the jobs with
a callback and moves each one that has ended into the outbox (once, whichever worker sees it
first: see :mod:`cdn_refresh.store.webhooks`), then (2) leases the deliveries that are due,
``ROUND_SIZE`` at a time, and POSTs them, signed, at once: each within
``WEBHOOK_TIMEOUT_S`` overall (name lookup, connect, send, answer), until none is due or the
run's budget is spent. A failure (no answer, a non-2xx status, a URL or an address now
refused) counts an attempt and sends again after an exponential backoff; only a 2xx removes a
delivery; one older than ``WEBHOOK_MAX_AGE_S`` moves to the dead letters. A worker that dies
mid-send leaves its lease to run out, and another worker sends it: at least once, with a
delivery id to deduplicate on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Callable

import httpx

from cdn_refresh import callbacks
from cdn_refresh.constants import WEBHOOK_RUN_BUDGET_S
from cdn_refresh.settings import WebhookSettings
from cdn_refresh.store import JobNotFoundError, Store
from cdn_refresh.store.records import JobState, JobStatus
from cdn_refresh.store.states import JOB_FINAL_STATES
from cdn_refresh.store.webhooks import UNOPENED_JOB_GRACE_S, Delivery, Registration

log = logging.getLogger("cdn_refresh.worker")

# Deliveries leased and sent at once, in one round of a run.
ROUND_SIZE = 10
# How much of a receiver's answer is read (and dropped) before the connection is closed.
MAX_ANSWER_BYTES = 4096
# A delivery the workers' settings refuse (a host no longer allowed, no secret) is looked at
# again this soon: an operator's fix takes effect without waiting out a long backoff.
SETTINGS_RECHECK_S = 60.0
# A lease outlasts its round (every delivery's overall timeout) by this much.
LEASE_MARGIN_S = 5.0
# A job has ended when every path is complete (its task ended Complete), it failed, or its
# enqueue ended part way and what went in is settled; or when it is done (every path
# submitted) and tracking gave up on what is not complete.
ENDED = JOB_FINAL_STATES
Resolver = Callable[[str, int], list[str]]


class WebhookSender:
    """Fires ended jobs' callbacks into the outbox and delivers what is due."""

    def _ended(self, status: JobStatus) -> bool:
        if status.state in ENDED:
            return True
        if status.state is not JobState.SUBMITTED or not status.task_ids:
            return False
        # Done, and every task ended, yet not complete: tracking gave up on some (Timeout,
        # Unknown). Nothing more will happen to the job: call back now, with state done.
        return len(self._store.tracking.ends(status.task_ids)) == len(status.task_ids)

    def __init__(
        self,
        store: Store,
        webhooks: WebhookSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        resolve: Resolver | None = None,
        budget_s: float = WEBHOOK_RUN_BUDGET_S,
    ) -> None:
        self._store = store
        self._webhooks = webhooks
        self._transport = transport
        self._rng = rng or random.Random()
        self._resolve = resolve
        self._budget_s = budget_s

    def close(self) -> None:
        """Nothing to release: each round opens and closes its own HTTP client."""

    def tick(self) -> dict[str, int]:
        """One run: both steps; what each did."""
        return {"fired": self.fire_ended(), "delivered": self.deliver_due()}

    def fire_ended(self) -> int:
        """Move the callbacks of jobs that ended into the outbox; how many this call moved."""
        fired = 0
        webhooks = self._store.webhooks
        now = self._store.now()
        for reg in list(webhooks.registrations()):
            try:
                status = self._store.jobs.status(reg.job_id)
            except JobNotFoundError:
                # Not opened yet (its POST is validating paths), or gone: only then buried.
                if now - reg.registered_at > UNOPENED_JOB_GRACE_S:
                    self._bury_registration(reg)
                continue
            if not self._ended(status):
                continue
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
            delivery = Delivery(
                delivery_id, reg.job_id, reg.url, body, created_at=now, secret=reg.secret
            )
            if webhooks.fire(delivery):
                fired += 1
                log.info(
                    "webhook due job=%s state=%s delivery=%s", reg.job_id, status.state, delivery_id
                )
        return fired

    def _bury_registration(self, reg: Registration) -> None:
        error = "the job is gone (never opened, or older than the retention)"
        delivery = Delivery(
            uuid.uuid4().hex, reg.job_id, reg.url, "", reg.registered_at, last_error=error
        )
        if self._store.webhooks.bury_registration(delivery):
            log.error(
                "webhook dead-lettered job=%s delivery=%s: %s", reg.job_id, delivery.id, error
            )

    def deliver_due(self) -> int:
        """Send the deliveries that are due, a round at a time, within the run's budget; how
        many a receiver took."""
        timeout_s = self._webhooks.timeout_s
        deadline = time.monotonic() + self._budget_s
        delivered = 0
        while True:
            due = self._store.webhooks.lease_due(ROUND_SIZE, timeout_s + LEASE_MARGIN_S)
            if not due:
                break
            delivered += self._round(due)
            if time.monotonic() + timeout_s > deadline:
                break  # another round could overrun the budget: the next run goes on
        return delivered

    def _round(self, due: list[Delivery]) -> int:
        s = self._webhooks
        sendable: list[Delivery] = []
        now = self._store.now()
        for delivery in due:
            problem = callbacks.url_problem(delivery.url, s.allowed_hosts)
            if problem is None and not self._secret(delivery):
                problem = "CDN_REFRESH_WEBHOOK_SECRET is not set"
            if problem is None:
                sendable.append(delivery)
            else:
                # Kept, not dropped: an operator may fix the setting, and nothing is lost.
                # Checked again soon (it costs no request), so that a fix takes effect in
                # about a minute, not after the longest backoff.
                delay_s = min(SETTINGS_RECHECK_S, s.retry_max_delay_s)
                self._failed(delivery, problem, now, delay_s)
        errors = asyncio.run(self._send_all(sendable)) if sendable else []
        delivered = 0
        for delivery, error in zip(sendable, errors, strict=True):
            if error is None:
                self._store.webhooks.delivered(delivery.id)
                log.info(
                    "webhook delivered job=%s delivery=%s attempts=%d",
                    delivery.job_id,
                    delivery.id,
                    delivery.attempts + 1,
                )
                delivered += 1
            else:
                self._failed(delivery, error, now, None)
        return delivered

    def _secret(self, delivery: Delivery) -> str:
        return delivery.secret or self._webhooks.secret.get_secret_value()

    async def _send_all(self, due: list[Delivery]) -> list[str | None]:
        # No proxies or .netrc from the environment, no redirects: the signed body goes to
        # the allowed host and nowhere else.
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self._webhooks.timeout_s),
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
            headers={"User-Agent": "cdn-refresh-webhook"},
        ) as client:
            return list(await asyncio.gather(*(self._attempt(client, d) for d in due)))

    async def _attempt(self, client: httpx.AsyncClient, delivery: Delivery) -> str | None:
        """None when a receiver took it, else what went wrong. Never raises: one bad
        delivery must not stop the others."""
        timeout_s = self._webhooks.timeout_s
        try:
            return await asyncio.wait_for(self._post(client, delivery), timeout_s)
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _post(self, client: httpx.AsyncClient, delivery: Delivery) -> str | None:
        url = httpx.URL(delivery.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        problem = await asyncio.get_running_loop().run_in_executor(
            None,
            callbacks.address_problem,
            url.host,
            port,
            self._webhooks.allowed_hosts,
            self._resolve,
        )
        if problem is not None:
            return problem
        body = delivery.body.encode("utf-8")
        timestamp = int(time.time())  # each attempt's own: a receiver's tolerance runs from it
        headers = {
            "Content-Type": "application/json",
            callbacks.SIGNATURE_HEADER: callbacks.sign(self._secret(delivery), body, timestamp),
            callbacks.TIMESTAMP_HEADER: str(timestamp),
            callbacks.DELIVERY_HEADER: delivery.id,
        }
        async with client.stream("POST", url, content=body, headers=headers) as answer:
            # Only the status counts. The body is read no further than a few KB and dropped
            # (closing then ends the connection): a receiver streaming gigabytes back must
            # not take the worker's memory, or its time.
            read = 0
            async for chunk in answer.aiter_raw():
                read += len(chunk)
                if read >= MAX_ANSWER_BYTES:
                    break
        return None if answer.is_success else f"HTTP {answer.status_code}"

    def _failed(self, delivery: Delivery, error: str, now: float, delay_s: float | None) -> None:
        s = self._webhooks
        age_s = now - delivery.created_at
        if age_s >= s.max_age_s:
            given_up = f"{error} (given up after {age_s:.0f} s, {delivery.attempts + 1} attempts)"
            if self._store.webhooks.bury(delivery, given_up):
                log.error(
                    "webhook dead-lettered job=%s delivery=%s: %s",
                    delivery.job_id,
                    delivery.id,
                    given_up,
                )
            return
        if delay_s is None:
            # Full jitter over a doubling ceiling: receivers coming back are not stampeded.
            ceiling = s.retry_base_delay_s * 2 ** min(delivery.attempts, 30)
            delay_s = self._rng.uniform(0.5, 1.0) * min(s.retry_max_delay_s, ceiling)
        self._store.webhooks.retry_later(delivery, error, delay_s)
        log.warning(
            "webhook failed job=%s delivery=%s attempt=%d error=%s retry_in_s=%.1f",
            delivery.job_id,
            delivery.id,
            delivery.attempts + 1,
            error,
            delay_s,
        )
