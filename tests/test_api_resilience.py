"""The HTTP API when Redis fails part way, or hangs: an Idempotency-Key never makes a second
job, whatever fails after the job was reserved, and no route waits on a Redis that accepts
connections and never answers.

The application runs in this process under a real uvicorn on loopback, so that a test can
make one Redis call fail (monkeypatch) while everything else talks HTTP and real Redis.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

import producer.idempotent
from api.app import create_app
from api.auth import scope_of
from api.models import RefreshRequest
from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.paths import InvalidPathError, normalize_path
from cdn_refresh.store import idempotency
from cdn_refresh.store.idempotency import Reservation, fingerprint, scoped_key
from cdn_refresh.store.jobs import JobStore
from cdn_refresh.store.records import JobHeader
from cdn_refresh.store.webhooks import Registration
from emulator import EmulatorConfig, EmulatorServer
from sandbox.local import ApiProcess, free_port, worker_env
from tests.conftest import make_settings, make_store
from tests.harness import Cluster, claim_batch, wait_for
from worker.webhooks import WebhookSender

pytestmark = pytest.mark.redis

TOKEN = "tok-resilience-3c9e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"paths": [f"a.example.com/r/{i}" for i in range(30)]}
SERVED: dict[str, object] = {
    "api_tokens": TOKEN,
    "webhook_secret": "hook-secret",
    "webhook_allowed_hosts": "127.0.0.1:*",
}


@pytest.fixture
def served(redis_url: str) -> Iterator[str]:
    """The application on a real uvicorn, in this process (monkeypatches reach it)."""
    settings = make_settings(redis_url=redis_url, **SERVED)
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


def died_after(
    redis_client: redis.Redis, key: str, body: dict[str, Any], put_in: int, *, ended: bool = False
) -> str:
    """What a POST of ``body`` with ``key`` leaves when the API dies once its first ``put_in``
    valid paths are in: its job open (``ended``: closed as incomplete, as after
    ``enqueue_interrupted``), and its mark's beat stale. The job id."""
    store = make_store(redis_client, **SERVED)
    request = RefreshRequest.model_validate(body)
    registration = None
    if request.callback_url is not None:
        registration = Registration.new(request.callback_url)
    digest = fingerprint(request.canonical_json())
    claim = store.idempotency.begin(scoped_key(scope_of(TOKEN), key), digest, registration)
    assert isinstance(claim, Reservation)
    valid = []
    for path in request.paths:
        with contextlib.suppress(InvalidPathError):
            valid.append(normalize_path(path, ObjectType.FILE, frozenset()))
    rejected = len(request.paths) - len(valid)
    header = JobHeader(
        claim.job_id, ObjectType.FILE, Priority.INTERACTIVE, 1e9, len(valid), rejected
    )
    store.jobs.open(header)
    if put_in:
        store.jobs.enqueue_chunks(header, JobStore.rank(1e9, header.priority), [valid[:put_in]])
    store.idempotency.beat(claim, put_in)
    if ended:
        header.accepted = put_in
        store.jobs.abandon(header)
    make_stale(redis_client)
    return claim.job_id


def make_stale(redis_client: redis.Redis) -> None:
    """Make the one idempotency mark's beat stale, as it goes once its POST died."""
    (mark_key,) = redis_client.keys(make_store(redis_client).keys.idempotency("*"))
    mark = json.loads(str(redis_client.get(mark_key)))
    redis_client.set(mark_key, json.dumps({**mark, "beat": 0}), keepttl=True)


def paths_counted(redis_client: redis.Redis, job_id: str) -> int:
    """The paths a job counts, in every state."""
    counts = redis_client.hgetall(make_store(redis_client).keys.shared.job_counts)
    return sum(int(v) for k, v in counts.items() if k.startswith(f"{job_id}:"))


def test_a_retry_never_registers_again_a_callback_that_fired(
    served: str, redis_client: redis.Redis
) -> None:
    body = {**BODY, "callback_url": "http://127.0.0.1:9/hook"}
    job_id = died_after(redis_client, "hooked", body, 0, ended=True)
    store = make_store(redis_client, **SERVED)
    sender = WebhookSender(store, make_settings(**SERVED).webhooks)
    assert sender.fire_ended() == 1  # the job ended (incomplete): its callback fired, once
    with httpx.Client(base_url=served, timeout=10) as http:
        retry = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "hooked"})
    assert retry.status_code == 202 and retry.json()["job_id"] == job_id
    # Nothing left to fire when the job ends again: the receiver gets one job.finished.
    assert list(store.webhooks.registrations()) == []
    assert store.webhooks.outbox_size() == 1


def test_a_retry_registers_again_the_callback_of_a_job_never_opened(
    served: str, redis_client: redis.Redis
) -> None:
    body = {**BODY, "callback_url": "http://127.0.0.1:9/hook"}
    store = make_store(redis_client, **SERVED)
    request = RefreshRequest.model_validate(body)
    digest = fingerprint(request.canonical_json())
    key = scoped_key(scope_of(TOKEN), "unopened")
    claim = store.idempotency.begin(key, digest, Registration.new(body["callback_url"]))
    assert isinstance(claim, Reservation)
    # Its POST died before the job opened, long enough ago that its registration was buried.
    store.webhooks.forget(claim.job_id)
    make_stale(redis_client)
    with httpx.Client(base_url=served, timeout=10) as http:
        retry = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "unopened"})
    assert retry.status_code == 202 and retry.json()["job_id"] == claim.job_id
    (registration,) = store.webhooks.registrations()
    assert registration.job_id == claim.job_id


def test_a_resumed_retry_with_skip_invalid_skips_the_paths_the_workers_took(
    served: str, redis_client: redis.Redis
) -> None:
    paths = [f"a.example.com/s/{i}" if i % 4 else f"ftp://a.example.com/{i}" for i in range(40)]
    body = {"paths": paths, "skip_invalid": True}
    job_id = died_after(redis_client, "skipping", body, 10)
    store = make_store(redis_client, **SERVED)
    taken = claim_batch(store, ObjectType.FILE)  # a worker takes what is in
    assert len(taken.paths) == 10
    with httpx.Client(base_url=served, timeout=10) as http:
        retry = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "skipping"})
    assert retry.status_code == 202, retry.text
    assert paths_counted(redis_client, job_id) == 30  # the valid paths asked for, once each
    pending = store.keys.of(ObjectType.FILE).pending
    assert not any(redis_client.zscore(pending, p) is not None for p in taken.paths)
    assert redis_client.zcard(pending) == 20
    # The 10th valid path is the body's 14th: the retry went on after it.
    assert retry.json()["resumed_after"] == 14 and retry.json()["accepted"] == 20
    assert [r["line"] for r in retry.json()["rejected"]] == [17, 21, 25, 29, 33, 37]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=5, url_quota=1_000_000, dir_quota=10_000)) as server:
        yield server


def test_a_resumed_retry_refreshes_no_path_a_worker_refreshed_already(
    served: str, redis_client: redis.Redis, cluster: Cluster
) -> None:
    cluster.configure()
    paths = [f"a.example.com/w/{i}" if i % 4 else f"ftp://a.example.com/{i}" for i in range(40)]
    body = {"paths": paths, "skip_invalid": True}
    job_id = died_after(redis_client, "worked", body, 10)
    cluster.start_workers(1)
    wait_for(lambda: len(cluster.accepted()) == 10, 30, cluster.logs)  # refreshed: quota spent
    with httpx.Client(base_url=served, timeout=10) as http:
        retry = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "worked"})
    assert retry.status_code == 202, retry.text
    cluster.wait_done([job_id])
    refreshed = Counter(cluster.accepted())
    assert set(refreshed) == {f"http://{p}" for p in paths if not p.startswith("ftp:")}
    assert max(refreshed.values()) == 1  # none twice
    assert paths_counted(redis_client, job_id) == 30


def test_a_retry_after_every_path_went_in_closes_the_job_and_sends_none_again(
    served: str, redis_client: redis.Redis
) -> None:
    job_id = died_after(redis_client, "all-in", BODY, len(BODY["paths"]))
    store = make_store(redis_client, **SERVED)
    taken = claim_batch(store, ObjectType.FILE)
    assert len(taken.paths) == len(BODY["paths"])
    with httpx.Client(base_url=served, timeout=10) as http:
        retry = http.post("/v1/refresh", json=BODY, headers={**AUTH, "Idempotency-Key": "all-in"})
        status = http.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
    assert retry.status_code == 202 and retry.json()["job_id"] == job_id
    assert retry.json()["accepted"] == len(BODY["paths"])
    assert paths_counted(redis_client, job_id) == len(BODY["paths"])
    assert redis_client.zcard(store.keys.of(ObjectType.FILE).pending) == 0
    assert status["state"] == "in_progress" and "incomplete" not in status


def test_a_resumed_job_keeps_its_header(served: str, redis_client: redis.Redis) -> None:
    job_id = died_after(redis_client, "header", BODY, 10)
    with httpx.Client(base_url=served, timeout=10) as http:
        retry = http.post("/v1/refresh", json=BODY, headers={**AUTH, "Idempotency-Key": "header"})
    assert retry.status_code == 202 and retry.json()["accepted"] == 20
    header = make_store(redis_client).jobs.header(job_id)
    assert header is not None and header.complete and not header.incomplete
    # The time (and so the place) of the first request, and counts of the whole job.
    assert header.created_at == 1e9
    assert (header.paths, header.accepted, header.duplicates) == (30, 30, 0)


def test_a_slow_post_keeps_its_key_while_its_enqueue_waits(
    served: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idempotency, "RUNNING_STALE_S", 1.0)
    monkeypatch.setattr(producer.idempotent, "RUNNING_BEAT_S", 0.2)
    original = JobStore.enqueue_chunks

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(2.5)  # a WAIT for replicas, a Redis blip: no progress to beat on
        return original(*args, **kwargs)

    monkeypatch.setattr(JobStore, "enqueue_chunks", slow)
    headers = {**AUTH, "Idempotency-Key": "slow"}
    with httpx.Client(base_url=served, timeout=10) as http, ThreadPoolExecutor(1) as pool:
        first = pool.submit(http.post, "/v1/refresh", json=BODY, headers=headers)
        time.sleep(1.8)
        retry = http.post("/v1/refresh", json=BODY, headers=headers)
        answered = first.result()
    assert answered.status_code == 202
    (job_id,) = jobs_made(redis_client)
    assert retry.status_code == 409 and retry.json()["job_id"] == job_id
    assert paths_counted(redis_client, job_id) == len(BODY["paths"])
