"""The HTTP API against a hostile client: a real uvicorn (``cdn-refresh api``) on loopback and
a real redis-server. No token costs no memory; a client that stalls is cut off; the bytes of
bodies held at once are bounded; an Idempotency-Key is its token's; a retry after the API was
killed mid-POST puts the rest of the paths in; nothing shows Redis's address."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from sandbox.local import ApiProcess, free_port, kill_group, worker_env
from tests.conftest import make_store

pytestmark = pytest.mark.redis

TOKEN = "tok-abuse-A-5e1c9b"
OTHER_TOKEN = "tok-abuse-B-77d0a4"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_TOKEN}"}
MB = 1024 * 1024


def api_env(redis_url: str, **extra: object) -> dict[str, str]:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "api_tokens": f"{TOKEN},{OTHER_TOKEN}",
        "webhook_allowed_hosts": "127.0.0.1:*",
        "log_level": "WARNING",
    }
    values.update(extra)
    return worker_env(**values)


@contextlib.contextmanager
def api_server(tmp_path: Path, redis_url: str, **extra: object) -> Iterator[ApiProcess]:
    with ApiProcess(api_env(redis_url, **extra), tmp_path / f"api-{free_port()}.log") as server:
        yield server


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def connect(server: ApiProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent before."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return True, received
        if not data:
            return True, received
        received += data
    return False, received


def send_some(sock: socket.socket, total: int) -> int:
    """Send up to ``total`` bytes of body, stopping when the server no longer takes them."""
    block = b"a" * (256 * 1024)
    sent = 0
    sock.settimeout(2)
    with contextlib.suppress(OSError):
        while sent < total:
            sent += sock.send(block)
    return sent


def test_a_request_without_a_token_is_refused_before_its_body_is_read(
    tmp_path: Path, redis_url: str
) -> None:
    with api_server(tmp_path, redis_url, api_max_body_bytes=10 * MB) as server:
        before = rss_bytes(server.process.pid)
        socks = []
        try:
            for _ in range(30):
                sock = connect(server)
                socks.append(sock)
                head = (
                    "POST /v1/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {10 * MB - 1}\r\n\r\n"
                )
                sock.sendall(head.encode())
                send_some(sock, 9 * MB)  # and then stall, as an attacker would
            time.sleep(0.5)
            grown = rss_bytes(server.process.pid) - before
            closed, answer = closed_within(socks[0], 5)
        finally:
            for sock in socks:
                sock.close()
    assert grown < 40 * MB, f"the server grew by {grown / MB:.0f} MB"
    assert closed and answer.startswith(b"HTTP/1.1 401")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "unauthorized"


def test_a_client_stalling_in_its_headers_is_cut_off(tmp_path: Path, redis_url: str) -> None:
    with api_server(tmp_path, redis_url, api_header_timeout_s=1) as server:
        silent = connect(server)  # sends nothing at all
        partial = connect(server)
        partial.sendall(b"POST /v1/refresh HTTP/1.1\r\nHost: x\r\nAuthor")
        try:
            started = time.monotonic()
            assert closed_within(partial, 5)[0]
            assert closed_within(silent, 5)[0]
            assert time.monotonic() - started < 4
            # A client that sends its headers in time is served as before.
            assert httpx.get(server.url + "/v1/quota", headers=AUTH).status_code == 200
        finally:
            silent.close()
            partial.close()


def test_a_client_stalling_in_its_body_gets_a_408_and_nothing_is_enqueued(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    with api_server(tmp_path, redis_url, api_body_timeout_s=1) as server:
        sock = connect(server)
        try:
            head = (
                "POST /v1/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
            )
            sock.sendall(head.encode() + b'{"paths": ["a.example.com/1"')
            started = time.monotonic()
            closed, answer = closed_within(sock, 5)
        finally:
            sock.close()
    assert closed and time.monotonic() - started < 4
    assert answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "body_timeout"
    assert redis_client.hlen(make_store(redis_client).keys.shared.jobs) == 0


def test_bodies_past_the_in_flight_bound_are_a_503_and_the_rest_go_on(
    tmp_path: Path, redis_url: str
) -> None:
    limits = {"api_max_body_bytes": 600_000, "api_max_body_bytes_in_flight": 1_000_000}
    with api_server(tmp_path, redis_url, **limits) as server:
        holding = []
        try:
            for _ in range(2):  # two bodies of 450 KB declared, half sent: 900 KB held
                sock = connect(server)
                holding.append(sock)
                head = (
                    "POST /v1/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Authorization: Bearer {TOKEN}\r\nContent-Length: 450000\r\n\r\n"
                )
                sock.sendall(head.encode() + b"x" * 200_000)
            time.sleep(0.3)
            body = {"paths": [f"a.example.com/{i}" for i in range(10_000)]}  # ~230 KB
            refused = httpx.post(server.url + "/v1/refresh", json=body, headers=AUTH)
        finally:
            for sock in holding:
                sock.close()
        time.sleep(0.3)
        accepted = httpx.post(server.url + "/v1/refresh", json=body, headers=AUTH)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "server_busy" and "message" in refused.json()
    assert accepted.status_code == 202  # what the stalled ones held was given back


def test_metrics_and_every_route_hide_the_redis_address_when_redis_is_down(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    with api_server(tmp_path, f"redis://:pw-9f2@127.0.0.1:{port}/0") as server:
        answers = [
            httpx.get(server.url + path, headers=AUTH)
            for path in ("/metrics", "/healthz", "/v1/quota", "/v1/jobs/1")
        ]
    for answer in answers:
        assert answer.status_code == 503 and answer.json()["error"] == "redis_unavailable"
        assert str(port) not in answer.text and "127.0.0.1" not in answer.text
        assert "pw-9f2" not in answer.text


def test_deeply_nested_json_is_an_invalid_request(tmp_path: Path, redis_url: str) -> None:
    nested = '{"paths": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with api_server(tmp_path, redis_url) as server:
        answer = httpx.post(
            server.url + "/v1/refresh",
            content=nested,
            headers={**AUTH, "Content-Type": "application/json"},
        )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def test_an_idempotency_key_belongs_to_its_token(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    body = {"paths": ["a.example.com/1"]}
    other_body = {"paths": ["a.example.com/2"]}
    with api_server(tmp_path, redis_url) as server, httpx.Client(base_url=server.url) as http:

        def post(auth: dict[str, str], key: str, json_body: dict[str, Any]) -> httpx.Response:
            return http.post(
                "/v1/refresh", json=json_body, headers={**auth, "Idempotency-Key": key}
            )

        mine = post(AUTH, "k1", body)
        # Token B's same key with the same body: B's own job, not A's answer replayed.
        same = post(OTHER_AUTH, "k1", body)
        # Token B's key with another body than A used it with: a job, not a 409.
        mine_2 = post(AUTH, "k2", body)
        theirs_2 = post(OTHER_AUTH, "k2", other_body)
        again = post(AUTH, "k1", body)
    assert {r.status_code for r in (mine, same, mine_2, theirs_2)} == {202}
    assert "idempotent-replayed" not in same.headers
    job_ids = {r.json()["job_id"] for r in (mine, same, mine_2, theirs_2)}
    assert len(job_ids) == 4
    assert again.headers["idempotent-replayed"] == "true" and again.json() == mine.json()
    # Kept under a digest: neither token nor key is in any Redis key or value.
    dump = json.dumps({k: redis_client.dump(k).hex() for k in redis_client.keys("*")})
    for secret in (TOKEN, OTHER_TOKEN, "k1"):
        assert secret.encode().hex() not in dump


def test_a_key_used_before_keys_were_per_token_still_gets_its_job(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    body = {"paths": ["a.example.com/1"]}
    store = make_store(redis_client)
    legacy = store.keys.idempotency(hashlib.sha256(b"old-key").hexdigest())
    with api_server(tmp_path, redis_url) as server, httpx.Client(base_url=server.url) as http:
        first = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "k0"})
        # The mark as an API from before the upgrade wrote it, under the key's hash alone.
        (scoped,) = redis_client.keys(store.keys.idempotency("*"))
        redis_client.rename(scoped, legacy)
        retry = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "old-key"})
    assert retry.status_code == 202 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert not redis_client.exists(legacy) and redis_client.keys(store.keys.idempotency("*"))
    assert redis_client.ttl(redis_client.keys(store.keys.idempotency("*"))[0]) > 0


def job_paths(redis_client: redis.Redis, job_id: str) -> int:
    counts = redis_client.hgetall(make_store(redis_client).keys.shared.job_counts)
    return sum(int(v) for k, v in counts.items() if k.startswith(f"{job_id}:"))


def kill_mid_post(server: ApiProcess, redis_client: redis.Redis, body: dict[str, Any]) -> str:
    """POST ``body`` with key ``bulk-1``; SIGKILL the server once some of it is in."""
    errors: list[BaseException] = []

    def post() -> None:
        try:
            httpx.post(
                server.url + "/v1/refresh",
                json=body,
                headers={**AUTH, "Idempotency-Key": "bulk-1"},
                timeout=60,
            )
        except httpx.TransportError as exc:
            errors.append(exc)

    poster = threading.Thread(target=post)
    poster.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job_paths(redis_client, "1") < 20_000:
        time.sleep(0.002)
    kill_group(server.process.pid)
    poster.join(30)
    assert errors, "the POST answered before it could be killed"
    return "1"


def test_a_retry_after_the_api_died_mid_post_puts_the_rest_of_the_paths_in(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    paths = [f"https://www.example.com/static/asset-{i:06d}.png" for i in range(100_000)]
    body = {"paths": paths, "priority": "bulk"}
    with api_server(tmp_path, redis_url) as server:
        job_id = kill_mid_post(server, redis_client, body)
    put_in = job_paths(redis_client, job_id)
    assert 0 < put_in < len(paths)
    # Its beat goes stale (RUNNING_STALE_S) as it does once a POST died: here, at once.
    (key,) = redis_client.keys(make_store(redis_client).keys.idempotency("*"))
    mark = json.loads(redis_client.get(key))
    redis_client.set(key, json.dumps({**mark, "beat": 0}), keepttl=True)
    with api_server(tmp_path, redis_url) as server, httpx.Client(base_url=server.url) as http:
        headers = {**AUTH, "Idempotency-Key": "bulk-1"}
        retry = http.post("/v1/refresh", json=body, headers=headers, timeout=60)
        again = http.post("/v1/refresh", json=body, headers=headers, timeout=60)
        status = http.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
    assert retry.status_code == 202, retry.text
    receipt = retry.json()
    # The receipt the OpenAPI document promises, of the same job, going on where it stopped.
    assert {"job_id", "accepted", "duplicates", "rejected"} <= set(receipt)
    assert receipt["job_id"] == job_id and 0 < receipt["resumed_after"] <= put_in
    assert receipt["resumed_after"] + receipt["accepted"] + receipt["duplicates"] == len(paths)
    assert job_paths(redis_client, job_id) == len(paths)  # every path in, none twice
    assert "incomplete" not in status and status["counts"]["pending"] == len(paths)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == receipt
    assert sorted(redis_client.hkeys(make_store(redis_client).keys.shared.jobs)) == [job_id]


def test_a_callback_secret_is_kept_for_its_callback_and_never_shown(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    own = "receiver-own-secret-5b7f0c"
    hook = "http://127.0.0.1:9/hook"
    body = {"paths": ["a.example.com/1"], "callback_url": hook}
    with api_server(tmp_path, redis_url, log_level="DEBUG") as server:
        with httpx.Client(base_url=server.url) as http:
            # No CDN_REFRESH_WEBHOOK_SECRET on this server: only a callback with its own.
            shared = http.post("/v1/refresh", json=body, headers=AUTH)
            short = http.post(
                "/v1/refresh", json={**body, "callback_secret": "short"}, headers=AUTH
            )
            accepted = http.post("/v1/refresh", json={**body, "callback_secret": own}, headers=AUTH)
        log = server.log()
    assert shared.status_code == 400 and shared.json()["error"] == "callback_not_allowed"
    assert short.status_code == 400 and short.json()["error"] == "invalid_request"
    assert "short" not in short.text.replace("String should have at least", "")
    assert accepted.status_code == 202 and own not in accepted.text
    (registration,) = make_store(redis_client).webhooks.registrations()
    assert registration.job_id == accepted.json()["job_id"] and registration.secret == own
    assert own not in log
