"""What the command line tells a new user: errors in one line, paths it has never seen,
times a person can read, and where a pending path stands. CliRunner against a real
redis-server."""

from __future__ import annotations

import json
import os
import re
import threading
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


def test_a_named_pipe_as_from_file_is_read_once_to_its_end(
    run, redis_client: redis.Redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # The check that the file can be read must not open it: a pipe opened and closed by the
    # check would end its writer, and the real read would wait for ever.
    fifo = tmp_path / "paths.fifo"
    os.mkfifo(fifo)
    lines = "".join(f"https://www.example.com/{i}.png\n" for i in range(50)).encode()
    writer = threading.Thread(target=fifo.write_bytes, args=(lines,), daemon=True)
    writer.start()
    result = run("enqueue", "--from-file", str(fifo), "--json")
    writer.join(5)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 50
    assert not writer.is_alive()


def test_a_path_never_seen_is_unknown_exit_1_with_a_hint_at_the_other_scheme(run) -> None:  # type: ignore[no-untyped-def]
    assert run("enqueue", "https://www.example.com/a.png").exit_code == 0
    result = run("lookup", "www.example.com/a.png", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["state"] == "unknown"
    assert "https://www.example.com/a.png (File, pending)" in body["hint"]
    nothing_near = json.loads(run("lookup", "other.example.com/x", "--json").stdout)
    assert (nothing_near["state"], nothing_near["hint"]) == ("unknown", None)


def test_a_lookup_as_the_wrong_type_hints_at_the_type_it_was_enqueued_as(run) -> None:  # type: ignore[no-untyped-def]
    assert run("enqueue", "--type", "directory", "a.com/static/").exit_code == 0
    result = run("lookup", "a.com/static/")
    assert result.exit_code == 1
    assert "http://a.com/static/ (Directory, pending)" in result.output


def test_a_job_whose_paths_are_all_submitted_is_submitted_and_done_still_reads() -> None:
    from cdn_refresh.store.records import JobState

    assert JobState("done") is JobState.SUBMITTED
    assert JobState.SUBMITTED.value == "submitted"


def test_human_output_shows_local_iso_times_and_json_keeps_numbers(run) -> None:  # type: ignore[no-untyped-def]
    job = json.loads(run("enqueue", "a.com/1", "--json").stdout)["job_id"]
    as_json = json.loads(run("status", job, "--json").stdout)
    assert isinstance(as_json["created_at"], float)
    text = run("status", job).output
    assert re.search(r"created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \(\d+ s ago\)", text)
    assert str(int(as_json["created_at"])) not in text


def test_a_pending_path_and_its_job_show_their_place_and_when_the_window_lets_them_go(
    run, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    store = Store(redis_client, make_settings(url_daily_quota=2))
    store.batches.claim("File", time.time())  # stores the window; nothing pending yet
    first = json.loads(run("enqueue", "a.com/1", "a.com/2", "--json").stdout)["job_id"]
    batch = store.batches.claim("File", time.time())  # type: ignore[arg-type]
    assert isinstance(batch, Batch)  # the two units of the window are spent
    before = time.time()
    job = json.loads(
        run("enqueue", "a.com/3", "a.com/4", "--json", CDN_REFRESH_URL_DAILY_QUOTA="2").stdout
    )["job_id"]
    place = json.loads(run("lookup", "a.com/4", "--json", CDN_REFRESH_URL_DAILY_QUOTA="2").stdout)[
        "place"
    ]
    assert place["ahead"] == 1
    # Two units free when the first batch leaves the window (86,400 s after its claim).
    assert before + 86_000 < place["estimated_at"] < time.time() + 86_400 + 5
    status = json.loads(run("status", job, "--json", CDN_REFRESH_URL_DAILY_QUOTA="2").stdout)
    assert status["place"]["ahead"] == 1
    shown = run("status", job, CDN_REFRESH_URL_DAILY_QUOTA="2").output
    assert "1 path(s) ahead; expected to go 20" in shown
    assert json.loads(run("status", first, "--json").stdout)["place"] is None
    fresh = run("enqueue", "b.com/1", "--json", CDN_REFRESH_URL_DAILY_QUOTA="10")
    assert fresh.exit_code == 0
    # A reader's own limit changes nothing: the quota runs on the stored one, until it is set.
    mine = json.loads(run("lookup", "b.com/1", "--json", CDN_REFRESH_URL_DAILY_QUOTA="10").stdout)
    assert mine["place"]["fits_now"] is False
    assert run("quota", "--set-url-quota", "10").exit_code == 0
    roomy = json.loads(run("lookup", "b.com/1", "--json").stdout)
    assert roomy["place"] == {"ahead": 2, "fits_now": True, "estimated_at": None}


def test_jobs_lists_recent_jobs_newest_first_and_filters_by_state(run) -> None:  # type: ignore[no-untyped-def]
    ids = [json.loads(run("enqueue", f"a.com/{n}", "--json").stdout)["job_id"] for n in range(3)]
    listed = json.loads(run("jobs", "--json").stdout)
    assert [j["job_id"] for j in listed] == ids[::-1]
    assert json.loads(run("jobs", "--state", "submitted", "--json").stdout) == []
    assert len(json.loads(run("jobs", "--state", "pending", "--json").stdout)) == 3
    assert run("jobs", "--state", "nonsense").exit_code == 2
    assert ids[0] in run("jobs").output


def test_a_wait_that_times_out_says_so_and_reports_every_few_seconds_without_a_terminal(
    run,
) -> None:  # type: ignore[no-untyped-def]
    job = json.loads(run("enqueue", "a.com/1", "--json").stdout)["job_id"]
    started = time.monotonic()
    result = run("status", job, "--wait", "--timeout", "6")
    assert result.exit_code == 124
    assert time.monotonic() - started < 10
    progress = [line for line in result.stderr.splitlines() if line.startswith(f"job {job}:")]
    assert len(progress) == 2, result.stderr  # at once, then 5 s later
    assert f"timed out after 6 s: job {job} is pending" in result.stderr


def test_the_wait_bar_shows_complete_and_submitted_apart() -> None:
    from producer.cli import wait_bar

    counts = {"pending": 4, "in_flight": 0, "submitted": 3, "failed": 0, "complete": 3}
    assert wait_bar(counts).startswith("[" + "#" * 9 + "=" * 9 + " " * 12 + "] complete=3")
    assert "submitted=3 waiting=4 failed=0 of 10" in wait_bar(counts)


@pytest.mark.parametrize("command", [("quota",), ("lookup", "a.com/1"), ("jobs",)])
def test_an_unreachable_redis_fails_in_under_2_s_naming_the_setting_not_the_password(
    run, command: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import free_port

    url = f"redis://:hidden-pw-2@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run(*command, CDN_REFRESH_REDIS_URL=url)
    assert time.monotonic() - started < 2
    assert result.exit_code == 1
    assert "CDN_REFRESH_REDIS_URL" in result.output
    assert "hidden-pw-2" not in result.output and "Traceback" not in result.output


def test_a_bulk_paths_estimate_leaves_the_interactive_reserve_unspent(run) -> None:  # type: ignore[no-untyped-def]
    quota = {"CDN_REFRESH_URL_DAILY_QUOTA": "10"}
    paths = [f"a.com/{n}" for n in range(10)]
    assert run("enqueue", "--priority", "bulk", *paths, **quota).exit_code == 0
    ninth = json.loads(run("lookup", "a.com/8", "--json", **quota).stdout)["place"]
    last = json.loads(run("lookup", "a.com/9", "--json", **quota).stdout)["place"]
    assert ninth["fits_now"] is True  # 9 of 10 units: what bulk work may spend
    assert last["fits_now"] is False and last["estimated_at"] is not None
