"""Regex and IgnoreParams end to end: real Celery workers, a real redis-server and the
emulator over HTTP. A new operation is a row of the table: its paths go out as its own
``ObjectType``, within its own per-call limit and rolling window, and are tracked to
completion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.store.records import JobState, PathState
from emulator import EmulatorConfig, EmulatorServer
from tests.harness import Cluster, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

REGEX, IGNORE_PARAMS = ObjectType.REGEX, ObjectType.IGNORE_PARAMS


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(seed=11, regex_quota=20, ignore_params_quota=10_000)
    with EmulatorServer(config) as server:
        yield server


def _calls(cluster: Cluster, kind: ObjectType) -> list[dict[str, Any]]:
    """The accepted refresh calls of ``kind``, as the emulator's HTTP endpoint lists them."""
    answer = httpx.get(f"{cluster.emulator.url}/_emulator/calls", timeout=5)
    answer.raise_for_status()
    return [c for c in answer.json()["calls"] if c["object_type"] == kind.value]


def test_two_workers_send_exactly_20_regex_calls_of_25_patterns_and_keep_5_pending(
    cluster: Cluster,
) -> None:
    cluster.configure(regex_daily_quota=20, interactive_reserve=0)
    patterns = [f"http://a{i % 4}.example.com/img/{i}/.*\\.jpg" for i in range(25)]
    job = cluster.producer.enqueue(patterns, REGEX, Priority.INTERACTIVE).job_id
    cluster.start_workers(2)
    wait_for(lambda: len(_calls(cluster, REGEX)) >= 20, 60, cluster.logs)
    # Several flush ticks later, still 20: the 21st never reaches the provider.
    time.sleep(3 * cluster.settings.flush.interval_s + 1)
    calls = _calls(cluster, REGEX)
    assert len(calls) == 20
    assert all(len(c["paths"]) == 1 for c in calls)
    sent = [c["paths"][0] for c in calls]
    assert len(set(sent)) == 20 and set(sent) <= set(patterns)
    stats = cluster.emulator.state.stats()
    assert "QuotaExceeded.Refresh" not in stats["by_outcome"]
    assert stats["quota"]["regex_used"] == 20
    assert cluster.store.quota.pending_count(REGEX) == 5
    assert cluster.store.quota.usage(REGEX).used == 20
    status = cluster.producer.status(job).to_dict()
    assert status["counts"]["pending"] == 5
    # The metrics carry the type: 20 calls accepted, 20 of 20 units used, 5 pending.
    figures = cluster.store.metrics.snapshot()[REGEX]
    assert (figures.quota_used, figures.quota_limit, figures.pending_interactive) == (20, 20, 5)
    assert figures.calls == {"submitted": 20} and figures.submitted_paths == 20, figures
    # The sent ones are followed to completion like any tracked call.
    wait_for(
        lambda: cluster.producer.lookup(sent[0], REGEX).to_dict()["state"] == "complete",
        30,
        cluster.logs,
    )


def test_ignore_params_urls_go_out_as_ignore_params_up_to_1000_a_call_without_their_query(
    cluster: Cluster,
) -> None:
    cluster.configure(ignore_params_daily_quota=5000)
    variants = [f"http://cdn.example.com/app.js?v={i}" for i in range(50)]
    urls = [f"http://cdn.example.com/assets/{i}.css?h={i}" for i in range(1499)]
    job = cluster.producer.enqueue(variants + urls, IGNORE_PARAMS, Priority.BULK).job_id
    cluster.start_workers(2)
    cluster.wait_done([job], timeout_s=60)
    calls = _calls(cluster, IGNORE_PARAMS)
    sent = [p for c in calls for p in c["paths"]]
    assert all(1 <= len(c["paths"]) <= 1000 for c in calls) and len(calls) >= 2
    assert len(sent) == len(set(sent)) == 1500
    assert "http://cdn.example.com/app.js" in sent and not any("?" in p for p in sent)
    # Fifty ?v= variants cost one IgnoreParams unit, and no File unit at all.
    stats = cluster.emulator.state.stats()
    assert (stats["quota"]["ignore_params_used"], stats["quota"]["url_used"]) == (1500, 0)
    assert _calls(cluster, ObjectType.FILE) == []
    reached = cluster.emulator.state.refreshed(variants)
    assert all(entry["how"] == "ignore_params" for entry in reached)
    wait_for(lambda: cluster.producer.status(job).state is JobState.COMPLETE, 30, cluster.logs)


def test_a_regex_the_provider_refuses_is_dead_lettered_as_regex_and_goes_again_when_replayed(
    cluster: Cluster,
) -> None:
    cluster.emulator.state.configure(unknown_domains=frozenset({"gone.example.com"}))
    cluster.configure()
    refused, fine = "http://gone.example.com/x/.*", "http://a.example.com/x/.*"
    job = cluster.producer.enqueue([refused, fine], REGEX).job_id
    cluster.start_workers(1)
    cluster.wait_done([job])
    dead = [d.to_dict() for d in cluster.producer.dead_letters()]
    assert [(d["path"], d["object_type"], d["code"]) for d in dead] == [
        (refused, "Regex", "InvalidDomain.NotFound")
    ]
    assert cluster.producer.lookup(refused, REGEX).state is PathState.FAILED
    assert [c["paths"] for c in _calls(cluster, REGEX)] == [[fine]]
    # Once the provider serves the domain, a replay sends it, as a Regex.
    cluster.emulator.state.configure(unknown_domains=frozenset())
    assert cluster.producer.replay([refused], "regex") == 1
    wait_for(lambda: [refused] in [c["paths"] for c in _calls(cluster, REGEX)], 30, cluster.logs)
