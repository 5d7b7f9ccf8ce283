"""Shared fixtures: a real redis-server per test session (flushed per test), settings.

A test that needs Redis starts its own ``redis-server`` on a free loopback port. Outside CI a
missing binary skips those tests; with ``CI=true`` it fails them, so CI cannot go green
without proving the Redis behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from sandbox import local
from sandbox.local import free_port

__all__ = ["RedisServer", "free_port", "in_ci", "make_settings", "make_store"]


def in_ci() -> bool:
    """CI=true: a test that needs a binary fails instead of skipping."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def RedisServer(workdir: Path, **options: Any) -> local.RedisServer:
    """A :class:`sandbox.local.RedisServer`, or skip (fail in CI) without the binary."""
    try:
        return local.RedisServer(workdir, **options)
    except FileNotFoundError as exc:
        if in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[local.RedisServer]:
    """One real redis-server for the whole test session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: local.RedisServer) -> Iterator[str]:
    """The session's Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A text-mode client of the session's Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def make_settings(**overrides: object) -> Settings:
    """Settings for tests: no .env, nothing from the environment unless given."""
    defaults: dict[str, object] = {
        "access_key_id": "testid",
        "access_key_secret": "testsecret",
        "endpoint": "http://127.0.0.1:9",
        "retry_base_delay_s": 0.0,
        "retry_max_delay_s": 0.0,
    }
    defaults.update(overrides)
    return Settings(_env_file=None, **defaults)  # type: ignore[arg-type]


def make_store(client: redis.Redis, **overrides: object) -> Store:
    """A store on ``client`` with :func:`make_settings` (``overrides`` applied)."""
    return Store(client, make_settings(**overrides))


@pytest.fixture
def cluster(redis_url: str, emulator: Any, tmp_path: Path) -> Iterator[Any]:
    """Worker processes, a producer and the emulator (each module's ``emulator`` fixture)
    on the session's Redis; every worker stopped at the end."""
    from tests.harness import Cluster

    c = Cluster(redis_url, emulator, tmp_path)
    yield c
    c.stop_workers()
    c.redis.close()
