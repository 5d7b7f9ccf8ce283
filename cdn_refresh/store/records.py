"""The typed records the store keeps; the states live in :mod:`~cdn_refresh.store.states`
and a job's records in :mod:`~cdn_refresh.store.job_records` (both imported here too, so
that callers of this module keep working).

Each record's JSON shape is written by one script (``lua/submit.lua`` writes
:class:`SubmissionRecord`, ``lua/release.lua`` :class:`DeadLetter` and :class:`PathInfo`,
``lua/claim.lua`` :class:`Batch`; :class:`JobHeader` by :mod:`cdn_refresh.store.jobs`) and
decoded here, next to its dataclass. Callers get these values, never raw hashes or JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdn_refresh.constants import ObjectType
from cdn_refresh.store.job_records import JobCounts as JobCounts
from cdn_refresh.store.job_records import JobHeader as JobHeader
from cdn_refresh.store.job_records import JobStatus as JobStatus
from cdn_refresh.store.job_records import QueuePlace as QueuePlace
from cdn_refresh.store.states import JOB_COUNT_STATES as JOB_COUNT_STATES
from cdn_refresh.store.states import JobState as JobState
from cdn_refresh.store.states import PathState as PathState
from cdn_refresh.store.states import Release as Release


class WaitReason(StrEnum):
    """Why nothing of a type may be claimed now."""

    QUOTA = "quota"  # our rolling window is full
    RESERVE = "reserve"  # only the interactive reserve is left, and bulk work waits
    PROVIDER_QUOTA = "provider_quota"  # the provider said its quota is spent
    CREDENTIALS = "credentials"  # credential errors hold every claim
    BACKOFF = "backoff"  # backing off after a transient error
    COOLDOWN = "cooldown"  # what waits was submitted too recently (REFRESH_COOLDOWN_S)


def _dict(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    # cjson writes an empty Lua table as {}, not [].
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class Batch:
    """Paths claimed together for one call, with the quota reserved for them."""

    id: str
    object_type: ObjectType
    paths: tuple[str, ...]

    @classmethod
    def decode(cls, raw: str) -> Batch:
        """From the JSON ``claim.lua`` writes."""
        data = json.loads(raw)
        return cls(data["id"], ObjectType(data["object_type"]), tuple(_list(data["paths"])))

    @property
    def domains(self) -> list[str]:
        """The distinct domains of the batch, in first-seen order."""
        seen: dict[str, None] = {}
        for path in self.paths:
            seen.setdefault(path.split("/", 3)[2].split(":", 1)[0], None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing may be claimed now; ``seconds`` until that may change (0: unknown)."""

    reason: WaitReason
    seconds: float


@dataclass(frozen=True, slots=True)
class Settled:
    """What a submit or release did to a batch's paths."""

    settled: int
    dead_lettered: int
    top_attempts: int
    covered: int = 0  # paths settled with the Directories they lie under


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the Directories of a claimed batch cover (docs/behaviour.md "Getting more out of the
    quota"): pending paths under them, which ride along for no unit of their own."""

    batch: Batch  # the batch as it now stands (a Directory under another one taken out)
    files: int
    directories: int
    nested: int  # Directories of the batch under another of it: their unit given back

    @property
    def paths(self) -> int:
        """Every path covered."""
        return self.files + self.directories + self.nested


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """Our own count of one type's rolling window."""

    limit: int
    used: int
    window_s: float = 0.0
    frees_in_s: float = 0.0  # until the oldest reservation leaves the window

    @property
    def remaining(self) -> int:
        """What may still be reserved."""
        return max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class ProviderQuota:
    """The provider's own count of one type, as DescribeRefreshQuota last said."""

    remaining: int
    limit: int
    checked_at: float

    @classmethod
    def decode(cls, raw: dict[str, str]) -> ProviderQuota | None:
        """From the hash :meth:`QuotaStore.record_provider` writes."""
        if not raw:
            return None
        return cls(int(raw["remaining"]), int(raw["limit"]), float(raw["checked_at"]))

    def to_dict(self) -> dict[str, Any]:
        """The ``quota --json`` shape of ``"provider"``."""
        return {"remaining": self.remaining, "limit": self.limit, "checked_at": self.checked_at}


@dataclass(frozen=True, slots=True)
class Submission:
    """One call that carried a path: when, and under which task IDs."""

    submitted_at: float
    task_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The ``lookup --json`` shape of one entry of ``submissions``."""
        return {"submitted_at": self.submitted_at, "task_id": ",".join(self.task_ids)}


@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    """A path's latest submission, and the ones before it (newest first)."""

    task_ids: tuple[str, ...]
    request_id: str
    submitted_at: float
    batch: str
    attempts: int
    late: bool
    earlier: tuple[Submission, ...]
    covered_by: str | None = None  # the Directory whose task settled this path
    task_id: str | None = None  # its own task, once the provider said which (else all)

    @classmethod
    def decode(cls, raw: str | None) -> SubmissionRecord | None:
        """From the JSON ``submit.lua`` writes."""
        data = _dict(raw)
        if not data:
            return None
        return cls(
            task_ids=tuple(_list(data.get("task_ids"))),
            request_id=str(data.get("request_id") or ""),
            submitted_at=float(data.get("submitted_at") or 0),
            batch=str(data.get("batch") or ""),
            attempts=int(data.get("attempts") or 0),
            late=bool(data.get("late")),
            earlier=tuple(
                Submission(float(e.get("submitted_at") or 0), tuple(_list(e.get("task_ids"))))
                for e in _list(data.get("earlier"))
            ),
            covered_by=str(data["covered_by"]) if data.get("covered_by") else None,
            task_id=str(data["task_id"]) if data.get("task_id") else None,
        )

    @property
    def submissions(self) -> tuple[Submission, ...]:
        """Every submission kept, newest first."""
        return (Submission(self.submitted_at, self.task_ids), *self.earlier)


@dataclass(frozen=True, slots=True)
class PathInfo:
    """Attempts so far of a path that failed before, and its last error."""

    attempts: int
    last_error: str

    @classmethod
    def decode(cls, raw: str | None) -> PathInfo | None:
        """From the JSON ``release.lua`` writes."""
        data = _dict(raw)
        if not data:
            return None
        return cls(int(data.get("attempts") or 0), str(data.get("last_error") or ""))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A path the provider refused, or that ran out of attempts, with its last error."""

    path: str
    object_type: ObjectType
    code: str
    message: str
    attempts: int
    failed_at: float | None
    jobs: tuple[str, ...] = ()

    @classmethod
    def decode(cls, path: str, object_type: ObjectType, raw: str | None) -> DeadLetter | None:
        """From the JSON ``release.lua`` writes."""
        data = _dict(raw)
        if not data:
            return None
        return cls(
            path=path,
            object_type=object_type,
            code=str(data.get("code") or ""),
            message=str(data.get("message") or ""),
            attempts=int(data.get("attempts") or 0),
            failed_at=data.get("at"),
            jobs=tuple(j for j in str(data.get("jobs") or "").split(",") if j),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``dead-letter list --json`` shape."""
        return {
            "path": self.path,
            "object_type": self.object_type.value,
            "code": self.code,
            "message": self.message,
            "attempts": self.attempts,
            "failed_at": self.failed_at,
        }


@dataclass(frozen=True, slots=True)
class CredentialProblem:
    """The last credential error, kept until a call goes through."""

    code: str
    message: str
    failures: int

    def encode(self) -> str:
        """The JSON kept in the ``auth_hold`` and ``auth_error`` keys."""
        return json.dumps({"code": self.code, "message": self.message, "failures": self.failures})

    @classmethod
    def decode(cls, raw: str | None) -> CredentialProblem | None:
        """From :meth:`encode`'s JSON."""
        data = _dict(raw)
        if not data:
            return None
        return cls(
            str(data.get("code") or "CredentialError"),
            str(data.get("message") or ""),
            int(data.get("failures") or 0),
        )

    def describe(self) -> str:
        """``code: message``, as ``status`` and ``lookup`` show it."""
        return f"{self.code}: {self.message}".rstrip(": ")


@dataclass(frozen=True, slots=True)
class PathLookup:
    """Where one path stands (``lookup --json``)."""

    path: str
    object_type: ObjectType
    state: PathState
    task_id: str | None
    request_id: str | None
    submitted_at: float | None
    attempts: int
    last_error: str | None
    submissions: tuple[Submission, ...] = field(default=())
    covered_by: str | None = None  # its latest submission was a Directory's that covers it
    cooling_until: float | None = None  # held by the cooldown until then (state pending)
    completed_at: float | None = None  # when its task ended Complete (state complete)
    place: QueuePlace | None = None  # state pending: its place in the queue
    hint: str | None = None  # state unknown: a near spelling that is known

    def to_dict(self) -> dict[str, Any]:
        """The ``lookup --json`` shape."""
        return {
            "path": self.path,
            "object_type": self.object_type.value,
            "state": self.state.value,
            "task_id": self.task_id,
            "request_id": self.request_id,
            "submitted_at": self.submitted_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "submissions": [s.to_dict() for s in self.submissions],
            "covered_by": self.covered_by,
            "cooling_until": self.cooling_until,
            "completed_at": self.completed_at,
            "place": self.place.to_dict() if self.place else None,
            "hint": self.hint,
        }
