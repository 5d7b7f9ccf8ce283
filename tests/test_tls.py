"""Redis with a password over TLS (``rediss://``): the worker, the producer's wake-up and the
CLI all work, and the password shows up in none of their output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import EmulatorConfig, EmulatorServer
from producer.producer import Producer
from tests.conftest import free_port, make_settings
from tests.harness import WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

PASSWORD = "tls-redis-pw-6f1c"


def _require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{binary} is not installed")
        pytest.skip(f"{binary} is not installed")
    return found


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server that speaks only TLS and wants a password; its URL trusts its cert."""
    openssl, server = _require("openssl"), _require("redis-server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    import redis

    client = redis.Redis.from_url(url)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, 10)
    client.close()
    yield url
    process.terminate()
    process.wait(10)


def test_workers_producer_and_cli_work_over_tls_with_a_password(
    tls_redis_url: str, tmp_path: Path
) -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        values = {
            "redis_url": tls_redis_url,
            "endpoint": emulator.url,
            "access_key_id": "testid",
            "access_key_secret": "testsecret",
            "flush_interval_s": 0.5,
            "flush_debounce_s": 0.05,
        }
        env = worker_env(**values)
        worker = WorkerProcess(env, tmp_path / "worker.log", name="tls", beat=True)
        try:
            worker.wait_ready()
            producer = Producer.from_settings(make_settings(**values))
            job = producer.enqueue(["a.example.com/1", "b.example.com/2"]).job_id
            wait_for(lambda: producer.status(job).to_dict()["state"] == "submitted", 30, worker.log)
            assert len(emulator.state.calls()) == 1
            out = subprocess.run(
                [sys.executable, "-m", "cdn_refresh", "status", job, "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            assert json.loads(out.stdout)["counts"]["submitted"] == 2
            assert PASSWORD not in out.stdout + out.stderr
        finally:
            worker.stop()
        time.sleep(0.1)
        assert PASSWORD not in worker.log()
