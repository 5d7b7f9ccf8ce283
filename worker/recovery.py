"""Recovery in seconds: the batches this process holds, handing them back when it
stops, and reclaiming those of processes whose heartbeat is gone.

What each case does to the paths and the quota is a row of :mod:`worker.policy`:
``ON_HANDED_BACK`` for a batch whose call never went out (the reservation comes back),
``ON_OWNER_LOST`` (= ``ON_LEASE_EXPIRED``) when the call may have gone out (it stays). All
go through ``BatchStore.release``, which also sends back what a Directory covered.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

from cdn_refresh.constants import ObjectType
from cdn_refresh.store import Store
from worker.policy import ON_HANDED_BACK, ON_LEASE_EXPIRED, ON_OWNER_LOST, Policy

log = logging.getLogger("cdn_refresh.worker")


@dataclass(slots=True)
class Held:
    """A batch this process claimed and has not settled yet."""

    batch_id: str
    object_type: ObjectType
    call_started: bool = False


class InHand:
    """The batches this process holds. Read from the SIGTERM handler as well as the flush
    loop: a lock keeps the two views whole."""

    # Batches let go of that are remembered, to find the settles a failover lost.
    LET_GO_KEPT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        self._let_go: deque[str] = deque(maxlen=self.LET_GO_KEPT)

    def claimed(self, batch_id: str, object_type: ObjectType) -> None:
        """A claim returned this batch."""
        with self._lock:
            self._held[batch_id] = Held(batch_id, object_type)

    def call_starting(self, batch_id: str) -> bool:
        """Its call is about to go out: from now on it may have reached the provider. False
        when the batch was handed back meanwhile (a stop): then the call must not go out,
        its reservation was given back."""
        with self._lock:
            if batch_id not in self._held:
                return False
            self._held[batch_id].call_started = True
            return True

    def holds(self, batch_id: str) -> bool:
        """Whether this process holds the batch now."""
        with self._lock:
            return batch_id in self._held

    def settled(self, batch_id: str) -> None:
        """Its paths were submitted or released (or the settle failed: it is let go of)."""
        with self._lock:
            self._held.pop(batch_id, None)
            self._let_go.append(batch_id)

    def let_go(self) -> list[str]:
        """The batches this process let go of lately, oldest first."""
        with self._lock:
            return list(self._let_go)

    def forget(self, batch_ids: set[str]) -> None:
        """Stop remembering these (Redis no longer holds them in this process's name)."""
        with self._lock:
            kept = [b for b in self._let_go if b not in batch_ids]
            self._let_go.clear()
            self._let_go.extend(kept)

    def take(self) -> list[Held]:
        """Every batch held, handed over once (the store no longer counts them ours)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
        return held


def _release(store: Store, held: Held, policy: Policy, code: str, message: str) -> int:
    done = store.batches.release(
        held.batch_id,
        held.object_type,
        policy.release(),
        code=code,
        message=message,
        return_quota=policy.returns_quota,
    )
    return done.settled


def hand_back(store: Store, in_hand: InHand) -> int:
    """A stopping process gives back every batch it holds, at once; returns the paths."""
    back = 0
    for held in in_hand.take():
        if held.call_started:
            paths = _release(
                store, held, ON_OWNER_LOST, "WorkerStopped", "stopped while its call was out"
            )
        else:
            paths = _release(store, held, ON_HANDED_BACK, "", "")
        log.warning(
            "handed back batch id=%s type=%s paths=%d call_started=%s quota_back=%s",
            held.batch_id,
            held.object_type,
            paths,
            held.call_started,
            not held.call_started,
        )
        back += paths
    return back


def reclaim_orphaned(store: Store) -> int:
    """Return the paths of batches whose owner's heartbeat is gone to pending (the
    reservation stays: the call may have gone out). Returns how many came back."""
    back = 0
    for batch_id, kind in store.liveness.orphaned():
        held = Held(batch_id, kind, call_started=True)
        paths = _release(
            store, held, ON_OWNER_LOST, "WorkerLost", "its worker process's heartbeat ran out"
        )
        if paths:
            log.warning(
                "reclaimed batch id=%s type=%s paths=%d (owner's heartbeat gone)",
                batch_id,
                kind,
                paths,
            )
        back += paths
    return back


def reclaim_let_go(store: Store, owner: str, in_hand: InHand) -> int:
    """Return to pending the batches Redis still holds in this process's name although it
    let go of them (their settle was lost, as in a failover); the reservation stays."""
    # An id held again is a batch claimed anew under it (a failover rolled the counter back):
    # it is being sent, not lost.
    let_go = [b for b in in_hand.let_go() if not in_hand.holds(b)]
    stale = store.liveness.still_owned(owner, let_go)
    back = 0
    for batch_id, kind in stale:
        held = Held(batch_id, kind, call_started=True)
        paths = _release(
            store, held, ON_OWNER_LOST, "SettleLost", "its settle did not survive in Redis"
        )
        log.warning("reclaimed batch id=%s type=%s paths=%d (settle lost)", batch_id, kind, paths)
        back += paths
    in_hand.forget(set(let_go))
    return back


def reclaim_expired(store: Store) -> int:
    """Return the paths of batches whose lease ran out (their worker died) to pending; the
    reservation stays, since the call may have gone out. Returns how many paths came back."""
    back = 0
    for batch_id, kind in store.batches.expired():
        done = store.batches.release(
            batch_id,
            kind,
            ON_LEASE_EXPIRED.release(),
            code="WorkerLost",
            message="the batch's lease ran out before its answer was recorded",
            return_quota=ON_LEASE_EXPIRED.returns_quota,
            only_if_lease_expired=True,
        )
        if done.settled:
            log.warning(
                "reclaimed batch id=%s type=%s paths=%d (lease ran out)",
                batch_id,
                kind,
                done.settled,
            )
        back += done.settled
    return back
