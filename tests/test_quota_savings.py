"""Getting more out of the quota, against a real redis-server: coverage by a Directory, the
per-path cooldown, promotion planning and what it enqueues (issue 10)."""

from __future__ import annotations

import time

import pytest
import redis

from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.planning import days_to_drain, directories_above, plan_promotions
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from cdn_refresh.store.keys import waiter_field
from cdn_refresh.store.records import Batch, PathState, Release, Wait, WaitReason
from producer.producer import Producer
from tests.harness import claim_batch, job_counts, store_and_producer
from worker.promotion import Promoter

pytestmark = pytest.mark.redis

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY


def _all_pending_indexed(redis_client: redis.Redis, store: Store) -> None:
    # Only Directories keep a coverage index: the Files are found by a scan of their pending.
    tk = store.keys.of(DIRECTORY)
    assert set(redis_client.zrange(tk.pending, 0, -1)) == set(
        redis_client.zrange(tk.pending_lex, 0, -1)
    )
    assert not redis_client.exists(store.keys.of(FILE).pending_lex)


def test_files_pending_before_a_directory_are_settled_with_its_task_for_no_unit(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    files = producer.enqueue(
        ["a.com/news/1.png", "a.com/news/deep/2.css?v=3", "a.com/other/x.png", "b.com/news/y"]
    )
    directory = producer.enqueue(["a.com/news/"], DIRECTORY)
    # The File claim leaves the covered Files for the Directory.
    batch = claim_batch(store, FILE)
    assert set(batch.paths) == {"http://a.com/other/x.png", "http://b.com/news/y"}
    store.batches.submit(batch, (), ("F1",), "R1")
    dirs = claim_batch(store, DIRECTORY)
    coverage = store.batches.cover(dirs)
    assert (coverage.files, coverage.directories, coverage.nested) == (2, 0, 0)
    assert store.paths.lookup("http://a.com/news/1.png", FILE).state is PathState.IN_FLIGHT
    done = store.batches.submit(coverage.batch, (), ("T9",), "R9")
    assert (done.settled, done.covered) == (1, 2)
    for path in ("http://a.com/news/1.png", "http://a.com/news/deep/2.css?v=3"):
        found = store.paths.lookup(path, FILE).to_dict()
        assert (found["state"], found["covered_by"], found["task_id"]) == (
            "submitted",
            "http://a.com/news/",
            "T9",
        )
        assert found["request_id"] == "R9"
    assert store.paths.lookup("http://a.com/other/x.png", FILE).covered_by is None
    # Two URL units (x.png and y), one Directory unit; every path of both jobs is settled.
    assert store.quota.usage(FILE).used == 2
    assert store.quota.usage(DIRECTORY).used == 1
    assert job_counts(producer, files.job_id) == {"submitted": 4}
    assert producer.status(files.job_id).to_dict()["state"] == "submitted"
    assert job_counts(producer, directory.job_id) == {"submitted": 1}
    _all_pending_indexed(redis_client, store)


def test_a_directory_first_then_files_under_it_covers_them_too(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    producer.enqueue([f"a.com/img/{i}.png" for i in range(30)])
    # Nothing for the File claim: every File waits for the pending Directory.
    assert store.batches.claim(FILE, time.time()) is None
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage.files == 30
    assert store.quota.pending_count(FILE) == 0
    store.batches.submit(coverage.batch, (), ("T1",), "R1")
    assert store.paths.lookup("http://a.com/img/7.png", FILE).covered_by == "http://a.com/img/"
    assert store.quota.usage(FILE).used == 0


def test_a_file_enqueued_after_its_directory_went_out_goes_on_its_own(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.com/img/old.png"])
    producer.enqueue(["a.com/img/"], DIRECTORY)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage.files == 1
    # The Directory is in flight: a File asked for now may have changed since it was sent.
    late = producer.enqueue(["a.com/img/new.png"])
    batch = claim_batch(store, FILE)
    assert batch.paths == ("http://a.com/img/new.png",)
    store.batches.submit(coverage.batch, (), ("T1",), "R1")
    store.batches.submit(batch, (), ("T2",), "R2")
    found = store.paths.lookup("http://a.com/img/new.png", FILE)
    assert (found.covered_by, found.task_id) == (None, "T2")
    assert job_counts(producer, late.job_id) == {"submitted": 1}


def test_a_directory_under_another_of_its_batch_costs_no_unit(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    job = producer.enqueue(["a.com/x/", "a.com/x/y/", "a.com/x/y/z/", "a.com/q/"], DIRECTORY)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage.nested == 2
    assert set(coverage.batch.paths) == {"http://a.com/x/", "http://a.com/q/"}
    assert store.quota.usage(DIRECTORY).used == 2
    store.batches.submit(coverage.batch, (), ("T1", "T2"), "R")
    assert store.paths.lookup("http://a.com/x/y/z/", DIRECTORY).covered_by == "http://a.com/x/"
    assert job_counts(producer, job.job_id) == {"submitted": 4}


def test_an_interactive_file_never_waits_for_a_bulk_directory(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.com/img/"], DIRECTORY, Priority.BULK)
    producer.enqueue(["a.com/img/now.png"], FILE, Priority.INTERACTIVE)
    producer.enqueue(["a.com/img/later.png"], FILE, Priority.BULK)
    assert claim_batch(store, FILE).paths == ("http://a.com/img/now.png",)


def test_files_do_not_wait_for_a_directory_that_cannot_go(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, directory_daily_quota=1)
    producer.enqueue(["a.com/spent/"], DIRECTORY)
    store.batches.submit(claim_batch(store, DIRECTORY), (), ("T1",), "R")
    producer.enqueue(["a.com/img/"], DIRECTORY)
    producer.enqueue(["a.com/img/1.png"])
    # The Directory window is full: the File goes on its own rather than wait a day.
    assert claim_batch(store, FILE).paths == ("http://a.com/img/1.png",)


@pytest.mark.parametrize("how", ["retry", "lease_expired"])
def test_a_directory_that_fails_or_whose_worker_dies_gives_back_what_it_covered(
    redis_client: redis.Redis, how: str
) -> None:
    producer, store = store_and_producer(redis_client, batch_lease_s=30)
    files = producer.enqueue([f"a.com/img/{i}.png" for i in range(12_000)])
    again = producer.enqueue(["a.com/img/3.png"])
    directory = producer.enqueue(["a.com/img/", "a.com/img/sub/"], DIRECTORY)
    now = time.time()
    batch = claim_batch(store, DIRECTORY, now)
    coverage = store.batches.cover(batch)
    # More than one step of cover.lua: it went on until everything was covered.
    assert (coverage.files, coverage.nested) == (12_000, 1)
    assert job_counts(producer, files.job_id) == {"in_flight": 12_000}
    if how == "retry":
        store.batches.release(batch.id, DIRECTORY, Release.RETRY, code="InternalError")
    else:
        # The worker died between the claim and the settle: the tick reclaims its batch.
        assert store.batches.expired(now + 31) == [(batch.id, DIRECTORY)]
        store.batches.release(
            batch.id, DIRECTORY, Release.RETRY, now + 31, only_if_lease_expired=True
        )
    assert store.quota.pending_count(FILE) == 12_000
    assert store.quota.pending_count(DIRECTORY) == 2
    assert redis_client.hlen(store.keys.shared.covered) == 0
    assert job_counts(producer, files.job_id) == {"pending": 12_000}
    assert job_counts(producer, again.job_id) == {"pending": 1}
    assert job_counts(producer, directory.job_id) == {"pending": 2}
    _all_pending_indexed(redis_client, store)
    # And the next claim covers them again, with every waiting job.
    coverage = store.batches.cover(claim_batch(store, DIRECTORY, now + 40))
    assert coverage.files == 12_000
    store.batches.submit(coverage.batch, (), ("T",), "R", now + 41)
    assert job_counts(producer, again.job_id) == {"submitted": 1}
    assert job_counts(producer, files.job_id) == {"submitted": 12_000}


def test_a_path_requested_again_within_the_cooldown_goes_out_once_when_it_ends(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=60)
    path = "http://cms.example.com/page.html"
    first = producer.enqueue([path])
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    # A CMS saves the page 30 more times inside the cooldown.
    jobs = [producer.enqueue([path]).job_id for _ in range(30)]
    claimed = store.batches.claim(FILE, t0 + 1)
    assert isinstance(claimed, Wait)
    assert claimed.reason is WaitReason.COOLDOWN
    assert 58 < claimed.seconds <= 59.5
    found = store.paths.lookup(path, FILE)
    assert found.state is PathState.PENDING
    assert found.cooling_until == pytest.approx(t0 + 60)
    # More requests while it cools join it; none goes out before the cooldown ends.
    jobs.append(producer.enqueue([path], FILE, Priority.BULK).job_id)
    assert isinstance(store.batches.claim(FILE, t0 + 59), Wait)
    batch = claim_batch(store, FILE, t0 + 61)
    assert batch.paths == (path,)
    store.batches.submit(batch, (), ("T2",), "R2", t0 + 61)
    assert store.paths.lookup(path, FILE).task_id == "T2"
    assert all(job_counts(producer, job) == {"submitted": 1} for job in [first.job_id, *jobs])
    assert store.quota.usage(FILE, t0 + 62).used == 2
    _all_pending_indexed(redis_client, store)


def test_without_a_cooldown_a_repeat_goes_out_at_once(redis_client: redis.Redis) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0)
    producer.enqueue(["a.com/p"])
    store.batches.submit(claim_batch(store, FILE), (), ("T1",), "R1")
    producer.enqueue(["a.com/p"])
    assert claim_batch(store, FILE).paths == ("http://a.com/p",)


def test_directories_above_a_path_ignore_its_query() -> None:
    assert directories_above("https://h.com/a/b.png?x=/c/d/") == [
        "https://h.com/",
        "https://h.com/a/",
    ]
    assert directories_above("https://h.com:8443/a/") == ["https://h.com:8443/"]


def _tree(host: str, days: int, assets: int) -> list[str]:
    return [f"https://{host}/2026/12/{d:02d}/{a}.jpg" for d in range(days) for a in range(assets)]


def test_promotion_covers_most_per_unit_choosing_the_deepest_of_equals() -> None:
    files = _tree("a.com", 3, 25) + _tree("b.com", 1, 30) + ["https://c.com/x/1.js"] * 19
    chosen = plan_promotions(files, budget=10, room=0, min_paths=20, min_depth=1)
    # a.com's 75 Files lie under /2026/ and /2026/12/ alike: the deeper one is chosen.
    assert [(p.directory, p.paths) for p in chosen] == [
        ("https://a.com/2026/12/", 75),
        ("https://b.com/2026/12/00/", 30),
    ]


def test_promotion_respects_depth_paths_budget_room_domains_and_pending_directories() -> None:
    flat = [f"https://a.com/{i}.png" for i in range(100)]
    # Never the host's root, whatever it would cover.
    assert plan_promotions(flat, budget=5, room=0, min_paths=2, min_depth=1) == []
    tree = _tree("a.com", 4, 30)
    deep = plan_promotions(tree, budget=5, room=0, min_paths=2, min_depth=3)
    assert all(p.directory.count("/") - 3 == 3 for p in deep) and len(deep) == 4
    assert len(plan_promotions(tree, budget=2, room=0, min_paths=2, min_depth=3)) == 2
    # Enough room for what is left after one promotion: one is enough.
    assert len(plan_promotions(tree, budget=5, room=90, min_paths=2, min_depth=3)) == 1
    assert plan_promotions(tree, budget=5, room=120, min_paths=2, min_depth=1) == []
    assert plan_promotions(tree, budget=5, room=0, min_paths=31, min_depth=3) == []
    assert (
        plan_promotions(tree, budget=5, room=0, min_paths=2, min_depth=1, allowed_domains=["b.com"])
        == []
    )
    covered = plan_promotions(
        tree, budget=5, room=0, min_paths=2, min_depth=1, covering=["https://a.com/2026/"]
    )
    assert covered == []


def test_the_promoter_enqueues_bulk_directories_within_the_budget_and_never_the_reserve(
    redis_client: redis.Redis,
) -> None:
    overrides = {
        "promote": "auto",
        "url_daily_quota": 10,
        "directory_daily_quota": 4,
        "interactive_reserve": 0.5,
        "promote_min_paths": 5,
    }
    producer, store = store_and_producer(redis_client, **overrides)
    producer.enqueue(
        _tree("a.com", 3, 6) + _tree("b.com", 1, 8) + _tree("c.com", 1, 7), FILE, Priority.BULK
    )
    promoter = Promoter(store, store.settings, interval_s=0.001)
    chosen = promoter.maybe_promote()
    # Budget: 4 Directories, 2 of them the interactive reserve.
    assert [p.directory for p in chosen] == ["https://a.com/2026/12/", "https://b.com/2026/12/00/"]
    assert redis_client.zrange(store.keys.of(DIRECTORY).pending, 0, -1, withscores=True)
    assert store.quota.pending_count(DIRECTORY) == 2
    # Bulk, so the claim keeps the reserve; and no job waits on a promoted Directory.
    for directory in ("https://a.com/2026/12/", "https://b.com/2026/12/00/"):
        rank = redis_client.zscore(store.keys.of(DIRECTORY).pending, directory)
        assert rank is not None and rank >= 10**13
        assert redis_client.hget(store.keys.of(DIRECTORY).waiters, waiter_field(directory)) is None
    time.sleep(0.01)
    # Those two use up the budget: nothing more is promoted while they wait.
    assert promoter.maybe_promote() == []
    coverage = store.batches.cover(claim_batch(store, DIRECTORY))
    assert coverage.files == 26
    assert isinstance(store.batches.claim(DIRECTORY, time.time()), type(None))


def test_the_promoter_does_nothing_while_every_pending_file_fits(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, promote="auto", url_daily_quota=100)
    producer.enqueue(_tree("a.com", 2, 40), FILE, Priority.BULK)
    assert Promoter(store, store.settings, interval_s=0.001).maybe_promote() == []
    _, off = store_and_producer(redis_client, url_daily_quota=10)
    assert Promoter(off, off.settings, interval_s=0.001).maybe_promote() == []
    assert store.quota.pending_count(DIRECTORY) == 0


def test_files_do_not_wait_for_a_directory_far_back_in_the_queue(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, directory_daily_quota=3)
    producer.enqueue(["a.com/x/", "a.com/y/", "a.com/z/"], DIRECTORY)
    # Ranks are in milliseconds: a later enqueue must land in a later one to queue behind.
    time.sleep(0.005)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    producer.enqueue(["a.com/img/1.png", "a.com/x/1.png"])
    # /x/ goes in the next Directory claim; /img/ is fourth of three units left.
    assert claim_batch(store, FILE).paths == ("http://a.com/img/1.png",)


def test_promotion_never_chooses_a_refused_directory() -> None:
    tree = _tree("a.com", 2, 30)
    chosen = plan_promotions(
        tree,
        budget=5,
        room=0,
        min_paths=2,
        min_depth=1,
        refused=["https://a.com/2026/12/", "https://a.com/2026/"],
    )
    assert [p.directory for p in chosen] == [
        "https://a.com/2026/12/00/",
        "https://a.com/2026/12/01/",
    ]


def test_a_repeat_while_the_call_is_in_flight_cools_and_a_retry_does_not(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=60)
    producer.enqueue(["a.com/p", "a.com/q"])
    t0 = time.time()
    batch = claim_batch(store, FILE, t0)
    # Asked again while the first call is in flight, before its answer is recorded.
    producer.enqueue(["a.com/p"])
    claimed = store.batches.claim(FILE, t0 + 1)
    assert isinstance(claimed, Wait) and claimed.reason is WaitReason.COOLDOWN
    store.batches.submit(batch, ("http://a.com/p",), ("T1",), "R", t0 + 2)
    # q's call failed: it goes again at once, no cooldown for a refresh that did not happen.
    store.batches.release(batch.id, FILE, Release.RETRY, t0 + 2, code="InternalError")
    assert claim_batch(store, FILE, t0 + 3).paths == ("http://a.com/q",)
    # The cooldown runs from its submission (t0 + 2), the later of the two.
    assert isinstance(store.batches.claim(FILE, t0 + 61), Wait)
    assert claim_batch(store, FILE, t0 + 63).paths == ("http://a.com/p",)


def test_coverage_takes_only_what_was_enqueued_before_the_claim_and_never_a_path_twice(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=0)
    files = producer.enqueue([f"a.com/img/{i:05d}.png" for i in range(12_000)], FILE, Priority.BULK)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    batch = claim_batch(store, DIRECTORY)
    # Between two steps of the coverage, a covered path and a new one are asked for again:
    # both are newer than the claim, so neither is covered, and nothing is covered twice.
    # (The Files are read in the pending set's hash order: the one asked again is one the
    # first step took, whichever that is.)
    extend = store.batches.extend_lease
    late_jobs: list[str] = []
    again: list[str] = []
    every = {f"http://a.com/img/{i:05d}.png" for i in range(12_000)}

    def meanwhile(batch_id: str, now: float | None = None) -> None:
        if not late_jobs:
            time.sleep(0.01)
            left = set(redis_client.zrange(store.keys.of(FILE).pending, 0, -1))
            again.append(min(every - left))
            late_jobs.append(producer.enqueue([again[0], "a.com/img/new.png"]).job_id)
        extend(batch_id, now)

    monkeypatch.setattr(store.batches, "extend_lease", meanwhile)
    coverage = store.batches.cover(batch)
    assert coverage is not None and coverage.files == 12_000
    assert late_jobs
    assert set(redis_client.zrange(store.keys.of(FILE).pending, 0, -1)) == {
        again[0],
        "http://a.com/img/new.png",
    }
    store.batches.submit(coverage.batch, (), ("T",), "R")
    assert job_counts(producer, files.job_id) == {"submitted": 12_000}
    assert job_counts(producer, late_jobs[0]) == {"pending": 2}
    # While it waited for the Directory's answer, a File claim would have sent them; now
    # the Directory is settled, they go by themselves.
    assert set(claim_batch(store, FILE).paths) == {again[0], "http://a.com/img/new.png"}


def test_files_wait_while_a_claimed_directory_is_being_covered(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client)
    producer.enqueue(["a.com/img/1.png", "a.com/img/2.png"], FILE, Priority.BULK)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    batch = claim_batch(store, DIRECTORY)
    # Claimed, not yet covered: another worker's File claim must not spend units on them.
    assert store.batches.claim(FILE, time.time()) is None
    coverage = store.batches.cover(batch)
    assert coverage is not None and coverage.files == 2


def test_coverage_of_a_batch_reclaimed_meanwhile_answers_none(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, batch_lease_s=5)
    producer.enqueue(["a.com/img/1.png"])
    producer.enqueue(["a.com/img/"], DIRECTORY)
    now = time.time()
    batch = claim_batch(store, DIRECTORY, now)
    store.batches.release(batch.id, DIRECTORY, Release.RETRY, now + 6, only_if_lease_expired=True)
    assert store.batches.cover(batch) is None
    assert store.quota.pending_count(DIRECTORY) == 1
    # Its coverage mark went with it; the File waits for the pending Directory again.
    assert redis_client.zcard(store.keys.of(DIRECTORY).covering) == 0
    coverage = store.batches.cover(claim_batch(store, DIRECTORY, now + 7))
    assert coverage is not None and coverage.files == 1


def test_a_covered_path_that_cools_meanwhile_goes_back_to_one_place(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=120)
    store.quota.set_window(60)
    path = "http://a.com/img/p.png"
    producer.enqueue([path])
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    producer.enqueue([path])  # pending again: it will cool at the next File claim
    producer.enqueue(["a.com/img/"], DIRECTORY)
    # A repeat ranks one window later: a Directory claimed past that covers it.
    batch = claim_batch(store, DIRECTORY, t0 + 61)
    coverage = store.batches.cover(batch)
    assert coverage is not None and coverage.files == 1
    producer.enqueue([path])  # asked again while covered: pending, then cooling
    assert isinstance(store.batches.claim(FILE, t0 + 62), Wait)
    store.batches.release(batch.id, DIRECTORY, Release.RETRY, t0 + 63, code="InternalError")
    tk = store.keys.of(FILE)
    assert redis_client.zscore(tk.pending, path) is not None
    assert redis_client.zscore(tk.cooling, path) is None
    assert store.quota.cooling_count(FILE) == 0


def test_a_cooling_file_is_not_covered_and_keeps_its_waiters(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(redis_client, refresh_cooldown_s=60)
    path = "http://a.com/img/p.png"
    job = producer.enqueue([path])
    t0 = time.time()
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R", t0)
    again = producer.enqueue([path])
    assert isinstance(store.batches.claim(FILE, t0 + 1), Wait)  # now cooling, waiters kept
    tk = store.keys.of(FILE)
    producer.enqueue(["a.com/img/"], DIRECTORY)
    coverage = store.batches.cover(claim_batch(store, DIRECTORY, t0 + 2))
    assert coverage is not None and coverage.files == 0
    assert redis_client.zscore(tk.cooling, path) is not None
    assert redis_client.hget(tk.waiters, waiter_field(path)) == again.job_id
    assert job_counts(producer, job.job_id) == {"submitted": 1}


def test_the_promoter_stops_at_the_directory_budget_outside_the_reserve(
    redis_client: redis.Redis,
) -> None:
    producer, store = store_and_producer(
        redis_client,
        promote="auto",
        url_daily_quota=1,
        directory_daily_quota=10,
        interactive_reserve=0.3,
        promote_min_paths=5,
    )
    producer.enqueue(["a.com/waiting/"], DIRECTORY, Priority.BULK)
    hosts = [f"h{i}.com" for i in range(12)]
    producer.enqueue([p for h in hosts for p in _tree(h, 1, 6)], FILE, Priority.BULK)
    chosen = Promoter(store, store.settings, interval_s=0.001).maybe_promote()
    # 10 units, 3 of them the reserve, 1 for the Directory already waiting: 6 promotions,
    # though 12 trees would each be worth one.
    assert len(chosen) == 6
    assert store.quota.pending_count(DIRECTORY) == 7


def _default_store(redis_client: redis.Redis, **overrides: object) -> tuple[Producer, Store]:
    """A producer and store on the shipped defaults (but the credentials and ``overrides``)."""
    settings = Settings(_env_file=None, access_key_id="id", access_key_secret="s", **overrides)  # type: ignore[arg-type]
    return Producer(Store(redis_client, settings)), Store(redis_client, settings)


def test_at_the_defaults_a_repeat_never_takes_a_unit_a_first_refresh_waits_for(
    redis_client: redis.Redis,
) -> None:
    producer, store = _default_store(redis_client, url_daily_quota=10, urls_per_call=10)
    t0 = time.time()
    first = [f"a.com/{i}" for i in range(5)]
    producer.enqueue(first)
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    # Asked again (an older request than the new paths'), then five paths never refreshed.
    producer.enqueue(first)
    producer.enqueue([f"b.com/{i}" for i in range(5)])
    # Past the cooldown, five units are left: every one goes to a path never refreshed.
    batch = claim_batch(store, FILE, t0 + 61)
    assert sorted(batch.paths) == [f"http://b.com/{i}" for i in range(5)]
    # The repeats wait their turn, none dropped: they go when the window frees.
    assert store.quota.pending_count(FILE) == 5
    later = claim_batch(store, FILE, t0 + 86_401)
    assert sorted(later.paths) == [f"http://a.com/{i}" for i in range(5)]


def test_at_the_defaults_a_hot_path_costs_two_units_a_minute_and_its_last_request_goes(
    redis_client: redis.Redis,
) -> None:
    producer, store = _default_store(redis_client)
    t0 = time.time()
    sent: list[float] = []
    for second in range(0, 60, 2):  # saved 30 times in a minute
        producer.enqueue(["a.com/hot"])
        answer = store.batches.claim(FILE, t0 + second)
        if isinstance(answer, Batch):
            store.batches.submit(answer, (), (f"T{second}",), "R", t0 + second)
            sent.append(t0 + second)
    for later in (60, 61, 90):
        answer = store.batches.claim(FILE, t0 + later)
        if isinstance(answer, Batch):
            store.batches.submit(answer, (), (f"T{later}",), "R", t0 + later)
            sent.append(t0 + later)
    assert len(sent) == 2  # not 30
    assert sent[-1] > t0 + 58  # after the last request: nothing dropped
    assert store.quota.pending_count(FILE) == store.quota.cooling_count(FILE) == 0


def test_a_jobs_place_counts_its_repeats_where_they_wait(redis_client: redis.Redis) -> None:
    producer, store = _default_store(redis_client)
    t0 = time.time()
    producer.enqueue(["a.com/old"])
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    job = producer.enqueue(["a.com/old", "a.com/new"]).job_id
    producer.enqueue(["a.com/later"])  # never refreshed: goes before the job's repeat
    place = producer.status(job).place
    assert place is not None and place.ahead == 2


@pytest.mark.parametrize("cooling", [False, True], ids=["pending", "cooling"])
def test_a_repeat_asked_for_again_keeps_its_repeat_rank(
    redis_client: redis.Redis, cooling: bool
) -> None:
    producer, store = _default_store(redis_client, url_daily_quota=2)
    t0 = time.time()
    producer.enqueue(["a.com/saved"])
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    producer.enqueue(["a.com/saved"])  # a repeat: it waits after first refreshes
    if cooling:
        assert isinstance(store.batches.claim(FILE, t0 + 1), Wait)
    producer.enqueue(["a.com/saved"])  # saved a second time: still a repeat
    producer.enqueue(["b.com/new"])  # never refreshed
    # One unit left, past the cooldown: the path never refreshed takes it.
    batch = claim_batch(store, FILE, t0 + 61)
    assert batch.paths == ("http://b.com/new",)


def test_a_repeat_waits_at_most_one_window_behind_first_refreshes(
    redis_client: redis.Redis,
) -> None:
    store = Store(
        redis_client,
        Settings(
            _env_file=None,
            access_key_id="id",
            access_key_secret="s",
            url_daily_quota=3,
            urls_per_call=1,
            refresh_cooldown_s=0,
        ),
    )  # type: ignore[call-arg]
    store.quota.set_window(60)  # the stored window, whatever this process's settings say
    t0 = time.time()
    at = [t0]
    producer = Producer(store, clock=lambda: at[0])
    producer.enqueue(["a.com/saved"])
    store.batches.submit(claim_batch(store, FILE, t0), (), ("T1",), "R1", t0)
    producer.enqueue(["a.com/saved"])  # a repeat, asked for at t0
    at[0] = t0 + 30
    producer.enqueue(["c.com/within"])  # a first refresh within the window: it goes first
    at[0] = t0 + 61
    producer.enqueue(["b.com/after"])  # one asked for more than a window later goes after
    sent = [claim_batch(store, FILE, t0 + i).paths for i in (1, 2)]
    assert sent == [("http://c.com/within",), ("http://a.com/saved",)]
    assert store.quota.pending_count(FILE) == 1


@pytest.mark.parametrize(
    ("paths", "quota", "window_s", "days"),
    [
        (0, 0, 86_400, 0.0),  # nothing waits: drained, even at a quota of 0
        (200, 10, 86_400, 20.0),
        (200, 10, 43_200, 10.0),  # a half-day window sends a quota twice a day
        (1, 0, 86_400, None),  # a quota of 0 never sends: None, "never"
    ],
)
def test_days_to_drain_counts_windows_in_days_and_never_is_none(
    paths: int, quota: int, window_s: float, days: float | None
) -> None:
    assert days_to_drain(paths, quota, window_s) == days
