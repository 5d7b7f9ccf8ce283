"""This process's heartbeat, kept from a daemon thread (issue 13).

A worker process that dies mid-call stops beating; within ``HEARTBEAT_TTL_S`` its heartbeat
is gone, and the next sweep (this thread's in every live process, or the tick) sends its
batch back to pending for another process to send, long before ``BATCH_LEASE_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from cdn_refresh.constants import HEARTBEAT_INTERVAL_S, HEARTBEAT_TTL_S, SWEEP_INTERVAL_S
from cdn_refresh.store import Store
from worker.recovery import InHand, reclaim_let_go, reclaim_orphaned

log = logging.getLogger("cdn_refresh.worker")


class Heartbeat:
    """Refreshes ``owner``'s heartbeat every ``interval_s``; every ``sweep_interval_s``
    it also sends orphaned batches back to pending.

    A process sweeps only after it has beaten without a break for a whole TTL: after Redis
    comes back (a restart, a failover) every heartbeat looks stale at first, and the others
    get that long to beat again before anyone takes their batches.
    """

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        in_hand: InHand | None = None,
        ttl_s: float = HEARTBEAT_TTL_S,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        on_reclaimed: Callable[[], object] | None = None,
        parent: str | None = None,
        on_stop_requested: Callable[[], object] | None = None,
    ) -> None:
        self._store = store
        self.owner = owner
        self._in_hand = in_hand
        self._ttl_s = ttl_s
        self._interval_s = interval_s
        self._sweep_interval_s = sweep_interval_s
        self._last_sweep = 0.0
        self._on_reclaimed = on_reclaimed
        # The worker's main process: when it is told to stop (SIGTERM reaches it alone under
        # Docker), this process stops claiming at the next beat.
        self._parent = parent
        self._on_stop_requested = on_stop_requested
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beating_since: float | None = None
        self._complained = False
        self._last_beat = time.monotonic()

    def start(self) -> None:
        """Beat once now (so that no claim is made before the first beat), then keep on."""
        self._beat()
        self._thread = threading.Thread(target=self._run, name="cdn-refresh-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and take the heartbeat away: this process's batches are not
        waited for any longer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._interval_s + 1)
        try:
            self._store.liveness.leave(self.owner)
        except redis.RedisError as exc:
            log.warning("heartbeat: could not leave (%s); it runs out by itself", exc)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                now = time.monotonic()
                self._check_stop_request()
                if self._beat() and now - self._last_sweep >= self._sweep_interval_s:
                    self._last_sweep = now
                    self._sweep()
            except Exception:
                # Whatever it was, the heartbeat must go on: a process that claims without
                # one has every batch reclaimed and sent twice.
                self._beating_since = None
                log.exception("heartbeat: unexpected error; beating on")

    def _beat(self) -> bool:
        started = time.monotonic()
        try:
            self._store.liveness.beat(self.owner, self._ttl_s)
        except redis.RedisError as exc:
            self._beating_since = None
            if not self._complained:
                log.warning("heartbeat: Redis unreachable (%s); retrying", exc)
                self._complained = True
            return False
        now = time.monotonic()
        # A beat that took long, or a long gap since the last one (Redis stalled, this
        # process paused), is a break: every heartbeat may have run out meanwhile, so this
        # process judges no other dead until it has beaten steadily for a whole TTL again.
        if now - started > self._ttl_s / 2 or now - self._last_beat > self._ttl_s / 2:
            self._beating_since = None
        self._last_beat = now
        if self._beating_since is None:
            self._beating_since = now
        self._complained = False
        return True

    def _check_stop_request(self) -> None:
        if self._parent is None or self._on_stop_requested is None:
            return
        try:
            asked = self._store.liveness.stop_requested(self._parent)
        except redis.RedisError:
            return
        if asked:
            log.info("worker stopping: this pool process claims no more")
            self._on_stop_requested()
            self._on_stop_requested = None  # once

    def steady(self) -> bool:
        """Whether this process has beaten without a break for a whole TTL: only then may
        it judge the others dead."""
        since = self._beating_since
        return since is not None and time.monotonic() - since >= self._ttl_s

    def _sweep(self) -> None:
        try:
            back = reclaim_orphaned(self._store) if self.steady() else 0
            if self._in_hand is not None:
                back += reclaim_let_go(self._store, self.owner, self._in_hand)
        except redis.RedisError as exc:
            log.debug("heartbeat: sweep failed (%s)", exc)
            return
        if back and self._on_reclaimed is not None:
            try:
                self._on_reclaimed()
            except Exception as exc:  # the tick finds the paths anyway
                log.warning("heartbeat: could not ask for a flush (%s)", exc)
