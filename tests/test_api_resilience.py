"""The HTTP API when Redis fails part way, or hangs: an Idempotency-Key never makes a second
job, whatever fails after the job was reserved, and no route waits on a Redis that accepts
connections and never answers.

The application runs in this process under a real uvicorn on loopback, so that a test can
make one Redis call fail (monkeypatch) while everything else talks HTTP and real Redis.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from api.app import create_app
from cdn_refresh.store import idempotency
from cdn_refresh.store.jobs import JobStore
from sandbox.local import ApiProcess, free_port, worker_env
from tests.conftest import make_settings, make_store

pytestmark = pytest.mark.redis

TOKEN = "tok-resilience-3c9e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"paths": [f"a.example.com/r/{i}" for i in range(30)]}


@pytest.fixture
def served(redis_url: str) -> Iterator[str]:
    """The application on a real uvicorn, in this process (monkeypatches reach it)."""
    settings = make_settings(
        redis_url=redis_url,
        api_tokens=TOKEN,
        webhook_secret="hook-secret",
        webhook_allowed_hosts="127.0.0.1:*",
    )
    config = uvicorn.Config(
        create_app(settings, notify_workers=False),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    yield f"http://127.0.0.1:{config.port}"
    server.should_exit = True
    thread.join(10)


def jobs_made(redis_client: redis.Redis) -> list[str]:
    store = make_store(redis_client)
    return sorted(str(j) for j in redis_client.hkeys(store.keys.shared.jobs))


def failing_once(original: Callable[..., Any], *, after: bool) -> Callable[..., Any]:
    """``original``, but its first call raises ConnectionError (after running, or instead)."""
    calls = []

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            return original(*args, **kwargs)
        if after:
            original(*args, **kwargs)
        raise redis.ConnectionError("injected: connection lost")

    return patched


def test_concurrent_posts_with_one_key_make_one_job(served: str, redis_client: redis.Redis) -> None:
    headers = {**AUTH, "Idempotency-Key": "burst-1"}
    with httpx.Client(base_url=served, timeout=10) as http, ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: http.post("/v1/refresh", json=BODY, headers=headers), range(8))
        )
    (job_id,) = jobs_made(redis_client)
    assert {a.status_code for a in answers} <= {202, 409}
    for answer in answers:
        assert answer.json()["job_id"] == job_id  # a 409 names the job being made
    assert any(a.status_code == 202 for a in answers)


def test_a_failure_after_the_job_is_in_still_answers_it_and_a_retry_gets_the_same_job(
    served: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_cls = idempotency.IdempotencyStore
    monkeypatch.setattr(store_cls, "finish", failing_once(store_cls.finish, after=False))
    hook = "http://127.0.0.1:9/hook"
    headers = {**AUTH, "Idempotency-Key": "after-enqueue"}
    body = {**BODY, "callback_url": hook}
    with httpx.Client(base_url=served, timeout=10) as http:
        first = http.post("/v1/refresh", json=body, headers=headers)
        assert first.status_code == 202 and first.json()["accepted"] == len(BODY["paths"])
        job_id = first.json()["job_id"]
        # Its POST could not record the answer; while its beat is fresh a retry waits.
        waiting = http.post("/v1/refresh", json=body, headers=headers)
        assert waiting.status_code == 409 and waiting.json()["job_id"] == job_id
        assert waiting.headers["location"] == f"/v1/jobs/{job_id}"
        monkeypatch.setattr(idempotency, "RUNNING_STALE_S", 0.0)
        retry = http.post("/v1/refresh", json=body, headers=headers)
    assert retry.status_code == 202 and retry.headers["idempotent-replayed"] == "true"
    # Every path was in: the receipt (the schema a 202 promises), rebuilt from the job.
    assert retry.json() == {**first.json(), "rejected": []}
    assert jobs_made(redis_client) == [job_id]
    # The callback was registered with the job id, in the step that reserved it.
    (registration,) = make_store(redis_client).webhooks.registrations()
    assert (registration.job_id, registration.url) == (job_id, hook)


@pytest.mark.parametrize("after", [True, False], ids=["opened", "not-opened"])
def test_redis_failing_as_the_job_opens_never_gives_a_second_job(
    served: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, after: bool
) -> None:
    monkeypatch.setattr(JobStore, "open", failing_once(JobStore.open, after=after))
    headers = {**AUTH, "Idempotency-Key": f"open-{after}"}
    with httpx.Client(base_url=served, timeout=10) as http:
        first = http.post("/v1/refresh", json=BODY, headers=headers)
        assert first.status_code == 503 and first.json()["error"] == "redis_unavailable"
        assert "Idempotency-Key" in first.json()["message"]  # not "nothing was done"
        monkeypatch.setattr(idempotency, "RUNNING_STALE_S", 0.0)
        retry = http.post("/v1/refresh", json=BODY, headers=headers)
        again = http.post("/v1/refresh", json=BODY, headers=headers)
    assert retry.status_code == 202
    (job_id,) = jobs_made(redis_client)
    assert retry.json()["job_id"] == again.json()["job_id"] == job_id
    if not after:
        # Nothing was opened: the retry took the key over and enqueued, as the same job id.
        assert retry.json()["accepted"] == len(BODY["paths"])
        assert again.json() == retry.json() and again.headers["idempotent-replayed"] == "true"


def test_an_empty_idempotency_key_is_a_400(served: str, redis_client: redis.Redis) -> None:
    with httpx.Client(base_url=served, timeout=10) as http:
        answer = http.post("/v1/refresh", json=BODY, headers={**AUTH, "Idempotency-Key": ""})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert jobs_made(redis_client) == []


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP listener on loopback that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()
    for conn in held:
        conn.close()


def test_a_redis_that_never_answers_is_a_quick_503_on_every_route(
    black_hole: str, tmp_path: Path
) -> None:
    env = worker_env(redis_url=black_hole, api_tokens=TOKEN)
    with (
        ApiProcess(env, tmp_path / "api.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        for method, path in (("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/quota")):
            started = time.monotonic()
            answer = http.request(method, path, headers=AUTH)
            assert answer.status_code == 503, (path, answer.text)
            assert answer.json()["error"] == "redis_unavailable"
            assert time.monotonic() - started < 5, path
