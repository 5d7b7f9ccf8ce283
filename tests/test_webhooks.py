"""Job-end webhooks: fired once when a job ends, signed over the exact body, retried with
backoff after a failure, leased so that two workers do not send one at once, and only ever
sent to an allowed host. A real receiving HTTP server on 127.0.0.1, a real redis-server."""

from __future__ import annotations

import json
import time

import pytest
import redis

from cdn_refresh import callbacks
from cdn_refresh.constants import ObjectType
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch
from cdn_refresh.store.webhooks import Delivery
from producer.producer import Producer
from tests.conftest import make_store
from tests.webhook_receiver import Receiver
from worker.webhooks import WebhookSender

pytestmark = pytest.mark.redis
SECRET = "hook-secret"


def ended_job(store: Store, paths: list[str]) -> str:
    """A job whose paths were all submitted (claimed and settled as a worker would)."""
    job_id = Producer(store).enqueue(paths).job_id
    batch = store.batches.claim(ObjectType.FILE)
    assert isinstance(batch, Batch)
    store.batches.submit(batch, (), ("T1",), "R1")
    assert store.jobs.status(job_id).state == "done"
    return job_id


def sender_store(redis_client: redis.Redis) -> Store:
    return make_store(
        redis_client,
        webhook_secret=SECRET,
        webhook_allowed_hosts="127.0.0.1:*",
        webhook_retry_base_delay_s=0.05,
        webhook_retry_max_delay_s=0.1,
        webhook_timeout_s=5,
    )


def test_a_failed_delivery_is_retried_and_then_delivered_once_signed(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    with Receiver(fail_first=1) as receiver:
        job_id = ended_job(store, ["a.example.com/1", "a.example.com/2"])
        store.webhooks.register(job_id, receiver.url)
        sender = WebhookSender(store, store.settings)
        assert sender.tick() == {"fired": 1, "delivered": 0}  # the receiver failed it
        assert store.webhooks.pending()[0].attempts == 1
        deadline = time.monotonic() + 10
        while not receiver.successes() and time.monotonic() < deadline:
            time.sleep(0.05)
            sender.tick()
        for _ in range(3):  # later ticks send nothing more
            time.sleep(0.12)
            assert sender.tick() == {"fired": 0, "delivered": 0}
        sender.close()
    assert [a.answered for a in receiver.attempts] == [500, 200]
    (success,) = receiver.successes()
    assert callbacks.verify(SECRET, success.body, success.headers["x-cdn-refresh-signature"])
    assert not callbacks.verify("another", success.body, success.headers["x-cdn-refresh-signature"])
    # The retry is the same delivery: same id, same bytes, so a receiver can deduplicate.
    first = receiver.attempts[0]
    assert first.body == success.body
    assert first.headers["x-cdn-refresh-delivery"] == success.headers["x-cdn-refresh-delivery"]
    doc = json.loads(success.body)
    assert (
        doc["event"] == "job.finished"
        and doc["delivery_id"] == first.headers["x-cdn-refresh-delivery"]
    )
    assert doc["job"] == store.jobs.status(job_id).to_dict()
    assert store.webhooks.outbox_size() == 0


def test_a_job_still_waiting_fires_nothing(redis_client: redis.Redis) -> None:
    store = sender_store(redis_client)
    job_id = Producer(store).enqueue(["a.example.com/1"]).job_id
    store.webhooks.register(job_id, "http://127.0.0.1:9/hook")
    assert WebhookSender(store, store.settings).fire_ended() == 0
    assert store.webhooks.outbox_size() == 0


def test_a_job_end_fires_once_and_a_leased_delivery_is_no_one_elses(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    store.webhooks.register("7", "http://127.0.0.1:9/hook")
    delivery = Delivery("d1", "7", "http://127.0.0.1:9/hook", "{}", created_at=time.time())
    assert store.webhooks.fire(delivery) is True
    assert store.webhooks.fire(delivery) is False  # another worker saw the same end
    assert [d.id for d in store.webhooks.lease_due(10, lease_s=60)] == ["d1"]
    assert store.webhooks.lease_due(10, lease_s=60) == []  # leased: not due for others
    assert store.webhooks.retry_later(delivery, "HTTP 500", 0.0) is True
    assert [d.attempts for d in store.webhooks.lease_due(10, lease_s=0.2)] == [1]
    time.sleep(0.3)  # the lease ran out (its worker died): due again, nothing lost
    assert [d.id for d in store.webhooks.lease_due(10, lease_s=60)] == ["d1"]
    store.webhooks.delivered("d1")
    assert store.webhooks.retry_later(delivery, "late", 0.0) is False
    assert store.webhooks.outbox_size() == 0


def test_a_delivery_to_a_host_no_longer_allowed_is_kept_not_sent(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    with Receiver(fail_first=0) as receiver:
        job_id = ended_job(store, ["a.example.com/1"])
        store.webhooks.register(job_id, receiver.url.replace("127.0.0.1", "localhost"))
        WebhookSender(store, store.settings).tick()
    assert receiver.attempts == []
    (kept,) = store.webhooks.pending()
    assert "WEBHOOK_ALLOWED_HOSTS" in kept.last_error


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("https://hooks.example.com/x", ["hooks.example.com"], True),
        ("https://a.hooks.example.com/x", ["*.hooks.example.com"], True),
        ("https://evilhooks.example.com/x", ["*.hooks.example.com"], False),
        ("https://hooks.example.com.evil.net/x", ["hooks.example.com"], False),
        ("http://169.254.169.254/latest", ["hooks.example.com"], False),
        ("ftp://hooks.example.com/x", ["hooks.example.com"], False),
        ("https://u:p@hooks.example.com/x", ["hooks.example.com"], False),
        ("https://hooks.example.com/\nx", ["hooks.example.com"], False),
        ("https://hooks.example.com/x", [], False),
    ],
)
def test_only_an_allowed_host_may_be_called_back(url: str, allowed: list[str], ok: bool) -> None:
    assert (callbacks.url_problem(url, allowed) is None) is ok
