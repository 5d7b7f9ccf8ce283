"""The Redis key layout, built by one class with one prefix.

Every key carries the same hash tag (``{prefix}``) so that the Lua scripts, which touch
several keys at once, work on Redis Cluster too. Scripts receive every key in ``KEYS``;
none builds a key name itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdn_refresh.constants import ObjectType

_TYPE_SLUG: dict[ObjectType, str] = {"File": "file", "Directory": "dir"}


@dataclass(frozen=True, slots=True)
class TypeKeys:
    """Keys that hold one object type's paths and quota."""

    pending: str  # ZSET path -> rank (enqueue time in ms; bulk ranks after interactive)
    waiters: str  # HASH path -> comma-separated job ids waiting on the pending path
    pathinfo: str  # HASH path -> JSON {attempts, last_error} of a path that failed before
    records: str  # HASH path -> JSON record of its last submission
    records_by_time: str  # ZSET path -> submitted_at, for retention
    dead: str  # HASH path -> JSON {code, message, attempts, at, jobs}
    quota: str  # ZSET "batch:count" -> reserved_at (rolling window)
    quota_total: str  # STRING sum of the counts in ``quota``
    hold: str  # STRING with a TTL: the provider said its quota is spent
    backoff: str  # STRING with a TTL: back off after a transient error
    flush_scheduled: str  # STRING with a TTL: a flush is already scheduled
    wait_noticed: str  # STRING with a TTL: this wait was logged already


class Keys:
    """Every key the project uses, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        tag = "{" + prefix + "}"
        self._tag = tag
        self.batches = f"{tag}:batches"  # HASH batch id -> JSON batch in flight
        self.leases = f"{tag}:leases"  # ZSET batch id -> lease expiry (s)
        self.batch_seq = f"{tag}:batch_seq"
        self.job_seq = f"{tag}:job_seq"
        self.jobs = f"{tag}:jobs"  # HASH job id -> JSON job header
        self.jobs_by_time = f"{tag}:jobs_by_time"  # ZSET job id -> created_at
        self.job_counts = f"{tag}:job_counts"  # HASH "job:state" -> count
        self.job_tasks = f"{tag}:job_tasks"  # HASH job id -> comma-separated task ids
        self.auth_hold = f"{tag}:auth_hold"  # STRING with a TTL: claims wait while it lives
        self.auth_failures = f"{tag}:auth_failures"  # consecutive credential errors
        # The last credential error, kept until a call goes through, so that status and
        # lookup show it between holds too.
        self.auth_error = f"{tag}:auth_error"
        self.flush_requested = f"{tag}:flush_requested"  # debounce flag of enqueue
        self._types = {t: self._type_keys(t) for t in _TYPE_SLUG}

    def _type_keys(self, object_type: ObjectType) -> TypeKeys:
        base = f"{self._tag}:{_TYPE_SLUG[object_type]}"
        return TypeKeys(
            pending=f"{base}:pending",
            waiters=f"{base}:waiters",
            pathinfo=f"{base}:pathinfo",
            records=f"{base}:records",
            records_by_time=f"{base}:records_by_time",
            dead=f"{base}:dead",
            quota=f"{base}:quota",
            quota_total=f"{base}:quota_total",
            hold=f"{base}:hold",
            backoff=f"{base}:backoff",
            flush_scheduled=f"{base}:flush_scheduled",
            wait_noticed=f"{base}:wait_noticed",
        )

    def of(self, object_type: ObjectType) -> TypeKeys:
        """The keys of one object type."""
        return self._types[object_type]
