"""A mark kept fresh from a thread of its own while some long work runs.

Whatever the work waits on (replicas, a Redis blip, a slow round trip), the mark goes stale
only when this process is gone, never while it still works: the API keeps an
Idempotency-Key running with it, the producer keeps a streaming job open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

log = logging.getLogger("cdn_refresh.beat")


class Beat:
    """Call ``renew()`` every ``interval_s`` from a daemon thread while the ``with`` block
    runs; stopped (and joined) when it ends. ``renew`` returns False when there is nothing
    left to keep (the mark was taken over or ended): the thread stops. A Redis error is
    logged and the next beat tries again: the work itself says when Redis is gone."""

    def __init__(self, renew: Callable[[], bool], interval_s: float, name: str) -> None:
        self._renew = renew
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Beat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                if not self._renew():
                    return
            except redis.RedisError as exc:
                log.debug("%s failed (%s)", self._thread.name, exc)
            except Exception:
                # Whatever it was, keep beating: a beat that stops declares a live writer dead.
                log.exception("%s: unexpected error; beating on", self._thread.name)
