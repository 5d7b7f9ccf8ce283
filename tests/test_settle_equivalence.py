"""submit.lua and track.lua in named sections answer and write exactly what the single
scripts before them did: both run from the same state on seeded random sequences of
enqueues, claims, covers, submits (whole batches, some of their paths, twice, late),
releases and tracked calls that end Complete, Failed, wait or are given up, and every
answer and every key is compared.

The state lives in one Redis database and is driven through the Store API; each submit and
each track run is first copied (``COPY ... DB``) into a second database where the reference
script (``tests/data/submit_before_sections_reference.lua``, ``track_before_...``: the
scripts as they were before the sections, positional ARGV and all) runs, then the current
one runs on the first, and the two databases must hold the same keys with the same values.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.store import Store, scripts
from cdn_refresh.store.records import Batch, Release
from cdn_refresh.store.tracking import TrackedCall
from producer.producer import Producer
from tests.conftest import make_settings
from tests.test_claim_equivalence import _dump

pytestmark = pytest.mark.redis

FILE, DIRECTORY = ObjectType.FILE, ObjectType.DIRECTORY
DATA = Path(__file__).parent / "data"
REFERENCES = {
    scripts.SUBMIT.file: DATA / "submit_before_sections_reference.lua",
    scripts.TRACK.file: DATA / "track_before_sections_reference.lua",
}
HOSTS = ("a.com", "b.com", "c.com:8080")
DIRS = ("", "news/", "news/deep/", "img/")
SEEDS = range(30)
STEPS = 120


class Twin:
    """One state in database 0 (current scripts), copied to database 1 before each submit
    or track (reference scripts)."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.rng = rng
        self.now = time.time()
        self.compared: dict[str, int] = dict.fromkeys(REFERENCES, 0)
        self.seen: Counter[str] = Counter()
        # The URL names database 0, and a URL's database wins over a ``db`` argument.
        self.a = redis.Redis.from_url(url, decode_responses=True)
        self.b = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/1", decode_responses=True)
        assert self.b.connection_pool.connection_kwargs["db"] == 1
        self.store = Store(self.a, make_settings(**_settings(rng)))
        self.producer = Producer(self.store)
        head = scripts.shared() + "\n"
        self.reference = {
            name: self.b.register_script(head + path.read_text())
            for name, path in REFERENCES.items()
        }
        # Every submit and track the store runs goes through the twin.
        current = self.store._ctx.scripts
        self._run = current.run
        current.run = self._twinned  # type: ignore[method-assign]
        self.held: list[Batch] = []
        self.gone: list[Batch] = []

    def close(self) -> None:
        self.a.close()
        self.b.close()

    def _twinned(
        self,
        spec: scripts.ScriptSpec,
        args: Mapping[str, Any] | Sequence[Any],
        object_type: ObjectType | None = None,
        **kwargs: Any,
    ) -> Any:
        """Submit and track run twice, reference first: answers and every key must agree."""
        if spec.file not in REFERENCES:
            return self._run(spec, args, object_type, **kwargs)
        assert isinstance(args, Mapping) and not kwargs
        # Redis's clock runs on between the two runs: a late record (``now`` empty) gets
        # a time of its own (clock() is the prelude's, shared by both).
        args = {**args, "now": args["now"] or repr(self.now)}
        self.b.flushdb()
        for key in self.a.scan_iter(count=1000):
            self.a.copy(key, key, destination_db=1)
        keys = self.store.keys.bind(spec.keys, object_type)
        old = self.reference[spec.file](keys=keys, args=scripts.bind_args(spec, args))
        new = self._run(spec, args, object_type)
        assert new == old, (spec.file, new, old)
        assert _dump(self.a) == _dump(self.b), spec.file
        self.compared[spec.file] += 1
        self._count(spec, args, new)
        return new

    def _count(self, spec: scripts.ScriptSpec, args: Mapping[str, Any], answer: Any) -> None:
        """What the sequence reached: each kind of answer of each script."""
        if spec is scripts.SUBMIT:
            mode = args["mode"]
            self.seen[f"{mode} call"] += 1
            reached = {"settled": answer[0], "attempts>1": answer[1] > 1, "covered": answer[2]}
            self.seen.update(f"{mode} {kind}" for kind, n in reached.items() if n)
        else:
            outcome = json.loads(args["answer"])["outcome"]
            self.seen[outcome] += 1
            kinds = ("complete", "back", "dead")
            self.seen.update(f"track {k}" for k, n in zip(kinds, answer, strict=True) if n)

    def enqueue(self) -> None:
        rng = self.rng
        kind = rng.choice((FILE, FILE, DIRECTORY))
        paths = []
        for _ in range(rng.randint(1, 8)):
            base = f"{rng.choice(HOSTS)}/{rng.choice(DIRS)}"
            paths.append(base if kind is DIRECTORY else f"{base}{rng.randint(0, 4)}.png")
        self.producer.enqueue(paths, kind, rng.choice((Priority.INTERACTIVE, Priority.BULK)))

    def claim(self) -> None:
        batch = self.store.batches.claim(self.rng.choice((FILE, FILE, DIRECTORY)), self.now)
        if isinstance(batch, Batch):
            if batch.object_type is DIRECTORY and self.rng.random() < 0.8:
                coverage = self.store.batches.cover(batch)
                if coverage is None:
                    return
                batch = coverage.batch
            self.held.append(batch)

    def _paths(self, batch: Batch) -> tuple[str, ...]:
        """All of the batch (none named), some of it, or some and a path it never had."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            return ()
        some = tuple(rng.sample(batch.paths, rng.randint(1, len(batch.paths))))
        return (*some, f"http://{HOSTS[0]}/elsewhere.png") if roll > 0.9 else some

    def _tasks(self, batch: Batch) -> tuple[tuple[str, ...], str]:
        n = self.rng.choice((0, 1, 1, 1, 2))
        stamp = f"{int(self.now * 1000)}-{self.rng.randrange(10**6)}"
        request = self.rng.choice(("", f"R{stamp}"))
        return tuple(f"T{stamp}.{i}" for i in range(n)), request

    def submit(self) -> None:
        rng = self.rng
        batch = self.held.pop(rng.randrange(len(self.held)))
        task_ids, request = self._tasks(batch)
        self.store.batches.submit(batch, self._paths(batch), task_ids, request, self.now)
        # Not all of it, maybe: the rest is submitted (or the batch is gone) another time.
        (self.held if rng.random() < 0.3 else self.gone).append(batch)

    def late(self) -> None:
        """An answer after the batch was reclaimed (or settled): its task IDs are kept."""
        batch = self.rng.choice(self.gone)
        task_ids, request = self._tasks(batch)
        self.store.batches.record_late(batch, self._paths(batch), task_ids, request)

    def release(self) -> None:
        batch = self.held.pop(self.rng.randrange(len(self.held)))
        self.store.batches.release(
            batch.id, batch.object_type, self.rng.choice(tuple(Release)), self.now, code="X"
        )
        self.gone.append(batch)

    def track(self) -> None:
        rng = self.rng
        for call in self.store.tracking.due(rng.randint(1, 4), self.now):
            roll = rng.random()
            if roll < 0.2:
                self.store.tracking.wait(call, rng.choice((5.0, 60.0)), self.now)
            elif roll < 0.3:
                self.store.tracking.give_up(call, rng.choice(("Timeout", "Unknown")), self.now)
            else:
                self._settle(call)

    def _settle(self, call: TrackedCall) -> None:
        rng = self.rng
        statuses = {
            t: rng.choice(("Complete", "Complete", "Failed", "Canceled")) for t in call.task_ids
        }
        raw = self.a.hget(self.store.keys.shared.tracks, call.call_id)
        paths = list(json.loads(raw)["paths"]) if raw else []
        # Each path named by its task, unnamed (the provider spelled it otherwise), or
        # named under a task of the call at random.
        task_of = {}
        for path in paths:
            if call.task_ids and rng.random() < 0.6:
                task_of[path] = rng.choice(call.task_ids)
        self.store.tracking.settle(call, statuses, task_of, self.now)

    def step(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            self.enqueue()
        elif roll < 0.45:
            self.claim()
        elif roll < 0.65 and self.held:
            self.submit()
        elif roll < 0.70 and self.gone:
            self.late()
        elif roll < 0.75 and self.held:
            self.release()
        elif roll < 0.90:
            self.track()
        else:
            self.now += rng.choice((1, 10, 40, 200))


def _settings(rng: random.Random) -> dict[str, object]:
    return {
        "url_daily_quota": 10_000,
        "directory_daily_quota": 10_000,
        "urls_per_call": rng.randint(1, 6),
        "directories_per_call": rng.randint(1, 3),
        "max_domains_per_call": rng.randint(1, 3),
        "max_attempts": rng.randint(1, 3),
        "task_first_check_s": rng.choice((0.0, 5.0)),
        "refresh_cooldown_s": 0.0,
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_submit_and_track_in_sections_answer_and_write_what_the_scripts_before_them_did(
    redis_url: str, seed: int
) -> None:
    twin = Twin(redis_url, random.Random(seed))
    try:
        for _ in range(STEPS):
            twin.step()
        # The sequence reached both scripts...
        assert min(twin.compared.values()) > 0, twin.compared
        # ...and their main paths: batches settled, calls that ended.
        assert twin.seen["batch settled"] > 0 and twin.seen["settle"] > 0, twin.seen
    finally:
        twin.close()
