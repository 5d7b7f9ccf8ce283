"""The ``cdn-refresh`` command line, with click's CliRunner against a real redis-server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from cdn_refresh.cli import main
from cdn_refresh.lines import MAX_LINE_BYTES, read_lines
from cdn_refresh.paths import InvalidPathError, OverlongInput, normalize_path
from cdn_refresh.store import Store
from cdn_refresh.store.quota import QuotaWindowMismatchError
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


LONG_LINE = b"https://x.example.com/" + b"a" * (20 * 1024 * 1024)


def test_a_20_mb_line_is_refused_with_its_line_number_and_a_short_output(
    run,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    stdin = b"a.com/1\n" + LONG_LINE + b"\nftp://a.com/3\n"
    result = run("enqueue", "--from-file", "-", "--json", input=stdin)
    assert result.exit_code == 2
    assert len(result.output) < 10_000
    rejected = json.loads(result.stdout)["rejected"]
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (2, "longer than 1024 characters"),
        (3, "scheme ftp not allowed"),
    ]
    assert rejected[0]["path"] == f"{LONG_LINE[:100].decode()}... ({len(LONG_LINE)} characters)"
    assert redis_client.dbsize() == 0


def test_long_lines_are_listed_short_as_text_and_the_other_lines_enqueued(run) -> None:  # type: ignore[no-untyped-def]
    stdin = LONG_LINE + b"\r\na.com/2\n" + LONG_LINE + b"\na.com/4\n" + LONG_LINE
    refused = run("enqueue", "--from-file", "-", input=stdin)
    assert refused.exit_code == 2
    assert len(refused.output) < 10_000
    assert "line 3: longer than 1024 characters: " in refused.stderr
    skipped = run("enqueue", "--from-file", "-", "--skip-invalid", input=stdin)
    assert skipped.exit_code == 0, skipped.output[:1000]
    assert len(skipped.output) < 10_000
    assert "2 accepted" in skipped.output
    for line in (1, 3, 5):
        assert f"rejected line {line}: longer than 1024 characters: " in skipped.output
    assert f"... ({len(LONG_LINE)} characters)'" in skipped.output


def _lines(data: bytes) -> list[str]:
    return list(read_lines(io.BytesIO(data)))


def test_lines_up_to_the_bound_are_read_whole_and_keep_their_endings_rules() -> None:
    longest = b"a" * MAX_LINE_BYTES
    assert _lines(longest + b"\r\nb\rc\n\xff\nlast") == [
        longest.decode(),
        "b\rc",
        "\udcff",
        "last",
    ]
    assert not any(isinstance(line, OverlongInput) for line in _lines(longest + b"\r\n"))
    # One byte more fills the read without a "\n" left out: whole still, and too long.
    assert type(_lines(longest + b"a\n")[0]) is str


@pytest.mark.parametrize(
    ("line", "length"),
    [
        (b"a" * (MAX_LINE_BYTES + 2) + b"\n", MAX_LINE_BYTES + 2),
        # The "\r" of a "\r\n" ending falls at the end of the first piece read.
        (b"a" * (MAX_LINE_BYTES + 1) + b"\r\n", MAX_LINE_BYTES + 1),
        (b"a" * 100_000 + b"\r\n", 100_000),
        (b"a" * 100_000 + b"\r", 100_001),  # at the end of the stream, no newline
        ("\U0001f600".encode() * 5000 + b"\n", 5000),  # 4-byte characters
        (b"\xff" * 20_000 + b"\n", 20_000),  # not UTF-8: one character a byte
        (b"\xc3" + "\u00e9".encode() * 10_000, 10_001),
    ],
)
def test_a_longer_line_is_read_in_pieces_and_counted_as_one(line: bytes, length: int) -> None:
    ended = line.endswith(b"\n")
    lines = _lines(b"a.com/1\n" + line + (b"a.com/3" if ended else b""))
    assert lines[0] == "a.com/1"
    assert lines[2:] == (["a.com/3"] if ended else [])
    overlong = lines[1]
    assert isinstance(overlong, OverlongInput)
    # The length len() of the whole line would have (read whole, as before) is the one shown.
    whole = line[:-2] if line.endswith(b"\r\n") else line[:-1] if ended else line
    assert overlong.length == length == len(whole.decode("utf-8", errors="surrogateescape"))
    with pytest.raises(InvalidPathError, match="longer than 1024 characters"):
        normalize_path(overlong, "File")


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
    assert status["counts"] == {
        "pending": 1,
        "in_flight": 0,
        "submitted": 0,
        "failed": 0,
        "complete": 0,
    }
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
    assert "Redis at CDN_REFRESH_REDIS_URL: ConnectionError" in result.output
    assert "Traceback" not in result.output
    assert "hidden-pw-1" not in result.output


def _snapshot(client: redis.Redis) -> dict[str, object]:
    """Every key with its value, to prove a command wrote nothing."""
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def test_plan_counts_calls_and_days_with_and_without_promotion_and_writes_nothing(
    run,  # type: ignore[no-untyped-def]
    redis_url: str,
    tmp_path: Path,
) -> None:
    client = redis.Redis.from_url(redis_url)
    pending = [f"a.com/2026/12/{d:02d}/{i}.jpg" for d in range(10) for i in range(15)]
    assert run("enqueue", "--priority", "bulk", *pending, "--json").exit_code == 0
    assert run("enqueue", "--type", "directory", "b.com/static/", "--json").exit_code == 0
    more = tmp_path / "nightly.txt"
    more.write_text("\n".join([f"c.com/news/{i}.html" for i in range(50)] + ["b.com/static/x.css"]))
    before = _snapshot(client)
    result = run(
        "plan",
        "--json",
        "--from-file",
        str(more),
        CDN_REFRESH_URL_DAILY_QUOTA="100",
        CDN_REFRESH_DIRECTORY_DAILY_QUOTA="10",
    )
    assert result.exit_code == 0, result.output
    assert _snapshot(client) == before
    plan = json.loads(result.output)
    assert plan["file"] == {
        "pending": 201,
        "calls": 1,
        "days_to_drain": 2.0,
        "covered_by_pending_directories": 1,
    }
    assert plan["directory"] == {"pending": 1, "calls": 1, "days_to_drain": 0.1}
    # 200 Files to send, 100 a day: one Directory over a.com's tree covers 150 of them.
    assert plan["promotion"] == {
        "enabled": False,
        "directories": ["http://a.com/2026/12/"],
        "file_paths_covered": 150,
        "days_to_drain": 0.5,
    }
    text = run("plan", CDN_REFRESH_URL_DAILY_QUOTA="100").output
    assert "file       pending=150 calls=1 drains in 1.5 days" in text
    assert "promotion  off" in text


def test_plan_drains_at_the_stored_limit_not_the_readers_own(run) -> None:  # type: ignore[no-untyped-def]
    paths = [f"a.com/{i}.jpg" for i in range(300)]
    assert run("enqueue", *paths, "--json").exit_code == 0
    assert run("quota", "--set-url-quota", "100").exit_code == 0
    result = run("plan", "--json", CDN_REFRESH_URL_DAILY_QUOTA="300")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["file"]["days_to_drain"] == 3.0


def test_plan_refuses_invalid_input_and_names_the_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.com/ok\nftp://a.com/x\n")
    result = run("plan", "--from-file", str(bad))
    assert result.exit_code == 2
    assert "line 2: scheme ftp not allowed" in result.output


def test_plan_counts_a_file_of_directories_as_directories(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dirs = tmp_path / "dirs.txt"
    dirs.write_text("\n".join(f"a.com/section/{i}/" for i in range(150)))
    result = run("plan", "--json", "--type", "directory", "--from-file", str(dirs))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["directory"] == {"pending": 150, "calls": 2, "days_to_drain": 1.5}
    assert plan["file"]["pending"] == 0
    # A Directory path needs its closing slash: the line is named, nothing is planned.
    (tmp_path / "bad.txt").write_text("a.com/section/x\n")
    refused = run("plan", "--type", "directory", "--from-file", str(tmp_path / "bad.txt"))
    assert refused.exit_code == 2 and "line 1:" in refused.output


@pytest.mark.parametrize("window", ["nan", "inf", "-inf", "1", "0", "59", "604801"])
def test_set_window_refuses_what_no_worker_could_count_on_as_bad_input(  # type: ignore[no-untyped-def]
    run, redis_client: redis.Redis, window: str
) -> None:
    result = run("quota", "--set-window", window)
    assert result.exit_code == 2, result.output
    assert "--set-window" in result.output and "Traceback" not in result.output
    assert Store(redis_client, make_settings()).quota.stored_window_s() is None


def test_set_window_takes_a_sane_window(run, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    assert run("quota", "--set-window", "3600").exit_code == 0
    assert Store(redis_client, make_settings()).quota.stored_window_s() == 3600


@pytest.mark.parametrize("stored", ["nan", "inf"])
def test_a_stored_window_that_is_no_number_is_refused_with_a_valid_command(  # type: ignore[no-untyped-def]
    run, redis_client: redis.Redis, stored: str
) -> None:
    store = Store(redis_client, make_settings())
    redis_client.set(store.keys.shared.quota_window, stored)
    result = run("quota")
    assert result.exit_code == 1
    assert "`cdn-refresh quota --set-window 86400`" in result.output
    assert "Traceback" not in result.output and "script" not in result.output.lower()
    # What a worker says at start: never "Use nan".
    with pytest.raises(QuotaWindowMismatchError) as caught:
        store.quota.check_window()
    assert "--set-window 86400`" in str(caught.value) and "Use " not in str(caught.value)
    # The command it names mends it.
    assert run("quota", "--set-window", "86400").exit_code == 0
    assert run("quota").exit_code == 0
    store.quota.check_window()
