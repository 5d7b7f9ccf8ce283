"""The flush loop end to end in one process: real redis-server, our client, and the emulator
over HTTP on loopback. (The multi-process proof with Celery workers is in test_e2e.py.)"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import parse_qsl

import httpx
import pytest
import redis

from cdn_refresh.provider_day import seconds_until_reset
from cdn_refresh.store import Store
from cdn_refresh.store.records import Release
from emulator import EmulatorConfig, EmulatorServer
from producer.producer import Producer
from tests.conftest import make_settings
from worker.client import CdnClient
from worker.pipeline import Flusher
from worker.policy import MAX_SPLIT_CALLS

pytestmark = pytest.mark.redis


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=7, url_quota=100_000, dir_quota=10_000)) as server:
        yield server


class Rig:
    """A producer, a store and a flusher wired to one Redis and one emulator."""

    def __init__(self, redis_client: redis.Redis, emulator: EmulatorServer, **overrides: object):
        # The flush loop alone: no reads of the provider's own count unless a test asks.
        values = {"endpoint": emulator.url, "quota_sync_s": 0, **overrides}
        self.settings = make_settings(**values)
        self.producer = Producer(Store(redis_client, self.settings))
        self.store = Store(redis_client, self.settings)
        self.client = CdnClient(self.settings.provider)
        self.flusher = Flusher(self.store, self.client, self.settings, rng=random.Random(1))
        self.emulator = emulator

    def drain(self, kind: str = "File", rounds: int = 200) -> None:
        """Flush until nothing is pending or in flight (waiting out short backoffs)."""
        for _ in range(rounds):
            report = self.flusher.flush(kind)  # type: ignore[arg-type]
            if report.wait is None and not report.more and not self.store.quota.pending_count(kind):  # type: ignore[arg-type]
                return
            if report.wait is not None:
                if report.wait.reason not in ("backoff",):
                    return
                time.sleep(min(report.wait.seconds, 0.05))
        raise AssertionError("did not drain")

    def accepted_paths(self) -> list[str]:
        return [p for call in self.emulator.state.calls() for p in call["paths"]]

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def rig_factory(redis_client: redis.Redis, emulator: EmulatorServer) -> Iterator[type[Rig]]:
    rigs: list[Rig] = []

    class _Rig(Rig):
        def __init__(self, **overrides: object) -> None:
            super().__init__(redis_client, emulator, **overrides)
            rigs.append(self)

    yield _Rig  # type: ignore[misc]
    for r in rigs:
        r.close()


def test_each_unique_path_reaches_the_provider_once_in_the_fewest_calls(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(url_daily_quota=100_000)
    paths = [f"d{i % 5}.example.com/img/{i}.png" for i in range(2_500)]
    job = rig.producer.enqueue(paths + paths[:700]).job_id
    rig.drain()
    calls = rig.emulator.state.calls()
    assert len(calls) == 3  # ceil(2500 / 1000)
    accepted = rig.accepted_paths()
    assert len(accepted) == len(set(accepted)) == 2_500
    status = rig.producer.status(job).to_dict()
    assert status["state"] == "submitted"
    assert status["counts"]["submitted"] == 2_500
    assert set(status["task_ids"]) == {t for call in calls for t in call["task_ids"]}
    found = rig.producer.lookup(paths[0]).to_dict()
    assert found["state"] == "submitted"
    assert found["task_id"] in {",".join(call["task_ids"]) for call in calls}


def test_one_bad_path_in_a_batch_of_1000_is_isolated_and_dead_lettered(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(url_daily_quota=100_000)
    # The emulator refuses paths over 100 characters: valid for us, malformed for "the provider".
    rig.emulator.state.configure(max_path_length=100)
    good = [f"a.example.com/{i}" for i in range(999)]
    bad = "a.example.com/" + "x" * 120
    job = rig.producer.enqueue([*good[:500], bad, *good[500:]]).job_id
    rig.drain()
    accepted = rig.accepted_paths()
    assert sorted(accepted) == sorted(f"http://{p}" for p in good)
    dead = [e.to_dict() for e in rig.producer.dead_letters()]
    assert [(d["path"], d["code"]) for d in dead] == [
        (f"http://{bad}", "InvalidObjectPath.Malformed")
    ]
    assert rig.producer.status(job).to_dict()["counts"] == {
        "pending": 0,
        "in_flight": 0,
        "submitted": 999,
        "failed": 1,
        "complete": 0,
    }
    # The bad path's share of the reservation came back; the good ones' did not.
    assert rig.store.quota.usage("File", time.time()).used == 999
    # Bisection: log2(1000) rounds at most, not one call per path.
    assert len(rig.emulator.state.calls()) <= 20


def test_transient_faults_and_dropped_connections_lose_nothing(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(url_daily_quota=100_000, urls_per_call=50, max_attempts=50)
    rig.emulator.state.configure(
        internal_error_rate=0.3, throttle_rate=0.1, throttle_retry_after_ms=1, drop_rate=0.05
    )
    paths = [f"h{i % 7}.example.com/{i}" for i in range(1_000)]
    job = rig.producer.enqueue(paths).job_id
    rig.drain(rounds=2_000)
    assert sorted(set(rig.accepted_paths())) == sorted(f"http://{p}" for p in paths)
    assert rig.producer.status(job).to_dict()["state"] == "submitted"
    assert [e.to_dict() for e in rig.producer.dead_letters()] == []
    outcomes = rig.emulator.state.stats()["by_outcome"]
    assert outcomes["InternalError"] > 0 and outcomes["Throttling"] > 0
    # A dropped connection is an unknown outcome: its reservation stays spent.
    dropped = sum(n for code, n in outcomes.items() if "drop" in code.lower())
    assert dropped > 0, outcomes
    assert rig.store.quota.usage("File", time.time()).used == 1_000 + 50 * dropped


def test_an_unknown_outcome_keeps_the_reservation_and_retries(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(url_daily_quota=100_000, urls_per_call=10)
    rig.emulator.state.configure(drop_after_accept_rate=0.5)
    paths = [f"a.example.com/{i}" for i in range(100)]
    rig.producer.enqueue(paths)
    rig.drain(rounds=1_000)
    accepted = Counter(rig.accepted_paths())
    assert set(accepted) == {f"http://{p}" for p in paths}
    twice = sum(1 for n in accepted.values() if n > 1)
    assert twice > 0  # some answers were lost after the provider acted ...
    # ... and our count includes them: we never spend less than the provider counted.
    assert rig.store.quota.usage("File", time.time()).used == sum(accepted.values())


def test_our_quota_caps_what_the_provider_receives(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(url_daily_quota=1_500)
    rig.producer.enqueue([f"a.example.com/{i}" for i in range(4_000)])
    rig.drain()
    assert len(rig.accepted_paths()) == 1_500
    assert rig.store.quota.pending_count("File") == 2_500


def test_provider_quota_exhausted_holds_the_type_and_keeps_the_paths(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(url_daily_quota=10_000)
    rig.emulator.state.configure(url_quota=1_200)
    job = rig.producer.enqueue([f"a.example.com/{i}" for i in range(2_000)]).job_id
    rig.drain()
    assert len(rig.accepted_paths()) == 1_000
    assert rig.store.quota.pending_count("File") == 1_000
    wait = rig.store.batches.claim("File", time.time())
    assert wait is not None and not hasattr(wait, "paths")
    assert wait.reason == "provider_quota"  # type: ignore[union-attr]
    assert abs(wait.seconds - seconds_until_reset(time.time())) < 5  # type: ignore[union-attr]
    assert rig.producer.status(job).to_dict()["counts"]["pending"] == 1_000
    assert [e.to_dict() for e in rig.producer.dead_letters()] == []
    # The failed call's reservation came back: only what the provider took is counted.
    assert rig.store.quota.usage("File", time.time()).used == 1_000


def test_wrong_credentials_keep_the_paths_show_the_error_and_back_off(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(
        access_key_secret="wrong", retry_base_delay_s=0.2, retry_max_delay_s=1, auth_hold_max_s=10
    )
    job = rig.producer.enqueue(["a.example.com/1", "a.example.com/2"]).job_id
    for _ in range(20):
        rig.flusher.flush("File")
    stats = rig.emulator.state.stats()
    assert rig.accepted_paths() == []
    # One call, then the hold: no tight retry loop.
    assert stats["requests"] == 1, stats
    status = rig.producer.status(job).to_dict()
    assert status["counts"]["pending"] == 2
    assert "SignatureDoesNotMatch" in status["last_error"]
    assert "SignatureDoesNotMatch" in rig.producer.lookup("a.example.com/1").to_dict()["last_error"]
    assert [e.to_dict() for e in rig.producer.dead_letters()] == []
    # The operator fixes the key and replays: everything goes through.
    fixed = rig_factory(access_key_secret="testsecret")
    fixed.producer.replay()
    fixed.drain()
    assert sorted(rig.accepted_paths()) == ["http://a.example.com/1", "http://a.example.com/2"]
    assert fixed.producer.status(job).to_dict()["state"] == "submitted"


def test_a_path_that_climbs_out_of_a_directory_is_refreshed_where_it_lands(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(directory_daily_quota=1_000)
    # Pending first, then the Directory: coverage would settle it with the Directory's call
    # if "/x/../secret.png" still read as lying under "/x/".
    rig.producer.enqueue(["http://a.com/x/../secret.png"])
    rig.producer.enqueue(["http://a.com/x/"], object_type="Directory")
    rig.drain("Directory")
    rig.drain("File")
    found = rig.producer.lookup("http://a.com/secret.png").to_dict()
    assert found["state"] == "submitted" and found["covered_by"] is None, found
    assert "http://a.com/secret.png" in rig.accepted_paths()
    [answer] = rig.emulator.state.refreshed(["http://a.com/secret.png"])
    assert answer["refreshed"] and answer["how"] == "itself", answer
    # The spelling with dots is the same path: one lookup, one refresh.
    assert rig.producer.lookup("a.com/x/%2E%2E/secret.png").to_dict() == found


def test_an_endpoint_that_refuses_connections_holds_the_work_and_spends_nothing(
    rig_factory,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    rig = rig_factory(
        endpoint=dead,
        max_attempts=2,
        retry_base_delay_s=0.01,
        retry_max_delay_s=0.02,
        auth_hold_max_s=0.05,
    )
    job = rig.producer.enqueue([f"a.example.com/{i}" for i in range(30)]).job_id
    with caplog.at_level(logging.DEBUG, logger="cdn_refresh.worker"):
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # a minute of outage, in fast motion
            rig.flusher.flush("File")
            time.sleep(0.01)
    status = rig.producer.status(job).to_dict()
    # Nothing dead-lettered, no attempt spent, no unit kept: the call never left.
    assert status["state"] == "pending" and status["counts"]["pending"] == 30, status
    assert [e.to_dict() for e in rig.producer.dead_letters()] == []
    assert rig.producer.lookup("a.example.com/1").to_dict()["attempts"] == 0
    assert rig.store.quota.usage("File", time.time()).used == 0
    assert "ConnectError" in status["last_error"]
    said = [r for r in caplog.records if "endpoint does not answer" in r.getMessage()]
    assert len(said) > 1  # it did hold again and again ...
    assert [r.levelno for r in said].count(logging.ERROR) == 1  # ... and said so once
    # The endpoint answers again (here: the right one): the work goes out by itself.
    time.sleep(0.06)
    back = rig_factory(max_attempts=2)
    back.drain()
    assert len(rig.accepted_paths()) == 30
    assert back.producer.status(job).to_dict()["state"] == "submitted"


def test_directories_are_sent_as_directory_calls(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(directory_daily_quota=1_000)
    rig.producer.enqueue([f"a.example.com/d{i}/" for i in range(150)], object_type="Directory")
    rig.drain("Directory")
    calls = rig.emulator.state.calls()
    assert [(c["object_type"], len(c["paths"])) for c in calls] == [
        ("Directory", 100),
        ("Directory", 50),
    ]


def test_each_batch_logs_one_line_with_its_outcome_task_ids_and_attempt(
    rig_factory,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = rig_factory()
    rig.producer.enqueue(["a.example.com/1", "b.example.com/2"])
    with caplog.at_level(logging.INFO, logger="cdn_refresh.worker"):
        rig.drain()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch ")]
    task_ids = rig.emulator.state.calls()[0]["task_ids"]
    assert len(lines) == 1
    for part in (
        "type=File",
        "paths=2",
        "domains=2",
        "attempt=1",
        "calls=1",
        "outcome=submitted",
        f"task_ids={','.join(task_ids)}",
    ):
        assert part in lines[0], lines[0]
    assert "testsecret" not in caplog.text


class _Scripted:
    """A provider answering by a function of the request's paths (httpx.MockTransport)."""

    def __init__(self, answer):  # type: ignore[no-untyped-def]
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.content.decode()))
        paths = params["ObjectPath"].split("\n")
        self.calls.append(paths)
        status, body = self.answer(paths)
        return httpx.Response(status, json=body)


def _mock_flusher(redis_client: redis.Redis, provider: _Scripted, **overrides: object):  # type: ignore[no-untyped-def]
    settings = make_settings(**{"quota_sync_s": 0, **overrides})
    store = Store(redis_client, settings)
    client = CdnClient(settings.provider, transport=httpx.MockTransport(provider))
    return Producer(Store(redis_client, settings)), store, Flusher(store, client, settings)


def test_a_malformed_call_is_retried_with_backoff_not_split_path_by_path(
    redis_client: redis.Redis,
) -> None:
    provider = _Scripted(lambda paths: (400, {"Code": "MissingParameter", "Message": "x"}))
    producer, store, flusher = _mock_flusher(
        redis_client, provider, retry_base_delay_s=10, retry_max_delay_s=10
    )
    producer.enqueue([f"a.example.com/{i}" for i in range(1_000)])
    report = flusher.flush("File")
    assert len(provider.calls) == 1
    assert report.requeued == 1_000 and report.dead_lettered == 0
    assert store.quota.pending_count("File") == 1_000
    assert producer.lookup("a.example.com/1").to_dict()["attempts"] == 1


def test_splitting_stops_after_its_budget_when_many_paths_are_bad(
    redis_client: redis.Redis,
) -> None:
    bad = {"Code": "InvalidDomain.Offline", "Message": "offline"}
    provider = _Scripted(lambda paths: (404, bad))
    producer, store, flusher = _mock_flusher(
        redis_client, provider, retry_base_delay_s=10, retry_max_delay_s=10
    )
    producer.enqueue([f"gone.example.com/{i}" for i in range(1_000)])
    report = flusher.flush("File")
    assert len(provider.calls) == MAX_SPLIT_CALLS
    # What the budget isolated is dead-lettered; the rest waits, with an attempt counted.
    assert report.dead_lettered > 0
    assert report.dead_lettered + store.quota.pending_count("File") == 1_000
    wait = store.batches.claim("File", time.time())
    assert wait is not None and getattr(wait, "reason", None) == "backoff"


def test_an_answer_that_comes_after_the_lease_ran_out_keeps_its_task_ids(
    redis_client: redis.Redis,
) -> None:
    def late(paths: list[str]) -> tuple[int, dict[str, str]]:
        # The worker stalls past its lease: the tick reclaims the batch meanwhile.
        for batch_id in redis_client.hkeys(store.keys.shared.batches):
            store.batches.release(
                batch_id,
                "File",
                Release.RETRY,
                time.time() + 10_000,
                only_if_lease_expired=True,
                code="WorkerLost",
            )
        return 200, {"RefreshTaskId": "777", "RequestId": "R7"}

    provider = _Scripted(late)
    producer, store, flusher = _mock_flusher(redis_client, provider)
    producer.enqueue(["a.example.com/1"])
    flusher.flush("File", max_batches=1)
    found = producer.lookup("a.example.com/1").to_dict()
    assert found["state"] == "pending"  # it goes out again: the lease said so
    assert (found["task_id"], found["request_id"]) == ("777", "R7")
