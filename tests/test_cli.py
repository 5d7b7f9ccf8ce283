"""The ``cdn-refresh`` command line, with click's CliRunner against a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from cdn_refresh.cli import main

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

    def invoke(*args: str, input: str | None = None, **extra_env: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, list(args), input=input, env={**env, **extra_env})

    return invoke


BAD_INPUTS = [
    ("", "empty"),
    ("   ", "empty"),
    ("a.com/x\rb.com/y", "control character U+000D"),
    ("a.com/x\nb.com/y", "control character U+000A"),
    ("a.com/x\x00", "control character U+0000"),
    ("a.com/x\ty", "control character U+0009"),
    ("a.com/" + "x" * 1100, "longer than 1024 characters"),
    ("http:///nohost", "no host"),
    ("*.example.com/x", "wildcard host"),
    ("ftp://a.com/x", "scheme ftp not allowed"),
    # A scheme a slash short must not become a host named "https".
    ("https:/www.example.com/typo.png", "no host"),
    ("http:/x", "no host"),
    ("https:?x", "no host"),
    ("https:", "no host"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_INPUTS)
def test_each_kind_of_bad_input_exits_2_and_enqueues_nothing(
    run,
    redis_client: redis.Redis,
    bad: str,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    result = run("enqueue", "good.example.com/1", bad, "--json")
    assert result.exit_code == 2, result.output
    body = json.loads(result.stdout)
    assert body["job_id"] == ""
    assert body["accepted"] == 0
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [(2, reason)]
    assert redis_client.dbsize() == 0


def test_a_directory_path_must_end_with_a_slash(run, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    result = run("enqueue", "--type", "directory", "a.com/dir", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["rejected"][0]["reason"] == "directory path must end with /"
    assert redis_client.dbsize() == 0


def test_a_domain_outside_the_allowed_list_is_rejected(run, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "enqueue",
        "cdn.example.com/1",
        "evil.org/1",
        "--json",
        CDN_REFRESH_ALLOWED_DOMAINS="*.example.com",
    )
    assert result.exit_code == 2
    assert json.loads(result.stdout)["rejected"][0]["reason"] == "domain evil.org not allowed"
    assert redis_client.dbsize() == 0


def test_a_newline_in_a_file_line_cannot_smuggle_a_second_path(
    run,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    result = run("enqueue", "--from-file", "-", "--json", input="a.com/1\na.com/x\rb.com/y\n")
    assert result.exit_code == 2
    rejected = json.loads(result.stdout)["rejected"]
    assert [(r["line"], r["reason"]) for r in rejected] == [(2, "control character U+000D")]
    assert redis_client.dbsize() == 0


def test_a_lone_carriage_return_never_splits_a_line_into_two_paths(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "paths.txt"
    listing.write_bytes(b"a.com/1\na.com/x\ra.com/evil\na.com/3\n")
    result = run("enqueue", "--from-file", str(listing), "--skip-invalid", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["accepted"] == 2  # a.com/1 and a.com/3; nothing of line 2
    assert [(r["line"], r["reason"]) for r in body["rejected"]] == [(2, "control character U+000D")]


def test_a_file_with_crlf_line_endings_is_read_line_by_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "paths.txt"
    listing.write_bytes(b"a.com/1\r\na.com/2\r\n")
    result = run("enqueue", "--from-file", str(listing), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 2


def test_bytes_that_are_not_utf8_are_rejected_with_their_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "paths.txt"
    listing.write_bytes(b"a.com/1\na.com/\xff\n")
    result = run("enqueue", "--from-file", str(listing), "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["rejected"][0]["line"] == 2


def test_skip_invalid_enqueues_the_rest_and_lists_the_rejects(run) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "enqueue",
        "--from-file",
        "-",
        "--skip-invalid",
        "--json",
        input="a.com/1\nftp://a.com/2\na.com/1\nb.com/3\n",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["accepted"], body["duplicates"]) == (2, 1)
    assert body["rejected"] == [
        {"line": 2, "path": "ftp://a.com/2", "reason": "scheme ftp not allowed"}
    ]


def test_status_lookup_quota_and_dead_letter_speak_json(run) -> None:  # type: ignore[no-untyped-def]
    job = json.loads(run("enqueue", "a.com/1", "--json").stdout)["job_id"]
    status = json.loads(run("status", job, "--json").stdout)
    assert status["state"] == "pending"
    assert status["counts"] == {"pending": 1, "in_flight": 0, "submitted": 0, "failed": 0}
    found = json.loads(run("lookup", "HTTP://A.COM/1", "--json").stdout)
    assert (found["path"], found["state"]) == ("http://a.com/1", "pending")
    quota = json.loads(run("quota", "--json").stdout)
    assert quota["file"]["pending"] == 1 and quota["file"]["remaining"] == 2000
    assert json.loads(run("dead-letter", "list", "--json").stdout) == []
    assert json.loads(run("dead-letter", "replay", "--all", "--json").stdout) == {"replayed": 0}
    missing = run("status", "nope")
    assert missing.exit_code != 0 and "no job nope" in missing.output


def test_bad_settings_fail_with_the_variable_named_and_no_secret(run) -> None:  # type: ignore[no-untyped-def]
    result = run("quota", CDN_REFRESH_URL_DAILY_QUOTA="lots")
    assert result.exit_code == 1
    assert "CDN_REFRESH_URL_DAILY_QUOTA" in result.output
    assert "cli-secret-value" not in result.output


def test_an_unreachable_redis_is_a_one_line_error_without_the_password(run) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    url = f"redis://:hidden-pw-1@127.0.0.1:{free_port()}/0"
    result = run("quota", CDN_REFRESH_REDIS_URL=url)
    assert result.exit_code == 1
    assert "Redis: ConnectionError" in result.output
    assert "Traceback" not in result.output
    assert "hidden-pw-1" not in result.output
