"""The HTTP API against a real uvicorn server on loopback and a real redis-server: every
status code, nothing enqueued on a 400 or 413, idempotency, the same documents as the CLI's
``--json``, and no token in any log line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from sandbox.local import ApiProcess, free_port, local_redis_flush, worker_env
from tests.conftest import make_store

pytestmark = pytest.mark.redis

TOKEN = "tok-Secret-7f3a9c1e5b2d"
OTHER_TOKEN = "tok-other-0d8e6b4a"
MAX_BODY = 64 * 1024
MAX_PATHS = 50
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def api_env(redis_url: str, **extra: object) -> dict[str, str]:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "api_tokens": f"{OTHER_TOKEN},{TOKEN}",
        "api_max_body_bytes": MAX_BODY,
        "api_max_paths": MAX_PATHS,
        "webhook_secret": "hook-secret",
        "webhook_allowed_hosts": "127.0.0.1:*",
        "log_level": "DEBUG",
    }
    values.update(extra)
    return worker_env(**values)


@pytest.fixture(scope="module")
def api(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    log = tmp_path_factory.mktemp("api") / "api.log"
    with ApiProcess(api_env(redis_server.url), log) as server:
        yield server


@pytest.fixture
def http(api: ApiProcess, redis_url: str) -> Iterator[httpx.Client]:
    """A client of the module's server; Redis emptied before each test (``redis_url``)."""
    with httpx.Client(base_url=api.url, timeout=10) as client:
        yield client


def nothing_enqueued(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # The only keys an enqueue that stopped at validation may leave: none.
        return [k for k in client.keys("*") if "pending" in k or ":jobs" in k] == []
    finally:
        client.close()


def cli_json(redis_url: str, *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "cdn_refresh", *args, "--json"],
        env=worker_env(redis_url=redis_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(out.stdout)


def test_the_openapi_schema_lists_every_route(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    routes = {"/v1/refresh", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/lookup", "/v1/quota", "/healthz"}
    assert routes <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    # What the API really answers: its own error shape and a 400, never FastAPI's 422.
    refresh = schema["paths"]["/v1/refresh"]["post"]["responses"]
    assert {"202", "400", "401", "409", "413", "503"} <= set(refresh)
    assert refresh["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RefreshReceipt"
    )
    assert refresh["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorDocument"
    )
    assert "422" not in json.dumps(schema) and "HTTPValidationError" not in json.dumps(schema)


def test_every_document_is_the_clis_json_document(http: httpx.Client, redis_url: str) -> None:
    paths = ["https://www.example.com/a.png", "www.example.com/a.png", "b.example.com/x"]
    posted = http.post("/v1/refresh", json={"paths": paths}, headers=AUTH)
    assert posted.status_code == 202
    assert posted.headers["location"] == f"/v1/jobs/{posted.json()['job_id']}"
    job_id = posted.json()["job_id"]
    assert http.get(f"/v1/jobs/{job_id}", headers=AUTH).json() == cli_json(
        redis_url, "status", job_id
    )
    lookup = http.get("/v1/lookup", params={"path": "HTTP://B.example.com:80/x"}, headers=AUTH)
    assert lookup.json() == cli_json(redis_url, "lookup", "b.example.com/x")
    assert http.get("/v1/quota", headers=AUTH).json() == cli_json(redis_url, "quota")
    # The same request through the CLI, from an empty Redis: the same receipt, but the job id.
    local_redis_flush(redis_url)
    by_cli = cli_json(redis_url, "enqueue", *paths)
    assert {**posted.json(), "job_id": "-"} == {**by_cli, "job_id": "-"}
    assert list(posted.json()) == list(by_cli)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "basic", "longer", "empty"],
)
def test_every_v1_route_refuses_a_missing_or_wrong_token(
    http: httpx.Client, redis_url: str, headers: dict[str, str]
) -> None:
    answers = [
        http.post("/v1/refresh", json={"paths": ["a.example.com/x"]}, headers=headers),
        http.get("/v1/jobs/1", headers=headers),
        http.get("/v1/jobs", headers=headers),
        http.get("/v1/lookup", params={"path": "a.example.com/x"}, headers=headers),
        http.get("/v1/quota", headers=headers),
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in answer.text
    assert nothing_enqueued(redis_url)


def test_either_configured_token_is_accepted_and_health_and_metrics_need_none(
    http: httpx.Client,
) -> None:
    assert http.get("/v1/quota", headers={"Authorization": f"Bearer {OTHER_TOKEN}"}).is_success
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/metrics").status_code == 200


def test_an_invalid_path_is_a_400_with_rejected_and_nothing_enqueued(
    http: httpx.Client, redis_url: str
) -> None:
    body = {"paths": ["a.example.com/ok", "a.example.com/bad\nInjected: x", "https:/x"]}
    answer = http.post("/v1/refresh", json=body, headers=AUTH)
    assert answer.status_code == 400
    doc = answer.json()
    assert doc["error"] == "rejected" and doc["job_id"] == "" and doc["accepted"] == 0
    assert [r["line"] for r in doc["rejected"]] == [2, 3]
    assert nothing_enqueued(redis_url)
    skipped = http.post("/v1/refresh", json={**body, "skip_invalid": True}, headers=AUTH)
    assert skipped.status_code == 202
    assert skipped.json()["accepted"] == 1 and len(skipped.json()["rejected"]) == 2
    # Every path invalid: no job, so no 202 (and a callback would never be called): a 400.
    hook = "http://127.0.0.1/hook"
    none_valid = {"paths": body["paths"][1:], "skip_invalid": True, "callback_url": hook}
    answer = http.post("/v1/refresh", json=none_valid, headers=AUTH)
    assert answer.status_code == 400 and answer.json()["error"] == "rejected"
    assert answer.json()["job_id"] == "" and len(answer.json()["rejected"]) == 2


def test_every_operation_of_the_table_is_a_type_of_refresh_and_lookup(
    http: httpx.Client, redis_url: str
) -> None:
    body = {"paths": ["a.example.com/img/.*\\.png", "a.example.com/(x"], "type": "regex"}
    refused = http.post("/v1/refresh", json=body, headers=AUTH)
    assert refused.status_code == 400 and refused.json()["error"] == "rejected"
    assert refused.json()["rejected"][0]["reason"].startswith("regex does not compile")
    assert nothing_enqueued(redis_url)
    body["paths"] = body["paths"][:1]
    assert http.post("/v1/refresh", json=body, headers=AUTH).status_code == 202
    variants = {"paths": ["a.example.com/a.js?v=1", "a.example.com/a.js?v=2"]}
    posted = http.post("/v1/refresh", json={**variants, "type": "ignore-params"}, headers=AUTH)
    assert posted.status_code == 202 and posted.json()["accepted"] == 1
    for path, kind in (
        ("a.example.com/img/.*\\.png", "regex"),
        ("a.example.com/a.js", "IGNORE-PARAMS"),
    ):
        answer = http.get("/v1/lookup", params={"path": path, "type": kind}, headers=AUTH)
        assert answer.status_code == 200 and answer.json()["state"] == "pending", answer.text
    labels = http.get("/openapi.json").json()["components"]["schemas"]["RefreshRequest"]
    assert labels["properties"]["type"]["enum"] == ["file", "directory", "regex", "ignore-params"]


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b'{"paths": "a.example.com/x"}',
        b'{"paths": []}',
        b'{"paths": ["a.example.com/x"], "type": "tag"}',
        b'{"paths": ["a.example.com/x"], "priority": "urgent"}',
        b'{"paths": ["a.example.com/x"], "extra": 1}',
        b'{"paths": [1]}',
    ],
    ids=["malformed", "not-a-list", "empty", "type", "priority", "unknown-field", "not-a-string"],
)
def test_a_body_off_the_schema_is_a_400_and_enqueues_nothing(
    http: httpx.Client, redis_url: str, content: bytes
) -> None:
    answer = http.post(
        "/v1/refresh", content=content, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
    assert nothing_enqueued(redis_url)


def test_too_large_a_body_or_too_many_paths_is_a_413_and_enqueues_nothing(
    http: httpx.Client, redis_url: str
) -> None:
    big = {"paths": [f"a.example.com/{'x' * 1000}/{i}" for i in range(70)]}
    assert len(json.dumps(big)) > MAX_BODY
    answer = http.post("/v1/refresh", json=big, headers=AUTH)
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds as the body streams
        yield b'{"paths": ['
        for i in range(2000):
            yield f'"a.example.com/{i}/{"y" * 40}",'.encode()
        yield b'"a.example.com/end"]}'

    streamed = http.post("/v1/refresh", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    many = {"paths": [f"a.example.com/{i}" for i in range(MAX_PATHS + 1)]}
    answer = http.post("/v1/refresh", json=many, headers=AUTH)
    assert answer.status_code == 413 and answer.json()["error"] == "too_many_paths"
    assert nothing_enqueued(redis_url)


def test_an_idempotency_key_returns_the_same_job_and_enqueues_once(
    http: httpx.Client, redis_url: str
) -> None:
    body = {"paths": ["a.example.com/1", "a.example.com/2"]}
    headers = {**AUTH, "Idempotency-Key": "order-1234"}
    first = http.post("/v1/refresh", json=body, headers=headers)
    again = http.post("/v1/refresh", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    store = make_store(redis.Redis.from_url(redis_url, decode_responses=True))
    assert store.redis.get(store.keys.shared.job_seq) == "1"  # one job made, not two
    other = http.post("/v1/refresh", json=body, headers={**AUTH, "Idempotency-Key": "order-9"})
    assert other.json()["job_id"] != first.json()["job_id"]
    reused = http.post("/v1/refresh", json={"paths": ["a.example.com/3"]}, headers=headers)
    assert reused.status_code == 409 and reused.json()["error"] == "idempotency_conflict"
    # A refused request keeps no key: corrected, the retry goes in.
    bad = {"paths": ["a.example.com/\x00"]}
    retry_headers = {**AUTH, "Idempotency-Key": "order-77"}
    assert http.post("/v1/refresh", json=bad, headers=retry_headers).status_code == 400
    bad_then_good = http.post(
        "/v1/refresh", json={"paths": ["a.example.com/ok"]}, headers=retry_headers
    )
    assert bad_then_good.status_code == 202


def test_an_unknown_job_is_a_404_and_an_invalid_lookup_a_400(http: httpx.Client) -> None:
    answer = http.get("/v1/jobs/404404", headers=AUTH)
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"
    answer = http.get("/v1/lookup", params={"path": "https:/x"}, headers=AUTH)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_path"
    answer = http.get("/v1/lookup", params={"path": "a.example.com/", "type": "x"}, headers=AUTH)
    assert answer.status_code == 400


def test_a_path_never_seen_is_a_404_with_state_unknown_and_a_hint(
    http: httpx.Client, redis_url: str
) -> None:
    posted = http.post("/v1/refresh", json={"paths": ["https://a.example.com/x"]}, headers=AUTH)
    assert posted.status_code == 202
    answer = http.get("/v1/lookup", params={"path": "a.example.com/x"}, headers=AUTH)
    assert answer.status_code == 404
    assert answer.json()["state"] == "unknown"
    assert "https://a.example.com/x" in answer.json()["hint"]
    assert answer.json() == cli_json(redis_url, "lookup", "a.example.com/x")


def test_jobs_lists_the_recent_jobs_as_the_cli_does(http: httpx.Client, redis_url: str) -> None:
    for path in ("a.example.com/1", "a.example.com/2"):
        assert http.post("/v1/refresh", json={"paths": [path]}, headers=AUTH).status_code == 202
    listed = http.get("/v1/jobs", headers=AUTH)
    assert listed.status_code == 200
    assert [j["job_id"] for j in listed.json()] == ["2", "1"]
    assert listed.json() == cli_json(redis_url, "jobs")
    pending = http.get("/v1/jobs", params={"state": "pending", "limit": 1}, headers=AUTH)
    assert [j["job_id"] for j in pending.json()] == ["2"]
    assert http.get("/v1/jobs", params={"state": "nope"}, headers=AUTH).status_code == 400


def test_a_callback_to_a_host_not_allowed_is_a_400_and_enqueues_nothing(
    http: httpx.Client, redis_url: str
) -> None:
    for url in ("http://10.0.0.1/hook", "file:///etc/passwd", "http://u:p@127.0.0.1/x"):
        body = {"paths": ["a.example.com/x"], "callback_url": url}
        answer = http.post("/v1/refresh", json=body, headers=AUTH)
        assert answer.status_code == 400 and answer.json()["error"] == "callback_not_allowed"
    assert nothing_enqueued(redis_url)


def test_redis_down_is_a_503_with_a_clear_message(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with ApiProcess(api_env(down), tmp_path / "api.log") as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        answers = [
            client.post("/v1/refresh", json={"paths": ["a.example.com/x"]}, headers=AUTH),
            client.get("/v1/jobs/1", headers=AUTH),
            client.get("/v1/quota", headers=AUTH),
            client.get("/metrics"),
            client.get("/healthz"),
        ]
        client.close()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "redis_unavailable"
        assert "Redis is unavailable" in answer.json()["message"]


def test_the_token_is_in_no_log_line(api: ApiProcess, http: httpx.Client) -> None:
    # Every kind of request, right and wrong, then the whole DEBUG log of the server.
    http.post("/v1/refresh", json={"paths": ["a.example.com/x"]}, headers=AUTH)
    http.get("/v1/quota", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
    http.get("/v1/quota", headers={"Authorization": f"Token {TOKEN}"})
    http.get("/v1/jobs/1", headers=AUTH)
    http.post("/v1/refresh", content=b"{", headers=AUTH)
    log = api.log()
    assert "POST /v1/refresh" in log and "GET /v1/quota" in log
    for secret in (TOKEN, OTHER_TOKEN, "hook-secret"):
        assert secret not in log


def test_tokens_and_the_webhook_secret_never_show_in_settings_or_their_errors() -> None:
    from cdn_refresh.settings import SettingsError, load_settings

    settings = load_settings(
        _env_file=None, api_tokens=f"{TOKEN}, {OTHER_TOKEN}", webhook_secret="hook-secret"
    )
    assert [t.get_secret_value() for t in settings.api.tokens] == [TOKEN, OTHER_TOKEN]
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert TOKEN not in shown and "hook-secret" not in shown
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, api_tokens=TOKEN, api_max_paths="many")
    assert "CDN_REFRESH_API_MAX_PATHS" in str(caught.value) and TOKEN not in str(caught.value)
