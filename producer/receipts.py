"""What an enqueue answers: its receipt, the paths it refused, and the ways it can fail.

```
Receipt                       what went in (``to_dict()``: the ``enqueue --json`` document)
EnqueueRejectedError          invalid paths: nothing enqueued
RedisRefusesWritesError       Redis refused the first write: nothing enqueued
EnqueueInterruptedError       Redis failed part way: the receipt says what went in
```
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Rejection:
    """One input path refused, with its 1-based line (position) and the reason."""

    line: int
    path: str
    reason: str


@dataclass
class Receipt:
    """What an enqueue did. ``job_id`` is empty when nothing was enqueued."""

    job_id: str
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    rejected_count: int = 0
    # The enqueue failed part way: only ``accepted`` paths went in (see ``error``).
    incomplete: bool = False
    error: str = ""
    # Days of quota the pending work of this type needs (None: never, the quota is 0), and a
    # warning when that is long.
    backlog_days: float | None = 0.0
    warning: str = ""
    # A resumed request: how many of its paths an earlier attempt had put in.
    resumed_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape."""
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [asdict(r) for r in self.rejected],
        }
        if self.incomplete:
            data.update(incomplete=True, error=self.error)
        if self.warning:
            days = None if self.backlog_days is None else round(self.backlog_days, 1)
            data.update(backlog_days=days, warning=self.warning)
        if self.resumed_after is not None:
            data["resumed_after"] = self.resumed_after
        return data


class EnqueueRejectedError(ValueError):
    """Invalid paths rejected the whole request: nothing was enqueued."""

    def __init__(self, receipt: Receipt) -> None:
        first = receipt.rejected[0]
        super().__init__(
            f"{receipt.rejected_count} invalid path(s), nothing enqueued; "
            f"first at line {first.line}: {first.reason}"
        )
        self.receipt = receipt


class RedisRefusesWritesError(RuntimeError):
    """Redis refused the first write of an enqueue (out of memory, a read-only replica):
    nothing was enqueued."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(
            f"Redis refuses writes, nothing enqueued: {cause} (free memory or raise "
            "maxmemory; point CDN_REFRESH_REDIS_URL at the primary)"
        )


class EnqueueInterruptedError(RuntimeError):
    """Redis failed part way through an enqueue: ``receipt`` says what went in.

    The job is closed as incomplete: its accepted paths go out as usual, and its status
    ends (``done`` or ``failed``, with ``"incomplete": true``) instead of staying pending.
    """

    def __init__(self, receipt: Receipt, cause: Exception) -> None:
        super().__init__(
            f"Redis failed after {receipt.accepted} path(s) of job {receipt.job_id or '-'} "
            f"went in: {type(cause).__name__}: {cause}"
        )
        self.receipt = receipt
