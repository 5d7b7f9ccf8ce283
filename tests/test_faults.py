"""Fault injection: workers SIGKILLed mid-call, Redis restarted under load, a flaky provider,
arbitrary input text, and secrets kept out of DEBUG logs and CLI output.

Each test drives real processes (Celery workers, redis-server) against the emulator over
HTTP, except the property test, which runs the flusher in process so it can try 200 inputs.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cdn_refresh.paths import InvalidPathError, normalize_path
from cdn_refresh.store import Store
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import EnqueueRejectedError, Producer
from tests.conftest import RedisServer, make_settings
from tests.harness import (
    ROOT,
    WorkerProcess,
    celery_worker_argv,
    cluster_values,
    wait_for,
    worker_env,
)
from worker.client import CdnClient
from worker.pipeline import Flusher

pytestmark = pytest.mark.fault


class Cluster:
    """Worker processes, a producer and the emulator sharing one Redis.

    Unlike test_e2e's, it keeps the embedded beat scheduler alive across kills: a replacement
    takes the scheduler over when the worker that ran it dies, since without the tick nothing
    would reclaim the dead worker's batches.
    """

    def __init__(self, redis_url: str, emulator: EmulatorServer, tmp_path: Path) -> None:
        self.redis_url = redis_url
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []
        self.beat_worker: WorkerProcess | None = None
        self.values: dict[str, Any] = {}

    def configure(self, **values: Any) -> None:
        base = cluster_values(
            self.redis_url,
            self.emulator.url,
            **{"url_daily_quota": 1_000_000, "flush_interval_s": 0.3, **values},
        )
        self.values = base
        self.settings = make_settings(**base)
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.producer = Producer.from_settings(self.settings)
        self.keys = Store(self.redis, self.settings).keys

    def start_worker(self, concurrency: int = 2) -> WorkerProcess:
        n = len(self.workers)
        beat = self.beat_worker is None or self.beat_worker.process.poll() is not None
        log_path = self.tmp_path / f"worker{n}.log"
        # DEBUG: Celery's line per task run shows only there, and the tests count them.
        argv = celery_worker_argv(
            name=f"w{n}",
            concurrency=concurrency,
            loglevel="DEBUG",
            beat_schedule=log_path.with_suffix(".beat") if beat else None,
        )
        worker = WorkerProcess(worker_env(**self.values), log_path, name=f"w{n}", argv=argv)
        self.workers.append(worker)
        if beat:
            self.beat_worker = worker
        return worker

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is None]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.redis.close()

    def logs(self) -> str:
        return "\n".join(w.log()[-3000:] for w in self.workers)

    def accepted(self) -> list[str]:
        return [p for call in self.emulator.state.calls() for p in call["paths"]]

    def wait_done(self, job_ids: list[str], timeout_s: float) -> None:
        wait_for(
            lambda: all(self.producer.status(j).to_dict()["state"] == "submitted" for j in job_ids),
            timeout_s,
            lambda: (
                json.dumps([self.producer.status(j).to_dict() for j in job_ids[:5]]) + self.logs()
            ),
        )

    def records(self) -> dict[str, dict[str, Any]]:
        raw = cast(dict[str, str], self.redis.hgetall(self.keys.of("File").records))
        return {path: json.loads(value) for path, value in raw.items()}


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(seed=23, url_quota=10_000_000, dir_quota=10_000)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
def cluster_factory(emulator: EmulatorServer, tmp_path: Path) -> Iterator[Any]:
    clusters: list[Cluster] = []

    def make(redis_url: str) -> Cluster:
        cluster = Cluster(redis_url, emulator, tmp_path)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


# -- 1. SIGKILL mid-call ---------------------------------------------------------------------

# When and which worker to kill: random, but the same moments on every run.
KILL_SEED = 5


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.timeout(200)
def test_five_sigkills_mid_drain_lose_nothing_and_resend_only_the_killed_batches(
    cluster_factory: Any, redis_url: str
) -> None:
    urls_per_call = 100
    cluster = cluster_factory(redis_url)
    # Latency after the provider records a call and before it answers: a kill then lands
    # between "the provider acted" and "we recorded it", the case that can send twice.
    cluster.emulator.state.configure(latency_s=0.2)
    cluster.configure(urls_per_call=urls_per_call, batch_lease_s=2)
    paths = [f"h{i % 8}.example.com/k/{i}.css" for i in range(20_000)]
    expected = {f"http://{p}" for p in paths}
    job = cluster.producer.enqueue(paths).job_id
    # One pool process per worker: each kill takes at most one batch in flight with it.
    for _ in range(2):
        cluster.start_worker(concurrency=1)
    for worker in cluster.workers:
        worker.wait_ready()

    rng = random.Random(KILL_SEED)
    in_flight_at_kill: list[dict[str, list[str]]] = []
    for _ in range(5):
        time.sleep(rng.uniform(0.2, 1.5))
        victim = rng.choice(cluster.live())
        victim.kill()
        batches = cluster.redis.hgetall(cluster.keys.shared.batches)
        in_flight_at_kill.append({bid: json.loads(raw)["paths"] for bid, raw in batches.items()})
        assert cluster.producer.status(job).to_dict()["counts"]["pending"] > 0, (
            "the drain ended early"
        )
        cluster.start_worker(concurrency=1).wait_ready()

    cluster.wait_done([job], timeout_s=120)
    sent = Counter(cluster.accepted())
    assert set(sent) == expected
    status = cluster.producer.status(job).to_dict()
    assert status["counts"] == {
        "pending": 0,
        "in_flight": 0,
        "submitted": 20_000,
        "failed": 0,
        "complete": 0,
    }
    assert cluster.redis.hlen(cluster.keys.shared.batches) == 0
    assert [e.to_dict() for e in cluster.producer.dead_letters()] == []

    # A batch was the victim's if its paths were finally recorded under another batch: the
    # lease ran out and the tick put them back. Only those may have gone out twice.
    records = cluster.records()
    killed: dict[str, list[str]] = {}
    for snapshot in in_flight_at_kill:
        for batch_id, batch_paths in snapshot.items():
            if any(records[p]["batch"] != batch_id for p in batch_paths):
                killed[batch_id] = batch_paths
    twice = {p for p, n in sent.items() if n > 1}
    print(
        f"\nSIGKILL x5: {len(killed)} batch(es) in flight lost with their worker, "
        f"{len(twice)} path(s) sent to the provider twice, "
        f"{sum(sent.values()) - len(sent)} extra path submissions"
    )
    assert len(killed) <= 5  # concurrency 1: one batch per kill at most
    lost_with = Counter(p for batch_paths in killed.values() for p in batch_paths)
    # A path goes out again only for a batch of it that died mid-call, at most once per such
    # batch: never for a batch whose answer was recorded.
    assert all(n <= 1 + lost_with[p] for p, n in sent.items())
    assert sum(sent.values()) - len(sent) <= sum(lost_with.values()) <= 5 * urls_per_call
    # Nothing else was retried: every path outside the killed batches went out once.
    assert all(records[p]["attempts"] == 1 for p in expected - set().union(*killed.values()))


# -- 2. Redis restarted under load ------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_a_redis_restart_mid_drain_loses_no_acknowledged_path_and_workers_reconnect(
    cluster_factory: Any, tmp_path: Path
) -> None:
    (tmp_path / "aof").mkdir()
    server = RedisServer(tmp_path / "aof", appendonly=True)
    server.start()
    try:
        cluster = cluster_factory(server.url)
        cluster.emulator.state.configure(latency_s=0.1)
        # A lease longer than the outage: a batch whose answer waits for Redis to come back
        # is not reclaimed meanwhile, so nothing needs to go out twice.
        cluster.configure(urls_per_call=100, batch_lease_s=10)
        acknowledged: dict[str, list[str]] = {}
        refused: list[str] = []
        first = [f"a{i % 5}.example.com/r/{i}" for i in range(8_000)]
        first_job = cluster.producer.enqueue(first).job_id
        acknowledged[first_job] = first
        for _ in range(2):
            cluster.start_worker(concurrency=2)
        for worker in cluster.workers:
            worker.wait_ready()

        stop_producing = threading.Event()

        def produce() -> None:
            # A second producer, as a backend service would be, enqueueing through the outage.
            producer = Producer.from_settings(cluster.settings)
            n = 0
            while not stop_producing.is_set():
                batch = [f"live.example.com/r/{n}/{i}" for i in range(50)]
                n += 1
                try:
                    acknowledged[producer.enqueue(batch).job_id] = batch
                except (redis.RedisError, OSError) as exc:
                    refused.append(type(exc).__name__)
                time.sleep(0.05)

        producer_thread = threading.Thread(target=produce, daemon=True)
        producer_thread.start()
        wait_for(lambda: len(cluster.accepted()) >= 1_000, 30, cluster.logs)
        assert cluster.producer.status(first_job).to_dict()["counts"]["pending"] > 0
        server.stop()  # SIGTERM: redis-server shuts down cleanly, the AOF fsynced
        time.sleep(1.5)
        server.start()  # same port, same directory: the AOF brings everything back
        before_restart = len(cluster.emulator.state.calls())
        time.sleep(2)
        stop_producing.set()
        producer_thread.join(30)
        cluster.wait_done(list(acknowledged), timeout_s=90)

        sent = Counter(cluster.accepted())
        missing = {f"http://{p}" for paths in acknowledged.values() for p in paths} - set(sent)
        assert not missing, sorted(missing)[:10]
        # Commands met by the outage waited for Redis (redis-py retries) instead of failing:
        # no batch was abandoned after its call, so none went out again.
        twice = sorted(p for p, n in sent.items() if n > 1)
        assert not twice, f"{len(twice)} path(s) sent twice, e.g. {twice[:3]}"
        assert len(cluster.emulator.state.calls()) > before_restart

        # Each worker reconnected by itself and goes on running tasks (the periodic tick);
        # a worker that hit an error it did not expect stays up, consuming nothing.
        def tasks_run() -> list[int]:
            return [w.log().count(" succeeded in ") for w in cluster.workers]

        before = tasks_run()
        wait_for(
            lambda: all(n > m for n, m in zip(tasks_run(), before, strict=True)), 15, cluster.logs
        )
        assert "Unrecoverable error" not in cluster.logs()
        assert [e.to_dict() for e in cluster.producer.dead_letters()] == []
        print(f"\nredis restart: {len(acknowledged)} jobs acknowledged, {len(refused)} refused")
    finally:
        server.stop()


# -- 3. A flaky provider ----------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_provider_errors_throttling_and_dropped_connections_lose_and_dead_letter_nothing(
    cluster_factory: Any, redis_url: str
) -> None:
    cluster = cluster_factory(redis_url)
    cluster.emulator.state.configure(
        internal_error_rate=0.3, throttle_rate=0.1, throttle_retry_after_ms=50, drop_rate=0.05
    )
    cluster.configure(urls_per_call=100, max_attempts=100)
    paths = [f"f{i % 9}.example.com/x/{i}.js" for i in range(5_000)]
    expected = {f"http://{p}" for p in paths}
    job = cluster.producer.enqueue(paths).job_id
    for _ in range(2):
        cluster.start_worker(concurrency=2)
    cluster.wait_done([job], timeout_s=120)

    calls = cluster.emulator.state.calls()
    sent = Counter(p for call in calls for p in call["paths"])
    assert set(sent) == expected
    assert max(sent.values()) == 1  # every failure was definite: nothing went out twice
    assert cluster.producer.status(job).to_dict()["counts"] == {
        "pending": 0,
        "in_flight": 0,
        "submitted": 5_000,
        "failed": 0,
        "complete": 0,
    }
    assert [e.to_dict() for e in cluster.producer.dead_letters()] == []
    assert cluster.redis.hlen(cluster.keys.shared.batches) == 0
    outcomes = cluster.emulator.state.stats()["by_outcome"]
    assert outcomes.get("InternalError", 0) > 0, outcomes
    assert outcomes.get("Throttling", 0) > 0, outcomes
    assert outcomes.get("Dropped", 0) > 0, outcomes
    # Each path's record holds the task IDs of the very call that carried it.
    tasks_of = {p: call["task_ids"] for call in calls for p in call["paths"]}
    records = cluster.records()
    assert {p: r["task_ids"] for p, r in records.items()} == tasks_of
    # A dropped connection is an unknown outcome: its reservation stays spent, so our count
    # is never below the provider's.
    store = Store(cluster.redis, cluster.settings)
    used = store.quota.usage("File", time.time()).used
    assert 5_000 <= used <= 5_000 + 100 * outcomes["Dropped"]


# -- 4. Arbitrary text as paths ---------------------------------------------------------------

_HOSTS = st.one_of(
    st.from_regex(r"[A-Za-z0-9.\-]{1,24}(:[0-9]{0,6})?", fullmatch=True),
    st.text(min_size=1, max_size=16),
    st.sampled_from(
        [
            "example.com",
            "Example.COM.",
            "bücher.example",
            "xn--bcher-kva.example",
            "*.example.com",
            "user:pw@example.com",
            "[::1]",
            "example.com:80",
            "example.com:443",
            "example.com:0",
        ]
    ),
)
_URLS = st.builds(
    lambda scheme, host, path, tail: f"{scheme}{host}{path}{tail}",
    st.sampled_from(["", "http://", "HTTPS://", "//", "ftp://", " ", "http:/"]),
    _HOSTS,
    st.one_of(st.just(""), st.text().map(lambda t: "/" + t)),
    st.sampled_from(["", "?", "?a=1&b=%2f", "#frag", " ", "/", "%zz"]),
)

# Around the 1,024-character limit, with characters that percent-encoding lengthens.
_LONG = st.builds(
    lambda n, piece: "a.example.com/" + piece * n,
    st.integers(min_value=330, max_value=1_020),
    st.sampled_from(["x", "é", " ", "%2f", "/"]),
)


@pytest.mark.redis
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.one_of(st.text(), _URLS, _LONG))
def test_any_text_is_rejected_with_a_reason_or_reaches_the_provider_as_one_normalized_path(
    redis_client: redis.Redis, emulator: EmulatorServer, text: str
) -> None:
    redis_client.flushall()
    emulator.state.reset()
    settings_ = make_settings(endpoint=emulator.url, url_daily_quota=1_000_000)
    producer = Producer(Store(redis_client, settings_))
    store = Store(redis_client, settings_)
    try:
        expected = normalize_path(text, "File")
    except InvalidPathError as exc:
        expected, reason = None, exc.reason
    try:
        receipt = producer.enqueue([text])
    except EnqueueRejectedError as exc:
        assert expected is None, f"{text!r} was refused, though it normalizes to {expected!r}"
        event(f"rejected: {reason.split(' ')[0]}")
        assert exc.receipt.rejected[0].reason == reason != ""
        assert store.quota.pending_count("File") == 0
        return
    assert expected is not None, f"{text!r} was enqueued, though invalid: {reason}"
    event("sent")
    assert (receipt.accepted, receipt.rejected_count) == (1, 0)
    with CdnClient(settings_.provider) as client:
        report = Flusher(store, client, settings_).flush("File")
    assert (report.submitted, report.dead_lettered) == (1, 0), [
        e.to_dict() for e in producer.dead_letters()
    ]
    assert [call["paths"] for call in emulator.state.calls()] == [[expected]]
    assert producer.lookup(text).to_dict()["state"] == "submitted"


# -- 5. No secret in DEBUG logs or CLI output -------------------------------------------------

ACCESS_KEY_SECRET = "AkSecret-Qz7vW3pL9xKm2Rb"
WRONG_SECRET = "AkWrong-Hn4tY8cJ1sDf6Ue"
REDIS_PASSWORD = "redis-pw-XYZ"
SECRETS = (ACCESS_KEY_SECRET, WRONG_SECRET, REDIS_PASSWORD)


def _cli(env: dict[str, str], *args: str, outputs: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cdn_refresh", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    outputs.append(f"$ cdn-refresh {' '.join(args)}\n{result.stdout}{result.stderr}")
    return result


@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_debug_logs_and_cli_output_never_show_the_access_key_secret_or_redis_password(
    tmp_path: Path,
) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", password=REDIS_PASSWORD)
    server.start()
    config = EmulatorConfig(seed=3, credentials={"logid": ACCESS_KEY_SECRET})
    workers: list[WorkerProcess] = []
    outputs: list[str] = []
    try:
        with EmulatorServer(config) as emulator:
            values: dict[str, Any] = {
                "redis_url": server.url,
                "endpoint": emulator.url,
                "access_key_id": "logid",
                "access_key_secret": WRONG_SECRET,
                "log_level": "DEBUG",
                "flush_interval_s": 0.3,
                "flush_debounce_s": 0.05,
                "retry_base_delay_s": 0.2,
                "retry_max_delay_s": 0.5,
                "auth_hold_max_s": 1,
            }
            common = ["--concurrency", "1", "--without-gossip", "--without-mingle"]
            common += ["--without-heartbeat", "--schedule", str(tmp_path / "beat")]
            # Phase 1: a wrong secret. Celery's own command line, at DEBUG.
            env = worker_env(**values)
            celery = [sys.executable, "-m", "celery", "-A", "worker", "worker"]
            wrong = WorkerProcess(
                env,
                tmp_path / "wrong.log",
                name="wrong",
                argv=[*celery, "--loglevel", "DEBUG", "--beat", *common],
            )
            workers.append(wrong)
            wrong.wait_ready()
            paths = [f"https://logs.example.com/p/{i}.png" for i in range(20)]
            enq = _cli(env, "enqueue", *paths, "--json", outputs=outputs)
            assert enq.returncode == 0, enq.stderr
            job = json.loads(enq.stdout)["job_id"]
            wait_for(
                lambda: emulator.state.stats()["by_outcome"].get("SignatureDoesNotMatch", 0) >= 1,
                30,
                wrong.log,
            )

            # The emulator answers before the worker records the error: wait for the record.
            def status_now() -> dict[str, Any]:
                out = _cli(env, "status", job, "--json", outputs=outputs)
                return dict(json.loads(out.stdout))

            wait_for(lambda: status_now()["last_error"] is not None, 10, wrong.log)
            status = status_now()
            counts = status["counts"]
            assert (counts["pending"] + counts["in_flight"], counts["submitted"]) == (20, 0)
            assert "SignatureDoesNotMatch" in status["last_error"]
            _cli(env, "status", job, outputs=outputs)
            _cli(env, "lookup", paths[0], "--json", outputs=outputs)
            _cli(env, "quota", outputs=outputs)
            wait_for(lambda: "credential error" in wrong.log(), 10, wrong.log)
            wrong.stop()

            # Phase 2: the right secret, through `cdn-refresh worker` (CDN_REFRESH_LOG_LEVEL).
            env = worker_env(**{**values, "access_key_secret": ACCESS_KEY_SECRET})
            right = WorkerProcess(
                env,
                tmp_path / "right.log",
                name="right",
                argv=[sys.executable, "-m", "cdn_refresh", "worker", *common],
            )
            workers.append(right)
            right.wait_ready()
            assert _cli(env, "dead-letter", "replay", "--all", outputs=outputs).returncode == 0

            def job_done() -> bool:
                out = _cli(env, "status", job, "--json", outputs=[])
                return bool(json.loads(out.stdout)["state"] == "submitted")

            wait_for(job_done, 30, right.log)
            _cli(env, "status", job, "--json", outputs=outputs)
            found = json.loads(_cli(env, "lookup", paths[0], "--json", outputs=outputs).stdout)
            assert found["state"] == "submitted" and found["task_id"]
            quota = json.loads(_cli(env, "quota", "--json", outputs=outputs).stdout)
            assert quota["file"]["used"] == 20
            _cli(env, "dead-letter", "list", outputs=outputs)
            # Failures must not leak either: a wrong Redis password, a Redis that is down,
            # and a Redis URL that is not even valid.
            bad_pw = server.url.replace(REDIS_PASSWORD, REDIS_PASSWORD + "-nope")
            denied = _cli({**env, "CDN_REFRESH_REDIS_URL": bad_pw}, "quota", outputs=outputs)
            assert denied.returncode != 0
            invalid = f"http://:{REDIS_PASSWORD}@127.0.0.1:1/0"
            refused = _cli({**env, "CDN_REFRESH_REDIS_URL": invalid}, "quota", outputs=outputs)
            assert "CDN_REFRESH_REDIS_URL" in refused.stderr
            right.stop()
            server.stop()
            down = _cli(env, "status", job, outputs=outputs)
            assert down.returncode != 0

        logs = [w.log() for w in workers]
        for log in logs:
            assert "DEBUG/" in log  # DEBUG was really on
        assert "credential error code=SignatureDoesNotMatch" in logs[0]
        assert "outcome=submitted" in logs[1]
        for text in [*logs, *outputs]:
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} leaked into:\n{text[-3000:]}"
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
