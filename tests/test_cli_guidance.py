"""What the command line tells a new user: errors in one line, paths it has never seen,
times a person can read, and where a pending path stands. CliRunner against a real
redis-server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from cdn_refresh.cli import main
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch, Release
from tests.conftest import make_settings

pytestmark = pytest.mark.redis


@pytest.fixture
def run(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("CDN_REFRESH_ALLOWED_DOMAINS", "CDN_REFRESH_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "CDN_REFRESH_REDIS_URL": redis_url,
        "CDN_REFRESH_FLUSH_DEBOUNCE_S": "0",
        "CDN_REFRESH_ACCESS_KEY_SECRET": "cli-secret-value",
    }

    def invoke(*args: str, **extra_env: str) -> Result:
        return CliRunner().invoke(main, list(args), env={**env, **extra_env})

    return invoke


def _snapshot(client: redis.Redis) -> dict[str, object]:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def _dead_letter(client: redis.Redis, path: str) -> None:
    store = Store(client, make_settings(max_attempts=1))
    from producer.producer import Producer

    Producer(store).enqueue([path])
    batch = store.batches.claim("File", time.time())  # type: ignore[arg-type]
    assert isinstance(batch, Batch)
    store.batches.release(batch.id, "File", Release.FAILED, time.time(), code="Refused")  # type: ignore[arg-type]


def test_replaying_a_file_path_without_a_type_replays_it_and_exits_0(
    run, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    _dead_letter(redis_client, "a.com/1.png")
    result = run("dead-letter", "replay", "a.com/1.png", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"replayed": 1}
    assert "Traceback" not in result.output


def test_replaying_a_path_invalid_as_every_type_changes_nothing_and_says_why(
    run, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    _dead_letter(redis_client, "a.com/1.png")
    before = _snapshot(redis_client)
    result = run("dead-letter", "replay", "a.com/1.png", "ftp://a.com/x")
    assert result.exit_code == 2
    assert "nothing replayed" in result.output and "Traceback" not in result.output
    assert _snapshot(redis_client) == before


@pytest.mark.parametrize("command", [("enqueue",), ("plan",)])
def test_a_missing_from_file_is_a_one_line_error_and_exit_2(
    run, redis_client: redis.Redis, command: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    result = run(*command, "--from-file", "no-such-file.txt")
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert "no-such-file.txt" in result.output and "Traceback" not in result.output
    assert redis_client.dbsize() == 0
