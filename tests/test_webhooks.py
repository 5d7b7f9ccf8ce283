"""Job-end webhooks: fired once when a job ends, signed over the exact body, retried with
backoff after a failure, leased so that two workers do not send one at once, and only ever
sent to an allowed host. A real receiving HTTP server on 127.0.0.1, a real redis-server."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from cdn_refresh import callbacks
from cdn_refresh.constants import ObjectType
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch
from cdn_refresh.store.webhooks import Delivery, WebhookFigures
from producer.producer import Producer
from tests.conftest import make_store
from tests.webhook_receiver import Receiver
from worker.webhooks import WebhookSender

pytestmark = pytest.mark.redis
SECRET = "hook-secret"


def ended_job(store: Store, paths: list[str]) -> str:
    """A job whose paths were all submitted and their task ended Complete (claimed, settled
    and tracked as a worker would)."""
    job_id = Producer(store).enqueue(paths).job_id
    batch = store.batches.claim(ObjectType.FILE)
    assert isinstance(batch, Batch)
    store.batches.submit(batch, (), ("T1",), "R1")
    assert store.jobs.status(job_id).state == "submitted"  # submitted: no call back yet
    (call,) = store.tracking.due(10, store.now() + 3600)
    store.tracking.settle(call, {"T1": "Complete"}, {})
    assert store.jobs.status(job_id).state == "complete"
    return job_id


def sender_store(redis_client: redis.Redis, **overrides: object) -> Store:
    values: dict[str, object] = {
        "webhook_secret": SECRET,
        "webhook_allowed_hosts": "127.0.0.1:*",
        "webhook_retry_base_delay_s": 0.05,
        "webhook_retry_max_delay_s": 0.1,
        "webhook_timeout_s": 5,
    }
    return make_store(redis_client, **{**values, **overrides})


def test_a_failed_delivery_is_retried_and_then_delivered_once_signed(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    with Receiver(fail_first=1) as receiver:
        job_id = ended_job(store, ["a.example.com/1", "a.example.com/2"])
        store.webhooks.register(job_id, receiver.url)
        sender = WebhookSender(store, store.settings.webhooks)
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
    signature = success.headers["x-cdn-refresh-signature"]
    timestamp = success.headers["x-cdn-refresh-timestamp"]
    assert callbacks.verify(SECRET, success.body, signature, timestamp)
    assert not callbacks.verify("another", success.body, signature, timestamp)
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
    assert WebhookSender(store, store.settings.webhooks).fire_ended() == 0
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


def test_one_webhook_run_is_scheduled_at_a_time(redis_client: redis.Redis) -> None:
    store = sender_store(redis_client)
    assert store.webhooks.has_work() is False
    store.webhooks.register("7", "http://127.0.0.1:9/hook")
    assert store.webhooks.has_work() is True
    assert store.webhooks.schedule_delivery(60) is True
    assert store.webhooks.schedule_delivery(60) is False  # the next tick finds it scheduled
    store.webhooks.delivery_ended()
    assert store.webhooks.schedule_delivery(0.05) is True
    time.sleep(0.1)  # a run lost on its way blocks the next for its TTL only
    assert store.webhooks.schedule_delivery(60) is True


def test_a_delivery_to_a_host_no_longer_allowed_is_kept_not_sent(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    with Receiver(fail_first=0) as receiver:
        job_id = ended_job(store, ["a.example.com/1"])
        store.webhooks.register(job_id, receiver.url.replace("127.0.0.1", "localhost"))
        WebhookSender(store, store.settings.webhooks).tick()
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
        # Hosts the HTTP client cannot encode, and URLs urlsplit refuses: a 400, not a 500.
        ("http://\u2603.example.com/x", ["*.example.com"], False),
        ("http://a\u2100b.example.com/x", ["*.example.com"], False),
        ("http://[::1/x", ["*.example.com"], False),
        ("https://b\u00fccher.example.com/x", ["*.example.com"], True),
        # Ports: 80 and 443 unless the entry names one (or * for any).
        ("https://hooks.example.com:8443/x", ["hooks.example.com"], False),
        ("https://hooks.example.com:8443/x", ["hooks.example.com:8443"], True),
        ("https://hooks.example.com:8444/x", ["hooks.example.com:8443"], False),
        ("http://hooks.example.com:99999/x", ["hooks.example.com:*"], False),
        ("http://hooks.example.com:x/x", ["hooks.example.com:*"], False),
        ("http://hooks.example.com:0/x", ["hooks.example.com:*"], False),
        ("http://127.0.0.1:5000/x", ["127.0.0.1:*"], True),
        ("http://[::1]:9000/x", ["[::1]:9000"], True),
    ],
)
def test_only_an_allowed_host_may_be_called_back(url: str, allowed: list[str], ok: bool) -> None:
    assert (callbacks.url_problem(url, allowed) is None) is ok


@pytest.mark.parametrize(
    ("host", "allowed", "resolved", "ok"),
    [
        ("hooks.example.com", ["*.example.com"], "93.184.216.34", True),
        ("hooks.example.com", ["*.example.com"], "10.0.0.5", False),
        ("hooks.example.com", ["*.example.com"], "169.254.169.254", False),
        ("hooks.example.com", ["*.example.com"], "::ffff:127.0.0.1", False),
        ("hooks.example.com", ["*.example.com", "10.0.0.5"], "10.0.0.5", True),
        ("hooks.example.com", ["hooks.example.com"], "10.0.0.5", True),  # named exactly
        ("127.0.0.1", ["127.0.0.1:*"], "127.0.0.1", True),
        # IPv6 forms that carry an internal IPv4 address: compatible, NAT64, 6to4.
        ("hooks.example.com", ["*.example.com"], "::127.0.0.1", False),
        ("hooks.example.com", ["*.example.com"], "::a9fe:a9fe", False),
        ("hooks.example.com", ["*.example.com"], "64:ff9b::7f00:1", False),
        ("hooks.example.com", ["*.example.com"], "64:ff9b::a00:5", False),
        ("hooks.example.com", ["*.example.com"], "64:ff9b:1::a00:5", False),
        ("hooks.example.com", ["*.example.com"], "2002:7f00:1::", False),
        ("hooks.example.com", ["*.example.com"], "2002:a9fe:a9fe::1", False),
        # ... and the same forms of a public address are fine.
        ("hooks.example.com", ["*.example.com"], "64:ff9b::5db8:d822", True),
        ("hooks.example.com", ["*.example.com"], "2002:5db8:d822::1", True),
    ],
)
def test_an_internal_address_is_refused_unless_listed(
    host: str, allowed: list[str], resolved: str, ok: bool
) -> None:
    problem = callbacks.address_problem(host, 443, allowed, lambda _h, _p: [resolved])
    assert (problem is None) is ok, problem


def test_a_url_the_client_cannot_send_is_retried_and_the_others_still_go(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(
        redis_client,
        webhook_allowed_hosts="127.0.0.1:*,*.example.com",
        webhook_retry_max_delay_s=60,  # not due again within this run
    )
    bad = Delivery("bad", "1", "http://\u2603.example.com/x", "{}", created_at=time.time())
    with Receiver(fail_first=0) as receiver:
        good = Delivery("good", "2", receiver.url, "{}", created_at=time.time())
        for delivery in (bad, good):
            store.webhooks.register(delivery.job_id, delivery.url)
            assert store.webhooks.fire(delivery)
        assert WebhookSender(store, store.settings.webhooks).deliver_due() == 1
    assert len(receiver.successes()) == 1
    (kept,) = store.webhooks.pending()
    assert kept.id == "bad" and kept.attempts == 1 and "callback_url" in kept.last_error


def test_a_receiver_that_never_answers_holds_a_run_no_longer_than_its_timeout(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client, webhook_timeout_s=0.5)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    for i in range(3):
        delivery = Delivery(f"d{i}", str(i), url, "{}", created_at=time.time())
        store.webhooks.register(delivery.job_id, url)
        store.webhooks.fire(delivery)
    started = time.monotonic()
    try:
        assert WebhookSender(store, store.settings.webhooks, budget_s=0.1).deliver_due() == 0
    finally:
        silent.close()
    assert time.monotonic() - started < 2  # one round, the three at once
    assert {d.last_error for d in store.webhooks.pending()} == {"no answer within 0.5 s"}


def test_too_old_a_delivery_and_a_registration_whose_job_is_gone_are_dead_lettered(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client, webhook_max_age_s=60)
    old = Delivery(
        "old", "1", "http://127.0.0.1:9/hook", "{}", created_at=time.time() - 61, secret="own-s"
    )
    store.webhooks.register("1", old.url)
    store.webhooks.fire(old)
    figures = store.webhooks.figures()
    assert figures.outbox == 1 and figures.oldest_age_s >= 60
    store.webhooks.register("404", "http://127.0.0.1:9/gone")
    registered = store.keys.shared.webhooks
    stale = json.dumps({"url": "http://127.0.0.1:9/gone", "registered_at": time.time() - 3600})
    redis_client.hset(registered, "405", stale)
    sender = WebhookSender(store, store.settings.webhooks)
    assert sender.tick() == {"fired": 0, "delivered": 0}
    dead = {d.job_id: d for d in store.webhooks.dead_letters()}
    assert set(dead) == {"1", "405"}  # job 404 was registered just now: it may yet open
    assert "given up" in dead["1"].last_error and "gone" in dead["405"].last_error
    assert dead["1"].secret == ""  # a dead letter keeps no secret
    assert "own-s" not in json.dumps(redis_client.hgetall(store.keys.shared.webhook_dead))
    assert store.webhooks.pending() == []
    assert store.webhooks.figures() == WebhookFigures(0, 0.0, 2, 1)


def test_a_job_submitted_but_not_complete_waits_and_one_given_up_calls_back(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    job_id = Producer(store).enqueue(["a.example.com/1"]).job_id
    store.webhooks.register(job_id, "http://127.0.0.1:9/hook")
    batch = store.batches.claim(ObjectType.FILE)
    assert isinstance(batch, Batch)
    store.batches.submit(batch, (), ("T1",), "R1")
    sender = WebhookSender(store, store.settings.webhooks)
    # Submitted, its task still running: the job has not ended yet.
    assert sender.fire_ended() == 0
    (call,) = store.tracking.due(10, store.now() + 3600)
    store.tracking.give_up(call, "Timeout")
    # Nothing more will happen to it: the call back goes, with state done.
    assert sender.fire_ended() == 1


def test_a_signature_covers_its_timestamp_and_goes_stale_after_the_tolerance(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client)
    with Receiver(fail_first=0) as receiver:
        job_id = ended_job(store, ["a.example.com/1"])
        store.webhooks.register(job_id, receiver.url)
        WebhookSender(store, store.settings.webhooks).tick()
    (success,) = receiver.successes()
    signature = success.headers["x-cdn-refresh-signature"]
    timestamp = success.headers["x-cdn-refresh-timestamp"]
    sent_at = int(timestamp)
    assert abs(sent_at - time.time()) < 60
    assert callbacks.verify(SECRET, success.body, signature, timestamp)
    # The timestamp is signed: another one with the same signature is refused.
    assert not callbacks.verify(SECRET, success.body, signature, str(sent_at - 1))
    # A capture replayed once the tolerance has passed is refused, though its bytes match.
    later = sent_at + callbacks.TOLERANCE_S + 1
    assert not callbacks.verify(SECRET, success.body, signature, timestamp, now=later)
    assert callbacks.verify(SECRET, success.body, signature, timestamp, now=later - 2)
    assert not callbacks.verify(SECRET, success.body, signature, "not-a-number")


def test_a_callback_with_its_own_secret_is_signed_with_it_not_the_shared_one(
    redis_client: redis.Redis,
) -> None:
    own = "receiver-b-own-secret-42"
    store = sender_store(redis_client)
    with Receiver(fail_first=0) as receiver:
        job_id = ended_job(store, ["a.example.com/1"])
        store.webhooks.register(job_id, receiver.url, own)
        assert own not in repr(next(store.webhooks.registrations()))
        WebhookSender(store, store.settings.webhooks).tick()
    (success,) = receiver.successes()
    signature = success.headers["x-cdn-refresh-signature"]
    timestamp = success.headers["x-cdn-refresh-timestamp"]
    assert callbacks.verify(own, success.body, signature, timestamp)
    assert not callbacks.verify(SECRET, success.body, signature, timestamp)


def test_a_callback_with_its_own_secret_goes_out_without_a_shared_one(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client, webhook_secret="")
    with Receiver(fail_first=0) as receiver:
        job_id = ended_job(store, ["a.example.com/1"])
        store.webhooks.register(job_id, receiver.url, "receiver-own-secret-1234")
        assert WebhookSender(store, store.settings.webhooks).tick() == {"fired": 1, "delivered": 1}


@pytest.fixture
def flood() -> Iterator[tuple[str, list[int]]]:
    """A receiver that answers 200 and then streams up to 512 MB of body as fast as
    loopback takes it; yields its URL and the bytes it managed to send."""
    sent: list[int] = [0]
    chunk = b"x" * (1024 * 1024)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", str(512 * len(chunk)))
            self.end_headers()
            try:
                for _ in range(512):
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            except OSError:
                return  # the sender hung up: what a receiver like this deserves

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks", sent
    server.shutdown()
    server.server_close()


def _rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_receiver_streaming_a_huge_answer_costs_the_sender_a_few_kilobytes(
    redis_client: redis.Redis, flood: tuple[str, list[int]]
) -> None:
    url, sent = flood
    store = sender_store(redis_client, webhook_timeout_s=20)
    job_id = ended_job(store, ["a.example.com/1"])
    store.webhooks.register(job_id, url)
    before = _rss_bytes(os.getpid())
    started = time.monotonic()
    assert WebhookSender(store, store.settings.webhooks).tick() == {"fired": 1, "delivered": 1}
    assert time.monotonic() - started < 5
    grown = _rss_bytes(os.getpid()) - before
    assert grown < 32 * 1024 * 1024, grown
    time.sleep(0.2)
    assert sent[0] < 64 * 1024 * 1024  # the sender hung up long before the 512 MB


def test_a_delivery_the_workers_settings_refuse_is_looked_at_again_within_a_minute(
    redis_client: redis.Redis,
) -> None:
    store = sender_store(redis_client, webhook_retry_max_delay_s=3600)
    delivery = Delivery("d1", "1", "https://hooks.example.com/x", "{}", created_at=time.time())
    store.webhooks.register("1", delivery.url)
    store.webhooks.fire(delivery)
    WebhookSender(store, store.settings.webhooks).deliver_due()
    (kept,) = store.webhooks.pending()
    assert "WEBHOOK_ALLOWED_HOSTS" in kept.last_error
    due_at = redis_client.zscore(store.keys.shared.webhook_outbox, "d1")
    assert due_at is not None and due_at - time.time() <= 61
