"""Regex and IgnoreParams are rows of the operations table: against a real Redis, their paths
are claimed, packed and counted by the same scripts as Files and Directories, each under its
own keys, per-call limit and rolling window; the CLI, the Python API and the HTTP API take
them by label."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from cdn_refresh.cli import main
from cdn_refresh.operations import OPERATIONS, ObjectType
from cdn_refresh.store import Store
from cdn_refresh.store.records import Batch, Wait, WaitReason
from producer.producer import Producer
from tests.conftest import make_settings
from tests.harness import claim_batch, store_and_producer

pytestmark = pytest.mark.redis

REGEX, IGNORE_PARAMS = ObjectType.REGEX, ObjectType.IGNORE_PARAMS


def _claim_all(store: Store, kind: ObjectType) -> list[Batch]:
    batches = []
    now = time.time()
    while isinstance(claimed := store.batches.claim(kind, now), Batch):
        batches.append(claimed)
    return batches


def test_a_regex_claim_carries_one_path_and_a_window_of_20_gives_at_most_20(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, interactive_reserve=0)
    patterns = [f"a{i % 3}.example.com/img/{i}/.*\\.jpg" for i in range(25)]
    receipt = producer.enqueue(patterns, REGEX)
    assert receipt.accepted == 25
    batches = _claim_all(store, REGEX)
    assert len(batches) == 20
    assert all(len(b.paths) == 1 and b.object_type is REGEX for b in batches)
    assert len({p for b in batches for p in b.paths}) == 20
    assert store.quota.usage(REGEX).used == 20
    assert store.quota.pending_count(REGEX) == 5
    # What is left waits for the Regex window, not for anyone else's.
    wait = store.batches.claim(REGEX, time.time())
    assert isinstance(wait, Wait) and wait.reason is WaitReason.QUOTA
    assert store.quota.usage(ObjectType.FILE).used == 0


def test_ignore_params_variants_coalesce_into_one_path_and_a_call_carries_up_to_1000(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, ignore_params_daily_quota=5000)
    variants = [f"cdn.example.com/app.js?v={i}" for i in range(50)]
    urls = [f"cdn.example.com/asset/{i}.css?x={i}" for i in range(1500)]
    receipt = producer.enqueue(variants + urls, IGNORE_PARAMS, "bulk")
    assert (receipt.accepted, receipt.duplicates) == (1501, 49)
    batches = _claim_all(store, IGNORE_PARAMS)
    assert [len(b.paths) for b in batches] == [1000, 501]
    sent = {p for b in batches for p in b.paths}
    assert "http://cdn.example.com/app.js" in sent and not any("?" in p for p in sent)
    assert store.quota.usage(IGNORE_PARAMS).used == 1501
    assert store.quota.usage(ObjectType.FILE).used == 0


def test_each_new_operation_keeps_its_own_keys_and_default_limit(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.example.com/x"], ObjectType.FILE)
    producer.enqueue(["a.example.com/x"], IGNORE_PARAMS)
    producer.enqueue(["a.example.com/x"], REGEX)
    for kind in (ObjectType.FILE, REGEX, IGNORE_PARAMS):
        assert claim_batch(store, kind).paths == ("http://a.example.com/x",)
    assert store.quota.usage(REGEX).limit == 20
    assert store.quota.usage(IGNORE_PARAMS).limit == 100
    keys = store.keys.of(REGEX)
    assert keys.pending.endswith(":regex:pending")
    assert store.keys.of(IGNORE_PARAMS).pending.endswith(":ignore_params:pending")


def test_quota_json_has_a_section_per_operation(redis_client: redis.Redis) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.example.com/(a|b)\\.png"], REGEX)
    claim_batch(store, REGEX)
    producer.enqueue(["a.example.com/p?q=1"], IGNORE_PARAMS)
    document = json.loads(json.dumps(producer.quota()))
    assert {op.label for op in OPERATIONS.values()} <= set(document)
    assert (document["regex"]["limit"], document["regex"]["used"]) == (20, 1)
    assert (document["ignore-params"]["limit"], document["ignore-params"]["pending"]) == (100, 1)


def test_lookup_finds_a_regex_and_an_ignore_params_path_by_any_spelling(
    redis_client: redis.Redis,
) -> None:
    producer = Producer(Store(redis_client, make_settings()))
    producer.enqueue(["https://a.example.com/v[0-9]+/"], REGEX)
    producer.enqueue(["a.example.com/app.js?v=1"], IGNORE_PARAMS)
    found = producer.lookup("HTTPS://A.example.com:443/v[0-9]+/", REGEX).to_dict()
    assert (found["path"], found["state"]) == ("https://a.example.com/v[0-9]+/", "pending")
    found = producer.lookup("a.example.com/app.js?v=99", "ignore-params").to_dict()
    assert (found["path"], found["state"]) == ("http://a.example.com/app.js", "pending")
    # Looked up as a File, the hint names the IgnoreParams path it was enqueued as.
    hint = producer.lookup("a.example.com/app.js").to_dict()["hint"]
    assert "http://a.example.com/app.js (IgnoreParams, pending)" in hint


def test_a_pending_regex_with_dot_syntax_is_never_respelled_nor_keeps_the_upgrade_pass_going(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    patterns = ["http://a.example.com/img/./.*\\.png", "http://a.example.com/../x/.*"]
    producer.enqueue(patterns, REGEX)
    claimed = claim_batch(store, REGEX)
    assert claimed.paths[0] in patterns
    # One in flight, one pending, both spelled with "/.": neither is an older spelling.
    assert store.quota.pending_count(REGEX) == 1
    assert store.respelling.pass_once() == 0 and store.respelling.done()
    for pattern in patterns:
        assert producer.lookup(pattern, REGEX).to_dict()["path"] == pattern


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def run(redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("CDN_REFRESH_ALLOWED_DOMAINS", "CDN_REFRESH_KEY_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    env = {"CDN_REFRESH_REDIS_URL": redis_url, "CDN_REFRESH_FLUSH_DEBOUNCE_S": "0"}

    def invoke(*args: str, **extra_env: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(main, list(args), env={**env, **extra_env})

    return invoke


def test_enqueue_type_regex_refuses_a_pattern_that_does_not_compile_and_enqueues_nothing(
    run,  # type: ignore[no-untyped-def]
    redis_client: redis.Redis,
) -> None:
    result = run("enqueue", "--type", "regex", "a.example.com/ok/.*", "a.example.com/(x", "--json")
    assert result.exit_code == 2, result.output
    (rejected,) = json.loads(result.stdout)["rejected"]
    assert rejected["line"] == 2 and rejected["reason"].startswith("regex does not compile")
    assert redis_client.dbsize() == 0
    allowed = {"CDN_REFRESH_ALLOWED_DOMAINS": "*.example.com"}
    outside = run("enqueue", "--type", "regex", "evil.org/.*", "--json", **allowed)
    assert json.loads(outside.stdout)["rejected"][0]["reason"] == "domain evil.org not allowed"


def test_enqueue_type_ignore_params_drops_the_query_and_counts_variants_as_duplicates(
    run,  # type: ignore[no-untyped-def]
) -> None:
    variants = [f"a.example.com/app.js?v={i}" for i in range(5)]
    result = run("enqueue", "--type", "ignore-params", *variants, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["accepted"], body["duplicates"]) == (1, 4)
    found = json.loads(run("lookup", "--type", "ignore-params", variants[3], "--json").stdout)
    assert (found["path"], found["state"]) == ("http://a.example.com/app.js", "pending")


def test_quota_sets_and_shows_the_regex_and_ignore_params_limits(run) -> None:  # type: ignore[no-untyped-def]
    assert run("quota", "--set-regex-quota", "5", "--set-ignore-params-quota", "7").exit_code == 0
    shown = json.loads(run("quota", "--json").stdout)
    assert (shown["regex"]["limit"], shown["ignore-params"]["limit"]) == (5, 7)
    assert "regex" in run("quota").output and "ignore-params" in run("quota").output


def test_plan_counts_regex_calls_one_path_each_at_the_regex_window(
    run,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    assert run("enqueue", "--type", "regex", "a.com/x/.*", "a.com/y/.*", "--json").exit_code == 0
    more = tmp_path / "patterns.txt"
    more.write_text("\n".join(f"b.com/{i}/.*" for i in range(8)))
    result = run("plan", "--json", "--type", "regex", "--from-file", str(more))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["regex"] == {"pending": 10, "calls": 10, "days_to_drain": 0.5}
    assert plan["ignore-params"] == {"pending": 0, "calls": 0, "days_to_drain": 0.0}
    assert plan["file"]["pending"] == 0
    assert "regex      pending=2 calls=2 drains in 0.1 days" in run("plan").output
