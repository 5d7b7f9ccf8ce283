"""Knowing that it finished, against a real redis-server: calls tracked until their tasks end,
Failed tasks sent again, each path's own task, and the provider's own count capping the
claims (issue 11). End to end with real workers: tests/test_e2e_tracking.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from cdn_refresh.cli import main
from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.provider_day import last_reset, next_reset
from cdn_refresh.store import Store
from cdn_refresh.store.records import PathState, Wait, WaitReason
from cdn_refresh.store.tracking import TrackedCall
from tests.conftest import make_settings
from tests.harness import claim_batch, job_counts, store_and_producer
from worker.client import RefreshTask
from worker.tracking import decide, next_check_s

pytestmark = pytest.mark.redis

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY


def _only_call(store: Store, now: float) -> TrackedCall:
    (call,) = store.tracking.due(10, now)
    return call


def test_a_call_is_tracked_from_its_submission_and_each_path_gets_its_own_task(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, task_first_check_s=30)
    job = producer.enqueue(["a.com/1", "a.com/2", "b.com/3"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1", "T2"), "R", t0)
    assert store.tracking.due(10, t0 + 29) == []
    call = _only_call(store, t0 + 31)
    assert call.task_ids == ("T1", "T2")
    # Before the provider says which task is whose, a path lists both.
    assert store.paths.lookup("http://b.com/3", FILE).task_id == "T1,T2"
    task_of = {"http://a.com/1": "T1", "http://a.com/2": "T1", "http://b.com/3": "T2"}
    done = store.tracking.settle(call, {"T1": "Complete", "T2": "Complete"}, task_of, t0 + 31)
    assert (done.complete, done.back_to_pending, done.dead_lettered) == (3, 0, 0)
    found = store.paths.lookup("http://b.com/3", FILE)
    assert (found.state, found.task_id) == (PathState.COMPLETE, "T2")
    assert found.completed_at == pytest.approx(t0 + 31)
    assert found.to_dict()["completed_at"] == pytest.approx(t0 + 31)
    assert job_counts(producer, job) == {"complete": 3}
    assert producer.status(job).to_dict()["state"] == "complete"
    assert store.tracking.count() == 0


def test_the_paths_of_a_failed_task_go_back_to_pending_and_the_rest_complete(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, max_attempts=2)
    job = producer.enqueue(["a.com/1", "b.com/2"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1", "T2"), "R", t0)
    call = _only_call(store, t0 + 60)
    task_of = {"http://a.com/1": "T1", "http://b.com/2": "T2"}
    done = store.tracking.settle(call, {"T1": "Complete", "T2": "Failed"}, task_of, t0 + 60)
    assert (done.complete, done.back_to_pending) == (1, 1)
    assert job_counts(producer, job) == {"complete": 1, "pending": 1}
    again = store.paths.lookup("http://b.com/2", FILE)
    assert (again.state, again.last_error, again.attempts) == (PathState.PENDING, "TaskFailed", 1)
    # Sent again and Failed again: out of attempts, it is dead-lettered with the reason.
    batch = claim_batch(store, FILE, t0 + 61)
    assert batch.paths == ("http://b.com/2",)
    store.batches.submit(batch, (), ("T3",), "R", t0 + 61)
    call = _only_call(store, t0 + 200)
    done = store.tracking.settle(call, {"T3": "Failed"}, {"http://b.com/2": "T3"}, t0 + 200)
    assert done.dead_lettered == 1
    (dead,) = list(producer.dead_letters())
    assert (dead.path, dead.code, dead.attempts) == ("http://b.com/2", "TaskFailed", 2)
    assert producer.status(job).to_dict()["state"] == "failed"


def test_what_a_directory_covered_follows_its_task(redis_client: redis.Redis) -> None:
    producer, store = store_and_producer(redis_client)
    files = producer.enqueue([f"a.com/img/{i}.png" for i in range(5)], FILE, Priority.BULK)
    producer.enqueue(["a.com/img/", "b.com/x/"], DIRECTORY)
    t0 = time.time()
    coverage = store.batches.cover(claim_batch(store, DIRECTORY, t0))
    assert coverage is not None and coverage.files == 5
    store.batches.submit(coverage.batch, (), ("D1", "D2"), "R", t0)
    call = _only_call(store, t0 + 60)
    task_of = {"http://a.com/img/": "D1", "http://b.com/x/": "D2"}
    store.tracking.settle(call, {"D1": "Failed", "D2": "Complete"}, task_of, t0 + 60)
    # a.com/img/ failed: it and what it covered are pending again; b.com/x/ is complete.
    assert store.quota.pending_count(FILE) == 5
    assert job_counts(producer, files.job_id) == {"pending": 5}
    assert store.paths.lookup("http://b.com/x/", DIRECTORY).state is PathState.COMPLETE
    coverage = store.batches.cover(claim_batch(store, DIRECTORY, t0 + 61))
    assert coverage is not None and coverage.files == 5
    store.batches.submit(coverage.batch, (), ("D3",), "R", t0 + 61)
    call = _only_call(store, t0 + 200)
    store.tracking.settle(call, {"D3": "Complete"}, {"http://a.com/img/": "D3"}, t0 + 200)
    covered = store.paths.lookup("http://a.com/img/3.png", FILE)
    assert (covered.state, covered.task_id, covered.covered_by) == (
        PathState.COMPLETE,
        "D3",
        "http://a.com/img/",
    )
    assert producer.status(files.job_id).to_dict()["state"] == "complete"


def test_a_task_that_runs_on_is_asked_about_later_then_given_up_left_submitted(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, task_first_check_s=10, task_timeout_s=100)
    job = producer.enqueue(["a.com/1"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    running = [RefreshTask("T1", "http://a.com/1", "file", "Refreshing", "50%", "", "")]
    call = _only_call(store, t0 + 11)
    decision = decide(call, running, t0 + 11, store.settings)
    assert (decision.outcome, decision.next_s) == ("wait", 10)
    store.tracking.wait(call, decision.next_s, t0 + 11)
    assert store.tracking.due(10, t0 + 20) == []
    call = _only_call(store, t0 + 22)
    assert call.checks == 1
    assert decide(call, running, t0 + 22, store.settings).next_s == 10
    assert decide(call, running, t0 + 101, store.settings).outcome == "give_up"
    store.tracking.give_up(call, "Timeout", t0 + 101)
    assert store.tracking.count() == 0
    assert store.paths.lookup("http://a.com/1", FILE).state is PathState.SUBMITTED
    assert store.tracking.ends(["T1"])["T1"].status == "Timeout"
    assert job_counts(producer, job) == {"submitted": 1}
    # A task missing from the answer may not be visible yet: it waits like a running one;
    # past the timeout it is one the provider does not know, given up, never re-sent.
    assert decide(call, [], t0 + 40, store.settings).outcome == "wait"
    assert decide(call, [], t0 + 101, store.settings).reason == "Unknown"


def test_a_settled_call_settles_nothing_twice(redis_client: redis.Redis) -> None:
    producer, store = store_and_producer(redis_client)
    job = producer.enqueue(["a.com/1"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    call = _only_call(store, t0 + 60)
    store.tracking.settle(call, {"T1": "Failed"}, {"http://a.com/1": "T1"}, t0 + 60)
    again = store.tracking.settle(call, {"T1": "Failed"}, {"http://a.com/1": "T1"}, t0 + 61)
    assert (again.complete, again.back_to_pending) == (0, 0)
    assert job_counts(producer, job) == {"pending": 1}


def test_claims_never_reserve_more_than_the_provider_has_left(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, url_daily_quota=2_000)
    producer.enqueue([f"a.com/{i}" for i in range(3_000)])
    # Hours after the provider's reset, whenever the test runs: a reading a minute old is then
    # of the same provider day (just after a reset it would rightly count for nothing).
    now = last_reset(time.time()) + 6 * 3600
    # The console spent 1,900 of the account's 2,000: the provider says 100 are left.
    store.quota.record_provider(FILE, 100, 2_000, now - 60)
    first = claim_batch(store, FILE, now)
    assert len(first.paths) == 100
    wait = store.batches.claim(FILE, now + 1)
    assert isinstance(wait, Wait) and wait.reason is WaitReason.PROVIDER_QUOTA
    # Until its next reset, when the count read before it says nothing any more.
    assert wait.seconds == pytest.approx(next_reset(now) - (now + 1), abs=1)
    assert store.quota.provider(FILE) is not None
    tomorrow = next_reset(now) + 10
    assert len(claim_batch(store, FILE, tomorrow).paths) == 1_000


def test_reservations_made_just_before_the_providers_answer_count_against_it(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue([f"a.com/{i}" for i in range(500)])
    now = time.time()
    claim_batch(store, FILE, now)  # 500 reserved; the provider may not have counted them yet
    producer.enqueue([f"b.com/{i}" for i in range(500)])
    store.quota.record_provider(FILE, 600, 2_000, now + 1)
    assert len(claim_batch(store, FILE, now + 2).paths) == 100


def test_how_tasks_ended_is_forgotten_with_the_records(redis_client: redis.Redis) -> None:
    producer, store = store_and_producer(redis_client, record_retention_days=1)
    producer.enqueue(["a.com/1"])
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    store.tracking.settle(_only_call(store, t0 + 60), {"T1": "Complete"}, {}, t0 + 60)
    assert store.tracking.ends(["T1"])
    store.retention.trim(t0 + 2 * 86_400)
    assert store.tracking.ends(["T1"]) == {}


def test_status_wait_ends_when_tracking_gave_up_instead_of_waiting_for_ever(
    redis_client: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    producer, store = store_and_producer(redis_client)
    job = producer.enqueue(["a.com/1"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    store.tracking.give_up(_only_call(store, t0 + 60), "Timeout", t0 + 60)
    monkeypatch.chdir(tmp_path)
    env = {
        "CDN_REFRESH_REDIS_URL": redis_url,
        "CDN_REFRESH_KEY_PREFIX": store.settings.redis.key_prefix,
    }
    result = CliRunner().invoke(main, ["status", job, "--wait", "--timeout", "30"], env=env)
    assert result.exit_code == 1
    assert "gave up on task(s) T1" in result.output


def test_a_path_the_answer_does_not_name_follows_its_calls_only_task(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    job = producer.enqueue(["a.com/x y"]).job_id  # we send a%20y; say the provider shows a space
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    store.tracking.settle(_only_call(store, t0 + 60), {"T1": "Failed"}, {}, t0 + 60)
    assert job_counts(producer, job) == {"pending": 1}


def test_an_older_call_that_failed_leaves_a_path_sent_again_since_alone(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0)
    first = producer.enqueue(["a.com/p"]).job_id
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    second = producer.enqueue(["a.com/p"]).job_id
    store.batches.submit(claim_batch(store, FILE, t0 + 5), (), ("T2",), "R2", t0 + 5)
    older = next(c for c in store.tracking.due(10, t0 + 100) if c.task_ids == ("T1",))
    store.tracking.settle(older, {"T1": "Failed"}, {"http://a.com/p": "T1"}, t0 + 100)
    # Not sent a third time: the newer call carries it, and its record is untouched.
    assert store.quota.pending_count(FILE) == 0
    found = store.paths.lookup("http://a.com/p", FILE)
    assert (found.state, found.task_id) == (PathState.SUBMITTED, "T2")
    assert job_counts(producer, first) == {"complete": 1}
    assert job_counts(producer, second) == {"submitted": 1}


def test_the_halves_of_a_split_call_are_tracked_apart_even_with_one_merged_task(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    job = producer.enqueue(["a.com/1", "a.com/2"]).job_id
    t0 = time.time()
    batch = claim_batch(store, FILE, t0)
    store.batches.submit(batch, ("http://a.com/1",), ("T1",), "R1", t0)
    store.batches.submit(batch, ("http://a.com/2",), ("T1",), "R2", t0)
    calls = store.tracking.due(10, t0 + 60)
    assert len(calls) == 2
    for call in calls:
        store.tracking.settle(call, {"T1": "Complete"}, {}, t0 + 60)
    assert job_counts(producer, job) == {"complete": 2}


def test_files_do_not_wait_for_a_directory_the_provider_has_no_quota_for(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    producer.enqueue(["a.com/img/1.png"])
    now = time.time()
    store.quota.record_provider(DIRECTORY, 0, 100, now)
    assert claim_batch(store, FILE, now + 1).paths == ("http://a.com/img/1.png",)


@pytest.mark.parametrize("ends_at", [0.5, 9, 14, 40, 149, 151, 299, 330, 600, 1799, 3500])
def test_at_the_defaults_a_tasks_end_is_noticed_within_15_s_or_a_tenth_of_its_age(
    ends_at: float,
) -> None:
    settings = make_settings()
    due = settings.tracking.task_first_check_s
    checks = 1
    while (ran := due + settings.flush.interval_s) < ends_at:  # at worst, a tick late
        due = ran + next_check_s(ran, settings)
        checks += 1
    assert ran - ends_at <= max(15.0, 0.1 * ends_at)
    assert checks <= 50  # a task of an hour: about 48 requests


def test_the_tasks_process_brings_the_next_check_to_the_end_it_foretells() -> None:
    settings = make_settings()
    # 80 % done after 200 s: the rest takes about 50 s, sooner than a tenth of the age (20 s)?
    assert next_check_s(200, settings, 80) == 15.0
    # 98 % after 200 s: about 4 s more; asked again 2 s after that, not 15 s later.
    assert next_check_s(200, settings, 98) == pytest.approx(200 * 2 / 98 + 2)
    # Without a Process figure, or a meaningless one, the age rule alone.
    assert next_check_s(200, settings) == next_check_s(200, settings, 0) == 15.0
