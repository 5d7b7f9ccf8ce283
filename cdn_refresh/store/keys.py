"""The Redis key layout, built by one class with one prefix and one account.

Keys carry the account: every key of one account carries the same hash tag, so that the Lua
scripts, which touch several keys at once, work on Redis Cluster too and one account's state
could live on a shard of its own. The default account's tag is ``{prefix}``, the names every
release before accounts used (an upgraded deployment keeps its queue); any other account's is
``{prefix@account}``: ``{cdnr@shop}:file:pending``. The ``@`` is a character no prefix
may hold (``KEY_PREFIX`` takes ``A-Za-z0-9_.:-``), so no account's tag is another
deployment's default tag: prefix ``cdnr:shop`` and account ``shop`` of prefix ``cdnr`` stay
apart. An account named ``default`` is the deployment's unnamed one.

Which keys are per account: all of them, for now. The queues, quota windows and their
limits, holds and backoffs, records, dead letters, the provider's count and the credential
holds belong to one account's provider credentials by nature; the jobs, batches, tracking,
webhooks, heartbeats, idempotency keys and claim tokens are touched by the same scripts as
those (a claim writes the batch and its owner, an enqueue the job and its paths), so they
share the account's slot too. A deployment-wide key would have to be one no script that
also touches an account's keys ever reads.

Per-operation keys are named by the operation's stored segment (``file``, ``dir``: the
operations table, :mod:`cdn_refresh.operations`). Scripts receive every key in ``KEYS``,
bound by name (:mod:`cdn_refresh.store.scripts`); none builds a key name itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields
from typing import Final

from cdn_refresh.operations import OPERATIONS, ObjectType, counterpart

# Prefix of a script key name that means "this field of the operation paired with this one by
# coverage" (a File claim reads its Directories' keys, a Directory's coverage its Files').
OTHER = "other."

# The account of a deployment with one: its keys keep the names of the releases before accounts.
DEFAULT_ACCOUNT: Final = "default"
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def account_name(account: str | None) -> str:
    """A valid account name (``None``: the default account); ValueError otherwise. Short,
    and of ``[A-Za-z0-9_-]`` only: it goes into every key name, inside the hash tag."""
    if account is None:
        return DEFAULT_ACCOUNT
    if not _ACCOUNT_NAME.fullmatch(account):
        raise ValueError(f"an account is 1 to 32 of A-Z a-z 0-9 _ -, not {account!r}")
    return account


def hash_tag(prefix: str, account: str | None = None) -> str:
    """The hash tag every key of ``account`` carries: ``{prefix}`` for the default account,
    ``{prefix@account}`` for any other (``@``: see the module's docstring)."""
    name = account_name(account)
    return "{" + prefix + "}" if name == DEFAULT_ACCOUNT else "{" + f"{prefix}@{name}" + "}"


# Hex digits of a path's SHA-1 that name it in a waiters hash: 16 (64 bits) instead of the path
# (about 60 bytes) saves most of what a pending path costs there. Two pending paths of one type
# share a field with odds of about n^2 / 2^65: 1e-9 at 200,000 pending paths (the two would then
# share their waiting jobs: a job could be counted done when the other path went, not its own).
WAITER_FIELD_HEX = 16


def waiter_field(path: str) -> str:
    """The waiters field of ``path``; prelude_waiters.lua's ``waiter_field`` is the same."""
    # Redis's Lua has SHA-1 alone (redis.sha1hex); a name, not a secret: no security use.
    digest = hashlib.sha1(path.encode("utf-8"), usedforsecurity=False)
    return digest.hexdigest()[:WAITER_FIELD_HEX]


def keeps_coverage_index(name: ObjectType) -> bool:
    """Whether an operation keeps its pending paths in a coverage index (``pending_lex``):
    one that covers others (a Directory) does, so that the paths of its own below one of
    them, and those that may cover a waiting path, are one ZRANGEBYLEX. A covered one (a
    File, by far the most paths) keeps none: cover.lua scans its pending set instead."""
    return bool(OPERATIONS[name].covers)


@dataclass(frozen=True, slots=True)
class TypeKeys:
    """Keys that hold one operation's paths and quota."""

    pending: str  # ZSET path -> rank (enqueue time in ms; bulk ranks after interactive)
    # ZSET path -> 0: the pending Directories again, in byte order, so that "what lies under
    # this directory" is one ZRANGEBYLEX (coverage, docs/behaviour.md "Getting more out of the
    # quota"). The Files keep none (a second copy of every File path): cover.lua scans their
    # pending set instead; the File key of older releases is removed on upgrade (digesting.py).
    pending_lex: str
    cooling: str  # ZSET path -> when its cooldown ends (s): requested again too soon
    cooling_rank: str  # HASH path -> the rank it goes back to pending with
    last_sent: str  # ZSET path -> when it was last claimed for a call (only with a cooldown)
    # HASH remaining, limit, checked_at: the provider's own count (DescribeRefreshQuota).
    provider_quota: str
    provider_noticed: str  # STRING the provider limit above ours that was logged already
    # ZSET directory -> 0: Directories claimed whose coverage is under way (Files wait).
    covering: str
    # HASH waiter_field(path) -> comma-separated job ids waiting on the pending path (keyed by
    # the path itself before schema 3: store/digesting.py moves those)
    waiters: str
    pathinfo: str  # HASH path -> JSON PathInfo of a path that failed before
    records: str  # HASH path -> JSON SubmissionRecord (the latest, with earlier ones)
    records_by_time: str  # ZSET path -> submitted_at, for retention
    dead: str  # HASH path -> JSON DeadLetter
    quota: str  # ZSET "batch:count" -> reserved_at (rolling window)
    quota_total: str  # STRING sum of the counts in ``quota``
    hold: str  # STRING with a TTL: the provider said its quota is spent
    backoff: str  # STRING with a TTL: back off after a transient error
    flush_scheduled: str  # STRING with a TTL: a flush is already scheduled
    wait_noticed: str  # STRING with a TTL: this wait was logged already
    # STRING the limit (paths per window) every worker's quota of this type runs on: stored by
    # the first claim, like the shared window (the operation's quota setting).
    quota_limit: str


@dataclass(frozen=True, slots=True)
class SharedKeys:
    """Keys shared by both object types."""

    batches: str  # HASH batch id -> JSON batch in flight
    # HASH "batch id|directory|step" -> JSON of paths that directory covers while in flight.
    covered: str
    leases: str  # ZSET batch id -> lease expiry (s)
    batch_seq: str  # STRING counter of batch ids
    job_seq: str  # STRING counter of job ids
    jobs: str  # HASH job id -> JSON JobHeader
    jobs_by_time: str  # ZSET job id -> created_at
    jobs_open: str  # ZSET job id -> when its enqueue must have ended (s), while it streams
    job_counts: str  # HASH "job:state" -> count
    job_tasks: str  # HASH job id -> comma-separated task ids
    auth_hold: str  # STRING with a TTL: claims wait while it lives
    auth_failures: str  # STRING consecutive credential errors
    # The last credential error, kept until a call goes through, so that status and lookup
    # show it between holds too.
    auth_error: str
    quota_window: str  # STRING the rolling window (s) every worker's quota runs on
    flush_requested: str  # STRING with a TTL: the producers' wake-up debounce
    write_probe: str  # set and deleted in one transaction: does Redis take writes?
    promotion_lock: str  # STRING with a TTL: one worker plans promotions at a time
    quota_sync_gate: str  # STRING with a TTL: the provider's count was read lately
    # Completion tracking: ZSET call -> when to ask the provider next (s), and HASH call ->
    # JSON of the call's task IDs and paths (store/tracking.py).
    tracking: str
    tracks: str
    task_status: str  # HASH task id -> JSON {status, at}: how each tracked task ended
    task_status_by_time: str  # ZSET task id -> when it ended, for retention
    tracking_lock: str  # STRING with a TTL: one poller for the deployment
    # Counters every worker adds to (store/metrics.py): HASH field -> number.
    metrics: str
    webhooks: str  # HASH job id -> JSON callback registered for the job's end
    webhook_outbox: str  # ZSET delivery id -> next attempt (s); a lease pushes it on
    webhook_deliveries: str  # HASH delivery id -> JSON delivery (url, body, attempts)
    # Liveness (store/liveness.py): ZSET worker process -> when its heartbeat runs out (s),
    # and HASH batch id -> the worker process that claimed it.
    heartbeats: str
    batch_owners: str
    # STRING with a TTL: a trailing flush is scheduled behind a leading-edge wake-up.
    flush_trailing: str
    webhook_created: str  # ZSET delivery id -> when it was fired (s): the oldest one's age
    webhook_dead: str  # HASH delivery id -> JSON delivery given up on (WEBHOOK_MAX_AGE_S)
    webhook_send_scheduled: str  # STRING with a TTL: a delivery task is scheduled or running
    # STRING the quota window the workers last logged: a change (quota --set-window) is
    # logged once, by the first tick that sees it.
    quota_window_noticed: str
    # HASH worker process -> the state schema it runs (store/liveness.py): a worker of a
    # release before the field existed has a heartbeat and no entry.
    worker_schemas: str
    # STRING set once no path anywhere is left under an older spelling (store/respelling.py):
    # from then on the tick no longer looks.
    respelled: str
    # STRING set once no waiters are left keyed by their path and the Files' coverage index
    # of older releases is gone (store/digesting.py): from then on the tick no longer looks.
    digested: str
    # STRING set while that upgrade runs: scripts read waiters under both forms meanwhile.
    digesting: str


class Keys:
    """Every key of one account, under one prefix (``account=None``: the default account)."""

    def __init__(self, prefix: str, account: str | None = None) -> None:
        self.prefix = prefix
        self.account = account_name(account)
        self.tag = tag = hash_tag(prefix, account)
        self.shared = SharedKeys(*(f"{tag}:{f.name}" for f in fields(SharedKeys)))
        self._types = {
            name: TypeKeys(*(f"{tag}:{op.key_segment}:{f.name}" for f in fields(TypeKeys)))
            for name, op in OPERATIONS.items()
        }

    def idempotency(self, digest: str) -> str:
        """The STRING (with a TTL) that holds what one Idempotency-Key's POST answered;
        ``digest`` is a hash of the key, never the key itself."""
        return f"{self.tag}:idempotency:{digest}"

    def stop_request(self, node: str) -> str:
        """The STRING (with a TTL) by which a worker's main process, told to stop, tells its
        pool processes to claim no more (they get no signal of their own under Docker)."""
        return f"{self.tag}:stop_request:{node}"

    def claim_token(self, token: str) -> str:
        """The STRING (with the lease as its TTL) that holds the batch one claim attempt
        took, so that the same claim retried after a lost reply gets that batch again."""
        return f"{self.tag}:claim_token:{token}"

    def of(self, object_type: ObjectType) -> TypeKeys:
        """The keys of one object type."""
        return self._types[object_type]

    def bind(self, names: tuple[str, ...], object_type: ObjectType | None = None) -> list[str]:
        """The key names for a script's ``KEYS``, in the order of ``names``.

        A name is a field of :class:`TypeKeys` (of ``object_type``) or of :class:`SharedKeys`;
        ``other.<field>`` is a field of the keys of the operation paired with ``object_type``
        by coverage (:func:`~cdn_refresh.operations.counterpart`; coverage reads both).
        """
        typed = self._types[object_type] if object_type is not None else None
        bound = []
        for name in names:
            if name.startswith(OTHER) and object_type is not None:
                paired = self._types[counterpart(ObjectType(object_type), OPERATIONS)]
                bound.append(getattr(paired, name[len(OTHER) :]))
            elif typed is not None and hasattr(typed, name):
                bound.append(getattr(typed, name))
            elif hasattr(self.shared, name):
                bound.append(getattr(self.shared, name))
            else:
                raise KeyError(f"no key named {name!r} for object type {object_type}")
        return bound
