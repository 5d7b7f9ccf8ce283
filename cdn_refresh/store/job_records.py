"""A job's records: what its enqueue asked for (:class:`JobHeader`, written by
:mod:`cdn_refresh.store.jobs` only), its counts by state, its place in the queue and its status
(``status --json``). :mod:`cdn_refresh.store.records` re-exports them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from cdn_refresh.constants import ObjectType, Priority
from cdn_refresh.store.states import WAITING_STATES, JobState, PathState


@dataclass(slots=True)
class JobHeader:
    """What an enqueue asked for; written by :mod:`cdn_refresh.store.jobs` only."""

    job_id: str
    object_type: ObjectType
    priority: Priority
    created_at: float
    paths: int  # valid paths handed to the enqueue
    rejected: int
    complete: bool = False  # every chunk is in (or the enqueue gave up: see ``incomplete``)
    incomplete: bool = False  # the enqueue failed part way: only ``accepted`` went in
    accepted: int = 0
    duplicates: int = 0
    error: str = ""

    def encode(self) -> str:
        """The JSON kept in the ``jobs`` hash."""
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, raw: str) -> JobHeader:
        """From :meth:`encode`'s JSON; headers written before a field existed get its
        default."""
        data = json.loads(raw)
        return cls(
            job_id=str(data["job_id"]),
            object_type=ObjectType(data["object_type"]),
            priority=Priority(data["priority"]),
            created_at=float(data["created_at"]),
            paths=int(data.get("paths") or 0),
            rejected=int(data.get("rejected") or 0),
            complete=bool(data.get("complete", True)),
            incomplete=bool(data.get("incomplete", False)),
            accepted=int(data.get("accepted") or 0),
            duplicates=int(data.get("duplicates") or 0),
            error=str(data.get("error") or ""),
        )


@dataclass(frozen=True, slots=True)
class JobCounts:
    """How many of a job's paths are in each state."""

    pending: int = 0
    in_flight: int = 0
    submitted: int = 0
    failed: int = 0
    complete: int = 0

    @property
    def waiting(self) -> int:
        """Paths not settled yet."""
        return sum(getattr(self, s.value) for s in WAITING_STATES)

    def by_state(self) -> dict[PathState, int]:
        """The counts keyed by state (one field per counted state, named for it)."""
        return {PathState(f.name): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class QueuePlace:
    """Where a pending path stands: how many pending paths go before it, whether what our
    rolling window has left takes it now, else when the window lets it go (an estimate;
    ``None``: a quota of 0, never)."""

    ahead: int
    fits_now: bool
    estimated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``"place"`` shape of ``lookup --json`` and ``status --json``."""
        return {"ahead": self.ahead, "fits_now": self.fits_now, "estimated_at": self.estimated_at}


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state, counts and task IDs (``status --json``)."""

    job_id: str
    state: JobState
    counts: JobCounts
    task_ids: tuple[str, ...]
    object_type: ObjectType
    priority: Priority
    created_at: float
    last_error: str | None = None
    incomplete: bool = False
    error: str = ""
    place: QueuePlace | None = None  # while paths wait: the place of its last pending path

    def to_dict(self) -> dict[str, Any]:
        """The ``status --json`` shape."""
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "state": self.state.value,
            "counts": asdict(self.counts),
            "task_ids": list(self.task_ids),
            "object_type": self.object_type.value,
            "priority": self.priority.value,
            "created_at": self.created_at,
            "last_error": self.last_error,
            "place": self.place.to_dict() if self.place else None,
        }
        if self.incomplete:
            data["incomplete"] = True
            data["error"] = self.error
        return data
