"""What every part of the store shares: one Redis client, the settings, the key layout and
the registered scripts."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from cdn_refresh.settings import Settings
from cdn_refresh.store.keys import Keys
from cdn_refresh.store.scripts import Scripts


@dataclass(frozen=True, slots=True)
class StoreContext:
    """The shared parts of a :class:`~cdn_refresh.store.Store`."""

    redis: redis.Redis
    settings: Settings
    keys: Keys
    scripts: Scripts

    def now(self) -> float:
        """Redis's clock: the one time every worker on every host agrees on."""
        seconds, micros = self.redis.time()
        return float(seconds + micros / 1e6)


def time_arg(now: float | None) -> str:
    """A script's time argument: empty tells it to read Redis's own clock."""
    return "" if now is None else repr(now)
