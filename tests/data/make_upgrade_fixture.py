"""Make ``upgrade_from_1628e5c.json``: a deployment's Redis as release 1628e5c left it.

Run with the OLD release's code, never in CI (tests/test_upgrade.py only reads the JSON)::

    git worktree add --detach /tmp/old-release 1628e5c
    python3 -m venv /tmp/old-venv && /tmp/old-venv/bin/pip install -q -e '/tmp/old-release[test]'
    cd /tmp/old-release && /tmp/old-venv/bin/python \\
        "$CHECKOUT/tests/data/make_upgrade_fixture.py" \\
        "$CHECKOUT/tests/data/upgrade_from_1628e5c.json"

(``$CHECKOUT``: this checkout.)

It starts a scratch ``redis-server``, builds the state through the old public API only
(Producer, Store, the FastAPI app), then writes every key as portable JSON: its type, its
value (strings, hashes, sets, lists, sorted sets with scores) and its TTL in ms. ``now`` is
Redis's clock at export: a loader shifts the times by its own clock minus ``now``.

What is in it (``expect`` in the JSON says the same, for the test):

- job ``done``: two Files claimed and submitted (a tracked call): its state was ``done``;
- job ``mixed``: six Files claimed in one batch; three submitted (task 9101), one released
  to retry (pending again, an attempt counted), two dead-lettered with an error;
- job ``bulk``: bulk Files, one of them submitted before (a repeat);
- job ``coalesced``: interactive Files, two of them pending in ``bulk`` already (coalesced),
  and one spelled with a ``..`` segment, which this release kept as it came;
- job ``dirs``: a Directory claimed and submitted (task 9201), then two pending Directories,
  one spelled with a ``..`` segment;
- job ``api``: a POST /v1/refresh with an Idempotency-Key (the key's mark, unscoped);
- the quota window every worker stored (86400 s) with the reservations of those claims.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

IDEMPOTENCY_KEY = "upgrade-fixture-key-1"
API_TOKEN = "fixture-token-0123456789abcdef"
API_PATH = "https://cdn.example.com/api/one.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings(redis_url: str) -> Any:
    from cdn_refresh.settings import Settings

    return Settings(
        _env_file=None,
        redis_url=redis_url,
        access_key_id="testid",
        access_key_secret="testsecret",
        endpoint="http://127.0.0.1:9",
        url_daily_quota=40,
        directory_daily_quota=10,
        quota_window_s=86400.0,
        refresh_cooldown_s=0,
        api_tokens=[API_TOKEN],
    )


def claim(store: Any, kind: Any) -> Any:
    from cdn_refresh.store.records import Batch

    batch = store.batches.claim(kind)
    assert isinstance(batch, Batch), batch
    return batch


def build(client: redis.Redis, redis_url: str) -> dict[str, Any]:
    """The deployment's story, through the old public API; returns what the test expects."""
    from cdn_refresh.constants import ObjectType, Priority
    from cdn_refresh.store import Store
    from cdn_refresh.store.records import Release
    from producer.producer import Producer

    store = Store(client, settings(redis_url))
    producer = Producer(store)  # no notify: no Celery
    file, directory = ObjectType.FILE, ObjectType.DIRECTORY
    jobs: dict[str, str] = {}

    jobs["done"] = producer.enqueue(
        ["cdn.example.com/done/1.png", "cdn.example.com/done/2.png"]
    ).job_id
    batch = claim(store, file)
    store.batches.submit(batch, (), ("9001",), "req-9001")

    mixed = [f"https://cdn.example.com/mixed/{i}.js" for i in range(1, 7)]
    jobs["mixed"] = producer.enqueue(mixed).job_id
    batch = claim(store, file)
    assert set(batch.paths) == set(mixed), batch.paths
    store.batches.submit(batch, tuple(mixed[:3]), ("9101",), "req-9101")
    store.batches.release(
        batch.id, file, Release.RETRY, paths=(mixed[3],), code="Throttling", message="slow down"
    )
    store.batches.release(
        batch.id,
        file,
        Release.FAILED,
        paths=tuple(mixed[4:]),
        code="InvalidObjectPath.Malformed",
        message="The specified ObjectPath is invalid.",
    )
    time.sleep(0.01)  # a later rank for every later enqueue

    bulk = [f"https://cdn.example.com/bulk/{i}.css" for i in range(1, 5)] + [mixed[0]]
    jobs["bulk"] = producer.enqueue(bulk, priority=Priority.BULK).job_id
    time.sleep(0.01)
    dotted_file = "https://cdn.example.com/img/../logo.png"
    coalesced = [bulk[0], bulk[1], "https://cdn.example.com/news/today.html", dotted_file]
    jobs["coalesced"] = producer.enqueue(coalesced).job_id

    jobs["dir_sent"] = producer.enqueue(["https://cdn.example.com/static/"], directory).job_id
    batch = claim(store, directory)
    store.batches.submit(batch, (), ("9201",), "req-9201")
    dotted_dir = "https://cdn.example.com/old/../assets/"
    dirs = ["https://cdn.example.com/theme/", dotted_dir]
    jobs["dirs"] = producer.enqueue(dirs, directory).job_id

    jobs["api"] = post_with_idempotency_key(store)
    lookups = {
        "pending": [mixed[3], *bulk, coalesced[2], dotted_file, API_PATH],
        "submitted": [*(f"http://cdn.example.com/done/{i}.png" for i in (1, 2)), *mixed[1:3]],
        "failed": mixed[4:],
    }
    states = {job: producer.status(job_id).state.value for job, job_id in jobs.items()}
    return {
        "jobs": jobs,
        "states": states,
        "files": lookups,
        "directories": {"pending": dirs, "submitted": ["https://cdn.example.com/static/"]},
        "tasks": {"9001": "done", "9101": "mixed", "9201": "dir_sent"},
        "dotted": {"File": dotted_file, "Directory": dotted_dir},
        "idempotency_key": IDEMPOTENCY_KEY,
        "api_token": API_TOKEN,
        "quota_used": {"File": 8, "Directory": 1},
        "limits": {"File": 40, "Directory": 10},
        "window_s": 86400.0,
    }


def post_with_idempotency_key(store: Any) -> str:
    """One POST /v1/refresh of the old API with an Idempotency-Key; its job id."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(store.settings, notify_workers=False)
    with TestClient(app) as http:
        answer = http.post(
            "/v1/refresh",
            json={"paths": [API_PATH]},
            headers={"Authorization": f"Bearer {API_TOKEN}", "Idempotency-Key": IDEMPOTENCY_KEY},
        )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["job_id"])


def export(client: redis.Redis) -> list[dict[str, Any]]:
    """Every key: name, type, TTL (ms, -1: none) and value, in a JSON-able shape."""
    out = []
    for name in sorted(client.scan_iter(count=1000)):
        kind = client.type(name)
        if kind == "string":
            value: Any = client.get(name)
        elif kind == "hash":
            value = dict(sorted(client.hgetall(name).items()))
        elif kind == "zset":
            value = [[m, s] for m, s in client.zrange(name, 0, -1, withscores=True)]
        elif kind == "set":
            value = sorted(client.smembers(name))
        elif kind == "list":
            value = client.lrange(name, 0, -1)
        else:
            raise ValueError(f"{name}: type {kind} is not exported")
        out.append({"key": name, "type": kind, "ttl_ms": client.pttl(name), "value": value})
    return out


def main(target: str) -> None:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port, decode_responses=True)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            expect = build(client, f"redis://127.0.0.1:{port}/0")
            seconds, micros = client.time()
            document = {
                "release": "1628e5c",
                "now": seconds + micros / 1e6,
                "expect": expect,
                "keys": export(client),
            }
        finally:
            server.terminate()
            server.wait()
    Path(target).write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"wrote {target}: {len(document['keys'])} keys")


if __name__ == "__main__":
    main(sys.argv[1])
