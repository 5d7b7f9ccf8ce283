"""Defects found by trying to break what had landed (issue 14), each against real Redis, and
real workers where a worker is involved."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from cdn_refresh.cli import main
from cdn_refresh.constants import ObjectType
from cdn_refresh.planning import days_to_drain
from cdn_refresh.store import (
    JobNotFoundError,
    QuotaLimitMismatchError,
    QuotaWindowMismatchError,
    Store,
    broker_url,
)
from cdn_refresh.store.records import Batch, Wait, WaitReason
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import (
    EnqueueInterruptedError,
    Producer,
    RedisRefusesWritesError,
)
from sandbox.local import RedisServer as LocalRedis
from tests.conftest import RedisServer, make_settings
from tests.harness import ROOT, WorkerProcess, cluster_values, wait_for, worker_env
from worker.webhooks import WebhookSender

pytestmark = pytest.mark.redis


def _drain(store: Store, kind: ObjectType = ObjectType.FILE) -> list[str]:
    """Claim and submit everything pending (as a worker would after a 200); task ids used."""
    tasks = []
    while isinstance(batch := store.batches.claim(kind), Batch):
        task = f"t{batch.id}"
        store.batches.submit(batch, (), (task,), f"r{batch.id}")
        tasks.append(task)
    return tasks


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of its own: the tests below set its maxmemory."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "noeviction")
    client.close()
    yield server
    server.stop()


def _limit_memory(url: str, extra_bytes: int) -> None:
    """maxmemory at what Redis holds now plus ``extra_bytes`` (minus: below it)."""
    client = redis.Redis.from_url(url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", max(1, used + extra_bytes))
    client.close()


# --- 3. a half-failed enqueue ends, it does not stay pending forever -------------------------


def test_an_enqueue_that_redis_stops_half_way_says_what_went_in_and_the_job_ends(
    full_redis: LocalRedis,
) -> None:
    settings = make_settings(redis_url=full_redis.url, url_daily_quota=10**9)
    client = redis.Redis.from_url(full_redis.url, decode_responses=True)
    store = Store(client, settings)
    producer = Producer(store)
    producer.enqueue(["warm.example.com/a"])  # scripts loaded before the limit
    _drain(store)
    _limit_memory(full_redis.url, 3 * 1024 * 1024)
    paths = [f"https://big.example.com/assets/{i:07d}/image.png" for i in range(200_000)]
    with pytest.raises(EnqueueInterruptedError) as caught:
        producer.enqueue(paths)
    receipt = caught.value.receipt
    assert receipt.job_id and receipt.incomplete
    assert 0 < receipt.accepted < len(paths)
    assert "maxmemory" in receipt.error
    client.config_set("maxmemory", 0)
    status = producer.status(receipt.job_id)
    # Exactly what the receipt says went in is what waits.
    assert status.counts.pending == receipt.accepted
    assert status.incomplete and status.to_dict()["incomplete"] is True
    _drain(store)
    after = producer.status(receipt.job_id)
    assert after.state == "incomplete"  # never submitted: not everything asked for went in
    assert after.counts.submitted == receipt.accepted
    client.close()


def test_a_redis_that_refuses_writes_fails_the_enqueue_before_any_input_is_read(
    full_redis: LocalRedis,
) -> None:
    settings = make_settings(redis_url=full_redis.url)
    producer = Producer.from_settings(settings, notify_workers=False)
    _limit_memory(full_redis.url, -(1 << 30))  # below what it holds: every write refused
    consumed = []

    def inputs() -> Iterator[str]:
        consumed.append(1)
        yield "example.com/a"

    with pytest.raises(RedisRefusesWritesError, match="refuses writes, nothing enqueued"):
        producer.enqueue(inputs())
    assert consumed == []
    producer.close()


def test_the_cli_prints_the_job_and_its_accepted_count_when_redis_fails_half_way(
    full_redis: LocalRedis, tmp_path: Path
) -> None:
    source = tmp_path / "purge.txt"
    source.write_text(
        "\n".join(f"https://big.example.com/assets/{i:07d}/image.png" for i in range(200_000))
    )
    env = {"CDN_REFRESH_REDIS_URL": full_redis.url, "CDN_REFRESH_KEY_PREFIX": "hard"}
    runner = CliRunner()
    warm = runner.invoke(main, ["enqueue", "warm.example.com/a", "--json"], env=env)
    assert warm.exit_code == 0, warm.output
    _limit_memory(full_redis.url, 8 * 1024 * 1024)
    result = runner.invoke(main, ["enqueue", "--from-file", str(source), "--json"], env=env)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout.strip().splitlines()[0])
    assert data["job_id"] and data["incomplete"] is True and data["accepted"] > 0
    assert f"job {data['job_id']}: {data['accepted']} path(s) accepted" in result.stderr
    redis.Redis.from_url(full_redis.url).config_set("maxmemory", 0)
    status = runner.invoke(main, ["status", data["job_id"], "--json"], env=env)
    assert json.loads(status.stdout)["incomplete"] is True


# --- 4. retention keeps a job whose paths still wait ---------------------------------------


def test_retention_keeps_an_old_job_whose_paths_still_wait(redis_client: redis.Redis) -> None:
    store = Store(redis_client, make_settings(record_retention_days=1))
    producer = Producer(store)
    job = producer.enqueue(["a.example.com/1", "a.example.com/2"]).job_id
    later = time.time() + 60 * 86400
    store.retention.trim(later)
    assert producer.status(job).counts.pending == 2  # still there, 60 days on
    _drain(store)
    assert store.retention.trim(later) >= 1
    with pytest.raises(JobNotFoundError):
        producer.status(job)


def test_an_enqueue_warns_when_the_pending_work_needs_more_than_30_days_of_quota(
    redis_client: redis.Redis,
) -> None:
    producer = Producer(Store(redis_client, make_settings(url_daily_quota=10)))
    small = producer.enqueue([f"a.example.com/{i}" for i in range(200)])
    assert small.warning == "" and "warning" not in small.to_dict()
    big = producer.enqueue([f"b.example.com/{i}" for i in range(200)])
    assert big.backlog_days == pytest.approx(40)
    assert "40 days of quota" in big.warning
    assert big.to_dict()["backlog_days"] == 40


def test_an_enqueue_at_a_quota_of_0_warns_that_the_paths_never_go_in_valid_json(
    redis_client: redis.Redis,
) -> None:
    producer = Producer(Store(redis_client, make_settings(url_daily_quota=0)))
    receipt = producer.enqueue(["a.example.com/x"])
    assert receipt.backlog_days is None
    assert "never go" in receipt.warning
    assert json.loads(json.dumps(receipt.to_dict(), allow_nan=False))["backlog_days"] is None


# --- 5. a Redis URL with ?password= works for the broker too -------------------------------


def test_a_password_in_the_query_moves_into_the_brokers_user_info() -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:6379/0?password=p%40ss&db=0")
    assert broker_url(settings.redis) == "redis://:p%40ss@127.0.0.1:6379/0?db=0"
    tls = make_settings(redis_url="rediss://h:6380/0?username=al&password=pw")
    assert broker_url(tls.redis) == "rediss://al:pw@h:6380/0?ssl_cert_reqs=required"


@pytest.mark.e2e
def test_a_worker_runs_on_a_redis_url_with_its_password_in_the_query(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", password="query-pw-71")
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0?password=query-pw-71"
    worker = None
    try:
        with EmulatorServer(EmulatorConfig(url_quota=1000)) as emulator:
            values = cluster_values(url, emulator.url)
            worker = WorkerProcess(
                worker_env(**values), tmp_path / "worker.log", name="qpw", beat=True
            )
            producer = Producer.from_settings(make_settings(**values))
            job = producer.enqueue([f"q.example.com/{i}" for i in range(5)]).job_id
            wait_for(lambda: producer.status(job).state == "submitted", 30, worker.log)
            producer.close()
            assert "TypeError" not in worker.log()
            # 7. This Redis keeps nothing on disk: the worker said so at start.
            assert "neither append-only (AOF) nor RDB" in worker.log()
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


# --- 6. workers with different windows share the stored one --------------------------------


def test_a_worker_with_a_shorter_window_cannot_free_another_workers_reservations(
    redis_client: redis.Redis,
) -> None:
    long = Store(redis_client, make_settings(url_daily_quota=5, quota_window_s=86400))
    short = Store(redis_client, make_settings(url_daily_quota=5, quota_window_s=1))
    Producer(long).enqueue([f"a.example.com/{i}" for i in range(10)])
    t0 = time.time()
    first = long.batches.claim(ObjectType.FILE, t0)
    assert isinstance(first, Batch) and len(first.paths) == 5
    wait = short.batches.claim(ObjectType.FILE, t0 + 2)
    assert isinstance(wait, Wait) and wait.reason is WaitReason.QUOTA
    assert short.quota.usage(ObjectType.FILE, t0 + 2).used == 5
    with pytest.raises(QuotaWindowMismatchError, match="QUOTA_WINDOW_S is 1"):
        short.quota.check_window()
    long.quota.check_window()


def test_workers_with_different_url_quotas_spend_the_one_limit_the_first_claim_stored(
    redis_url: str, redis_client: redis.Redis
) -> None:
    small = Store(redis_client, make_settings(url_daily_quota=5))
    large = Store(redis_client, make_settings(url_daily_quota=10))
    Producer(small).enqueue([f"a.example.com/{i}" for i in range(20)])
    first = small.batches.claim(ObjectType.FILE)
    assert isinstance(first, Batch) and len(first.paths) == 5
    # Before, the second worker counted its own 10 and spent 5 more: 10 in a window of 5.
    wait = large.batches.claim(ObjectType.FILE)
    assert isinstance(wait, Wait) and wait.reason is WaitReason.QUOTA
    assert large.quota.usage(ObjectType.FILE).limit == 5
    with pytest.raises(QuotaLimitMismatchError, match="URL_DAILY_QUOTA is 10") as caught:
        large.quota.check_limits()
    assert "`cdn-refresh quota --set-url-quota 10`" in str(caught.value)
    small.quota.check_limits()
    # The command it names changes the limit for every worker.
    result = CliRunner().invoke(
        main,
        ["quota", "--set-url-quota", "10", "--json"],
        env={"CDN_REFRESH_REDIS_URL": redis_url},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["file"]["limit"] == 10
    large.quota.check_limits()
    assert isinstance(large.batches.claim(ObjectType.FILE), Batch)


def test_places_estimates_and_the_backlog_follow_the_stored_window_and_limit(
    redis_client: redis.Redis,
) -> None:
    # This process says 100 a day; the quota in Redis runs on 10 an hour.
    store = Store(redis_client, make_settings(url_daily_quota=100, quota_window_s=86400))
    store.quota.set_window(3600)
    store.quota.set_limit(ObjectType.FILE, 10)
    producer = Producer(store)
    job = producer.enqueue([f"a.example.com/{i}" for i in range(25)]).job_id
    place = store.jobs.status(job).place
    now = time.time()
    # 24 paths ahead of the last, 10 an hour: two more windows, not "fits now".
    assert place is not None and (place.ahead, place.fits_now) == (24, False)
    assert place.estimated_at == pytest.approx(now + 2 * 3600, abs=60)
    pending, window_s, limit = store.quota.backlog(ObjectType.FILE)
    assert days_to_drain(pending, limit, window_s) == pytest.approx(25 / 10 * 3600 / 86400)


def test_bulk_work_leaves_the_reserve_of_the_stored_limit_not_of_its_own(
    redis_client: redis.Redis,
) -> None:
    # This process's reserve would be 10 of 100; the stored limit's is 1 of 10.
    store = Store(redis_client, make_settings(url_daily_quota=100, interactive_reserve=0.1))
    store.quota.set_limit(ObjectType.FILE, 10)
    Producer(store).enqueue([f"b.example.com/{i}" for i in range(20)], priority="bulk")
    batch = store.batches.claim(ObjectType.FILE)
    assert isinstance(batch, Batch), batch
    assert len(batch.paths) == 9
    wait = store.batches.claim(ObjectType.FILE)
    assert isinstance(wait, Wait) and wait.reason is WaitReason.RESERVE


@pytest.mark.e2e
def test_a_worker_whose_window_differs_from_the_stored_one_refuses_to_start(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    Store(client, make_settings(redis_url=redis_url)).quota.set_window(86400)
    values = cluster_values(redis_url, "http://127.0.0.1:9", quota_window_s=60)
    worker = WorkerProcess(worker_env(**values), tmp_path / "worker.log", name="win")
    try:
        worker.process.wait(60)
        assert worker.process.returncode != 0
        assert "the quota in Redis runs on a window of 86400 s" in worker.log()
    finally:
        worker.stop()
        client.close()


# --- 7. a Redis without persistence is named at start --------------------------------------


def test_persistence_warning_names_a_redis_that_keeps_nothing(tmp_path: Path) -> None:
    bare = RedisServer(tmp_path / "bare")
    durable = RedisServer(tmp_path / "aof", appendonly=True)
    bare.start()
    durable.start()
    try:
        settings = make_settings()
        with redis.Redis.from_url(bare.url, decode_responses=True) as client:
            assert "neither append-only" in (Store(client, settings).persistence_warning() or "")
        with redis.Redis.from_url(durable.url, decode_responses=True) as client:
            assert Store(client, settings).persistence_warning() is None
    finally:
        bare.stop()
        durable.stop()


# --- 9. a path sent again lists each of its submissions ------------------------------------


def test_lookup_lists_every_recent_submission_of_a_path_newest_first(
    redis_client: redis.Redis,
) -> None:
    store = Store(redis_client, make_settings(refresh_cooldown_s=0))
    producer = Producer(store)
    producer.enqueue(["a.example.com/page"])
    assert _drain(store) == ["t1"]
    producer.enqueue(["a.example.com/page"])  # requested again after it was submitted
    assert _drain(store) == ["t2"]
    found = producer.lookup("a.example.com/page")
    assert found.state == "submitted" and found.task_id == "t2"
    assert [s.task_ids for s in found.submissions] == [("t2",), ("t1",)]
    data = found.to_dict()
    assert [s["task_id"] for s in data["submissions"]] == ["t2", "t1"]
    assert data["submissions"][0]["submitted_at"] >= data["submissions"][1]["submitted_at"]


# --- an endpoint that does not answer holds the work; it does not dead-letter it -------------


@pytest.mark.e2e
def test_a_worker_on_a_dead_endpoint_starts_says_so_once_and_holds_the_work(
    redis_url: str, tmp_path: Path
) -> None:
    from tests.conftest import free_port

    values = cluster_values(
        redis_url, f"http://127.0.0.1:{free_port()}", max_attempts=2, auth_hold_max_s=1
    )
    producer = Producer.from_settings(make_settings(**values))
    job = producer.enqueue([f"a.example.com/{i}" for i in range(20)]).job_id
    worker = WorkerProcess(worker_env(**values), tmp_path / "worker.log", name="dead", beat=True)
    try:
        worker.wait_ready()
        wait_for(lambda: "endpoint does not answer" in worker.log(), 20, worker.log)
        time.sleep(5)  # many holds of up to 1 s: every one of them would have spent attempts
        status = producer.status(job).to_dict()
        assert status["counts"]["failed"] == 0 and status["state"] == "pending", status
        assert list(producer.dead_letters()) == []
        assert "ConnectError" in (status["last_error"] or "")
        assert worker.process.poll() is None  # it kept running
        assert worker.log().count("endpoint does not answer") == 1
    finally:
        worker.stop()
        producer.close()


# --- a producer killed half way: its job reads incomplete within seconds, never complete ----

_DYING_PRODUCER = """
import os, signal, sys
from cdn_refresh.store.jobs import JobStore
from producer.producer import Producer
from tests.conftest import make_settings

real = JobStore.enqueue_chunks
calls = []

def dying(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > 2:  # after two round trips of chunks: SIGKILL, mid-stream
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)

JobStore.enqueue_chunks = dying
producer = Producer.from_settings(make_settings(redis_url=sys.argv[1]), notify_workers=False)
producer.enqueue(f"https://big.example.com/{i:06d}.png" for i in range(30_000))
"""


def test_a_job_whose_producer_died_half_way_ends_incomplete_within_seconds(
    redis_url: str, redis_client: redis.Redis
) -> None:
    store = Store(redis_client, make_settings(url_daily_quota=10**6, urls_per_call=1000))
    store.webhooks.register("1", "http://127.0.0.1:9/hook")  # as the API does, before the job
    argv = [sys.executable, "-c", _DYING_PRODUCER, redis_url]
    dying = subprocess.run(argv, cwd=ROOT, timeout=60)
    assert dying.returncode == -signal.SIGKILL
    killed_at = time.monotonic()
    time.sleep(0.5)  # a pipeline the producer sent just before it died may still be running
    went_in = store.jobs.status("1").counts.pending
    assert 0 < went_in < 30_000
    _drain(store)
    env = {"CDN_REFRESH_REDIS_URL": redis_url}
    waited = CliRunner().invoke(
        main, ["status", "1", "--wait", "--timeout", "40", "--json"], env=env
    )
    stalled_s = time.monotonic() - killed_at
    data = json.loads(waited.stdout)
    assert (waited.exit_code, data["state"], data["incomplete"]) == (1, "incomplete", True)
    assert data["counts"]["submitted"] == went_in
    assert stalled_s < 20, stalled_s  # the open mark's lease, not two minutes
    # The webhook says so too.
    sender = WebhookSender(store, store.settings.webhooks)
    assert sender.fire_ended() == 1
    (delivery,) = store.webhooks.lease_due(10, lease_s=60)
    assert json.loads(delivery.body)["job"]["state"] == "incomplete"


# --- a slow producer keeps its job open; a job declared incomplete stays so ----------------


def test_a_producer_whose_round_trips_stall_past_the_lease_keeps_its_job_open(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producer.enqueue as producer_module
    from cdn_refresh.store import jobs as jobs_module

    monkeypatch.setattr(jobs_module, "OPEN_JOB_LEASE_S", 1.0)
    monkeypatch.setattr(producer_module, "OPEN_JOB_BEAT_S", 0.2, raising=False)
    store = Store(redis_client, make_settings())
    seen: list[str] = []
    original = jobs_module.JobStore.enqueue_chunks

    def slow(self: jobs_module.JobStore, header: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(2.5)  # a slow first pipeline, a WAIT, a paused host: no chunk for a while
        seen.append(store.jobs.status(header.job_id).state.value)
        return original(self, header, *args, **kwargs)

    monkeypatch.setattr(jobs_module.JobStore, "enqueue_chunks", slow)
    receipt = Producer(store).enqueue([f"a.example.com/{i}" for i in range(10)])
    assert seen == ["pending"]  # open all along: never incomplete while its producer lives
    status = store.jobs.status(receipt.job_id)
    assert (receipt.accepted, status.state.value, status.incomplete) == (10, "pending", False)


def test_a_chunk_for_a_job_declared_incomplete_is_refused_and_the_job_stays_incomplete(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producer.enqueue as producer_module
    from cdn_refresh.store import jobs as jobs_module

    # One chunk of 10 paths per round trip, one round trip at a time.
    monkeypatch.setattr(producer_module, "CHUNK_PATHS", 10)
    monkeypatch.setattr(producer_module, "CHUNKS_PER_PIPELINE", 1)
    monkeypatch.setattr(producer_module, "PIPELINES_IN_FLIGHT", 1)
    store = Store(redis_client, make_settings())
    states: list[str] = []
    original = jobs_module.JobStore.enqueue_chunks

    def late(self: jobs_module.JobStore, header: Any, *args: Any, **kwargs: Any) -> Any:
        if states == [] and store.quota.pending_count(ObjectType.FILE):
            # The second round trip comes after the open mark ran out (the mark is still
            # there, past its deadline): the job reads incomplete once its paths went out.
            redis_client.zadd(store.keys.shared.jobs_open, {header.job_id: time.time() - 1})
            _drain(store)
            states.append(store.jobs.status(header.job_id).state.value)
        return original(self, header, *args, **kwargs)

    monkeypatch.setattr(jobs_module.JobStore, "enqueue_chunks", late)
    with pytest.raises(EnqueueInterruptedError) as caught:
        Producer(store).enqueue([f"a.example.com/{i}" for i in range(30)])
    assert states == ["incomplete"]
    assert (caught.value.receipt.accepted, caught.value.receipt.incomplete) == (10, True)
    # Nothing of the refused chunks went in, and nothing brings the job back.
    assert _drain(store) == []
    status = store.jobs.status(caught.value.receipt.job_id)
    assert (status.state.value, status.counts.submitted, status.counts.pending) == (
        "incomplete",
        10,
        0,
    )


_PAUSED_PRODUCER = """
import sys, time
import producer.enqueue as producer_module
from cdn_refresh.store import jobs
from producer.producer import EnqueueInterruptedError, Producer
from tests.conftest import make_settings

jobs.OPEN_JOB_LEASE_S = 1.0
producer_module.OPEN_JOB_BEAT_S = 0.2
producer_module.CHUNK_PATHS, producer_module.CHUNKS_PER_PIPELINE = 10, 1
producer_module.PIPELINES_IN_FLIGHT = 1
real = jobs.JobStore.enqueue_chunks

def paced(self, *args, **kwargs):
    time.sleep(0.3)  # time for the test to pause this process between round trips
    return real(self, *args, **kwargs)

jobs.JobStore.enqueue_chunks = paced
producer = Producer.from_settings(make_settings(redis_url=sys.argv[1]), notify_workers=False)
try:
    producer.enqueue(f"a.example.com/{i}" for i in range(100))
except EnqueueInterruptedError as exc:
    print("interrupted", exc.receipt.accepted, flush=True)
    sys.exit(1)
"""


def test_a_producer_paused_past_the_lease_finds_its_job_ended_for_good(
    redis_url: str, redis_client: redis.Redis
) -> None:
    store = Store(redis_client, make_settings())
    argv = [sys.executable, "-c", _PAUSED_PRODUCER, redis_url]
    paused = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store.quota.pending_count(ObjectType.FILE) > 0, 30)
        paused.send_signal(signal.SIGSTOP)  # a frozen host: no chunk, no beat
        time.sleep(2.0)
        _drain(store)
        went_in = store.jobs.status("1").counts.submitted
        assert store.jobs.status("1").state.value == "incomplete"
        paused.send_signal(signal.SIGCONT)
        out, _ = paused.communicate(timeout=30)
    finally:
        paused.kill()
    assert paused.returncode == 1 and out.split() == ["interrupted", str(went_in)]
    assert _drain(store) == []
    status = store.jobs.status("1")
    assert (status.state.value, status.counts.submitted) == ("incomplete", went_in)
