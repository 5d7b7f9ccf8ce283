"""The one owner of cdn-refresh's state in Redis.

Producer, worker and CLI call this package; none of them builds a key, decodes a record or
runs a script itself. The map:

- :mod:`~cdn_refresh.store.keys`: the key layout, one prefix, one hash tag.
- :mod:`~cdn_refresh.store.connection`: the Redis client and Celery's broker URL.
- :mod:`~cdn_refresh.store.scripts`: the Lua scripts (``lua/``) and their ``KEYS`` order.
- :mod:`~cdn_refresh.store.states`: every path and job state, the moves between them.
- :mod:`~cdn_refresh.store.records`: the typed records, with their encoding.
- :mod:`~cdn_refresh.store.jobs`: job headers, enqueue, status.
- :mod:`~cdn_refresh.store.batches`: claim, submit, release, reclaim.
- :mod:`~cdn_refresh.store.quota`: our window count, holds, backoffs.
- :mod:`~cdn_refresh.store.lookups`: a path's story, dead letters, replay.
- :mod:`~cdn_refresh.store.promotion`: what promotion and ``plan`` read; promoted Directories.
- :mod:`~cdn_refresh.store.tracking`: calls tracked until their tasks end.
- :mod:`~cdn_refresh.store.retention`: forgetting old records and finished jobs.
- :mod:`~cdn_refresh.store.metrics`: the figures ``/metrics`` shows, and the counters.
- :mod:`~cdn_refresh.store.idempotency`: the HTTP API's Idempotency-Keys.
- :mod:`~cdn_refresh.store.webhooks`: job-end callbacks and their outbox.
- :mod:`~cdn_refresh.store.liveness`: worker heartbeats; batches whose owner died.
- :mod:`~cdn_refresh.store.eviction`: whether this Redis may evict keys (then nothing goes in).
- :mod:`~cdn_refresh.store.respelling`: pending paths stored under an older spelling, moved.
- :mod:`~cdn_refresh.store.digesting`: waiters keyed by path (schema 2) moved to their digest.
"""

from __future__ import annotations

import redis

from cdn_refresh.settings import Settings
from cdn_refresh.store.batches import BatchStore
from cdn_refresh.store.connection import (
    CeleryNames,
    broker_transport_options,
    broker_url,
    celery_names,
    redis_from_settings,
)
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.digesting import Digesting
from cdn_refresh.store.eviction import EvictionGuard, RedisEvictsError
from cdn_refresh.store.idempotency import IdempotencyStore
from cdn_refresh.store.jobs import JobNotFoundError, JobStore
from cdn_refresh.store.keys import Keys
from cdn_refresh.store.liveness import LivenessStore
from cdn_refresh.store.lookups import PathStore
from cdn_refresh.store.metrics import MetricsStore
from cdn_refresh.store.promotion import PromotionStore
from cdn_refresh.store.quota import QuotaLimitMismatchError, QuotaStore, QuotaWindowMismatchError
from cdn_refresh.store.respelling import Respelling
from cdn_refresh.store.retention import Retention
from cdn_refresh.store.scripts import Scripts
from cdn_refresh.store.tracking import TrackingStore
from cdn_refresh.store.webhooks import WebhookStore

__all__ = [
    "CeleryNames",
    "JobNotFoundError",
    "QuotaLimitMismatchError",
    "QuotaWindowMismatchError",
    "RedisEvictsError",
    "Store",
    "broker_transport_options",
    "broker_url",
    "celery_names",
    "redis_from_settings",
]


class Store:
    """Every operation on cdn-refresh's Redis state, in parts named for what they own."""

    def __init__(
        self, client: redis.Redis, settings: Settings, *, account: str | None = None
    ) -> None:
        """The store of one account (``None``: the default account, whose keys keep the names
        of the releases before accounts: :mod:`~cdn_refresh.store.keys`)."""
        keys = Keys(settings.redis.key_prefix, account)
        self._ctx = StoreContext(client, settings, keys, Scripts(client, keys))
        self.jobs = JobStore(self._ctx)
        self.batches = BatchStore(self._ctx)
        self.quota = QuotaStore(self._ctx)
        self.tracking = TrackingStore(self._ctx)
        self.paths = PathStore(self._ctx, self.batches, self.tracking)
        self.retention = Retention(self._ctx)
        self.promotion = PromotionStore(self._ctx)
        self.metrics = MetricsStore(self._ctx)
        self.idempotency = IdempotencyStore(self._ctx)
        self.webhooks = WebhookStore(self._ctx)
        self.liveness = LivenessStore(self._ctx)
        self.eviction = EvictionGuard(self._ctx)
        self.respelling = Respelling(self._ctx)
        self.digesting = Digesting(self._ctx)

    @classmethod
    def from_settings(cls, settings: Settings, *, account: str | None = None) -> Store:
        """A store of ``account`` on ``CDN_REFRESH_REDIS_URL``."""
        return cls(redis_from_settings(settings.redis), settings, account=account)

    @property
    def settings(self) -> Settings:
        """The settings this store was made with."""
        return self._ctx.settings

    @property
    def keys(self) -> Keys:
        """The key layout (for tests and benchmarks that inspect Redis)."""
        return self._ctx.keys

    @property
    def redis(self) -> redis.Redis:
        """The client (its pool serves the producer's threads in flight)."""
        return self._ctx.redis

    def script_shas(self) -> dict[str, str]:
        """Each Lua script file's SHA1 (for profiling: the slow log names scripts by it)."""
        return self._ctx.scripts.shas()

    def ping(self) -> None:
        """Raise the client's error unless Redis answers (health checks)."""
        self._ctx.redis.ping()

    def now(self) -> float:
        """Redis's clock."""
        return self._ctx.now()

    def close(self) -> None:
        """Release the connections."""
        self._ctx.redis.close()

    def persistence_warning(self) -> str | None:
        """A warning when this Redis would lose everything on a restart (no AOF, no RDB).

        A restart without persistence forgets every pending path and our quota count (the
        next call then meets the provider's ``QuotaExceeded``). Managed Redis services may
        refuse ``CONFIG``: then only ``INFO`` is asked, which tells AOF but not RDB.
        """
        info = self._ctx.redis.info("persistence")
        if int(info.get("aof_enabled", 0)):
            return None
        try:
            save = self._ctx.redis.config_get("save").get("save") or ""
        except redis.ResponseError:
            return None  # CONFIG refused: RDB may be on; do not cry wolf
        if save.strip():
            return None
        return (
            "this Redis has neither append-only (AOF) nor RDB snapshots enabled: a restart "
            "loses every pending path and the quota count; set appendonly yes"
        )
