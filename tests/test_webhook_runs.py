"""Webhook runs never hold up a flush: a real Celery worker of one process, a real
redis-server, the emulator, and a receiver on 127.0.0.1 that takes its time to answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cdn_refresh.constants import TASK_WEBHOOKS
from cdn_refresh.store.webhooks import Delivery
from emulator import EmulatorConfig, EmulatorServer
from tests.conftest import make_settings
from tests.harness import Cluster, wait_for
from worker.app import create_app, queue_names

pytestmark = [pytest.mark.redis, pytest.mark.e2e]
HOLD_S = 8.0


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=5, url_quota=100_000, dir_quota=1_000)) as server:
        yield server


@pytest.fixture
def slow_receiver() -> Iterator[tuple[str, threading.Event]]:
    """A receiver that answers 200 only after HOLD_S; the event is set when one arrives."""
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrived.set()
            time.sleep(HOLD_S)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", arrived
    server.shutdown()
    server.server_close()


def test_webhook_runs_have_their_own_queue_and_the_worker_consumes_both() -> None:
    app = create_app(make_settings())
    work, webhooks = queue_names(make_settings())
    assert work != webhooks
    assert set(app.amqp.queues) == {work, webhooks}
    assert app.amqp.router.route({}, TASK_WEBHOOKS)["queue"].name == webhooks
    assert app.amqp.router.route({}, "cdn_refresh.flush")["queue"].name == work


def test_a_slow_webhook_receiver_never_holds_up_a_flush_on_a_one_process_worker(
    cluster: Cluster, slow_receiver: tuple[str, threading.Event]
) -> None:
    url, arrived = slow_receiver
    cluster.configure(
        webhook_secret="hook-secret",
        webhook_allowed_hosts="127.0.0.1:*",
        webhook_timeout_s=HOLD_S + 2,
    )
    cluster.start_workers(1, concurrency=1)
    # A delivery due now: the next tick schedules a webhook run, which waits on the receiver.
    delivery = Delivery("d1", "9", url, "{}", created_at=time.time())
    cluster.store.webhooks.register("9", url)
    assert cluster.store.webhooks.fire(delivery)
    assert arrived.wait(15), cluster.logs()
    started = time.monotonic()
    cluster.producer.enqueue(["https://www.example.com/urgent.png"])
    wait_for(
        lambda: "https://www.example.com/urgent.png" in cluster.accepted(),
        HOLD_S + 10,
        cluster.logs,
    )
    waited = time.monotonic() - started
    assert waited < HOLD_S / 2, f"the flush waited {waited:.1f} s behind the webhook run"
    wait_for(lambda: cluster.store.webhooks.outbox_size() == 0, HOLD_S + 10, cluster.logs)
