"""Defaults and provider facts in one place, units in the names (see ../shared/PROVIDER.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# The operations and their names live in their own table; imported from here too.
from cdn_refresh.operations import DIRECTORY as _DIRECTORY
from cdn_refresh.operations import FILE as _FILE
from cdn_refresh.operations import IGNORE_PARAMS as _IGNORE_PARAMS
from cdn_refresh.operations import OBJECT_TYPES as OBJECT_TYPES
from cdn_refresh.operations import OPERATIONS as _OPERATIONS
from cdn_refresh.operations import REGEX as _REGEX
from cdn_refresh.operations import ObjectType as ObjectType

API_VERSION: Final = "2018-05-10"
DEFAULT_ENDPOINT: Final = "https://cdn.aliyuncs.com"


class Priority(StrEnum):
    """Interactive work goes first; bulk work leaves the interactive reserve of the quota."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


class Promotion(StrEnum):
    """Whether workers send a Directory for many pending Files when the File quota is short."""

    OFF = "off"
    AUTO = "auto"


# Per-call limits of RefreshObjectCaches, as the settings' bounds name them (the operations
# table holds them: cdn_refresh/operations.py).
URLS_PER_CALL: Final = _FILE.paths_per_call
DIRECTORIES_PER_CALL: Final = _DIRECTORY.paths_per_call
REGEXES_PER_CALL: Final = _REGEX.paths_per_call
IGNORE_PARAMS_PER_CALL: Final = _IGNORE_PARAMS.paths_per_call
MAX_DOMAINS_PER_CALL: Final = max(op.domains_per_call for op in _OPERATIONS.values())
MAX_PATH_LENGTH: Final = 1024
# Provider messages can be long; a record keeps what an operator needs.
MAX_MESSAGE_CHARS: Final = 500

# The daily quotas' defaults, by the settings' names (from the operations table).
URL_DAILY_QUOTA: Final = _FILE.default_daily_quota
DIRECTORY_DAILY_QUOTA: Final = _DIRECTORY.default_daily_quota
REGEX_DAILY_QUOTA: Final = _REGEX.default_daily_quota
IGNORE_PARAMS_DAILY_QUOTA: Final = _IGNORE_PARAMS.default_daily_quota
QUOTA_WINDOW_S: Final = 24 * 60 * 60
# What `quota --set-window` takes: a window shorter than a minute forgets a reservation before
# the provider does, and one longer than a week holds the quota back for days; neither is a
# window anyone means (nan and inf are refused too: the claim script cannot count on them).
QUOTA_WINDOW_MIN_S: Final = 60.0
QUOTA_WINDOW_MAX_S: Final = 7 * 24 * 60 * 60.0
# The provider resets its own count at 00:00 UTC+8.
PROVIDER_RESET_UTC_OFFSET_H: Final = 8

# The provider refuses a request whose timestamp is off by more than this.
TIMESTAMP_WINDOW_S: Final = 15 * 60

HTTP_CONNECT_TIMEOUT_S: Final = 5.0
HTTP_READ_TIMEOUT_S: Final = 20.0

RETRY_BASE_DELAY_S: Final = 1.0
RETRY_MAX_DELAY_S: Final = 60.0
MAX_ATTEMPTS: Final = 8
BATCH_LEASE_S: Final = 120.0
FLUSH_DEBOUNCE_S: Final = 0.2
# Liveness (issue 13): a worker process refreshes its heartbeat every HEARTBEAT_INTERVAL_S;
# one that has not for HEARTBEAT_TTL_S is dead, and its batches go to another process. Death
# to resend: at most TTL + TTL / 2 (the sweep) + a flush, well under 15 s.
HEARTBEAT_TTL_S: Final = 6.0
HEARTBEAT_INTERVAL_S: Final = 1.0
SWEEP_INTERVAL_S: Final = 3.0
FLUSH_INTERVAL_S: Final = 5.0
INTERACTIVE_RESERVE: Final = 0.1
RECORD_RETENTION_DAYS: Final = 30
AUTH_HOLD_MAX_S: Final = 300.0
# Off: nothing is accepted or claimed unless Redis's maxmemory-policy is noeviction.
ALLOW_EVICTION: Final = False
# Getting more out of the quota (docs/behaviour.md): a path submitted less than this long ago waits
# this long before it goes again (0: no cooldown).
REFRESH_COOLDOWN_S: Final = 60.0
PROMOTE_MIN_PATHS: Final = 20
PROMOTE_MIN_DEPTH: Final = 1
# The provider's own count (DescribeRefreshQuota): read at most this often, and at once after
# a QuotaExceeded.
QUOTA_SYNC_S: Final = 60.0
# Reservations this recent may be calls the provider had not counted yet when it answered.
PROVIDER_COUNT_MARGIN_S: Final = 30.0
# Completion tracking (DescribeRefreshTaskById): first check, longest gap, give up.
TASK_FIRST_CHECK_S: Final = 10.0
TASK_CHECK_MAX_S: Final = 600.0
TASK_TIMEOUT_S: Final = 3600.0
# The shortest gap between two promotion plans, deployment-wide.
PROMOTE_INTERVAL_S: Final = 10.0

REDIS_URL: Final = "redis://127.0.0.1:6379/0"
# High availability (docs/operations.md): replicas that must confirm an enqueue's writes
# (0: none), and how long an enqueue waits for them before it says it was not acknowledged.
REDIS_MIN_REPLICAS_ACK: Final = 0
REDIS_REPLICA_ACK_TIMEOUT_S: Final = 1.0
KEY_PREFIX: Final = "cdnr"

# Bulk ranks sort after every interactive rank: enqueue times in ms stay far below this.
BULK_RANK_OFFSET: Final = 10**13
# A repeat (a path submitted within the quota window and asked for again) ranks one quota
# window later (enqueue.lua). Earlier releases added this offset instead: ranks made so are
# still read as such (an interactive rank stays below it until the year 2128).
REPEAT_RANK_OFFSET: Final = 5 * 10**12


def enqueued_ms(rank: float) -> float:
    """When a pending path was asked for (ms since the epoch), from its rank (a repeat's
    reads one quota window later: its rank does not say it is one)."""
    rank = rank - BULK_RANK_OFFSET if rank >= BULK_RANK_OFFSET else rank
    return rank - REPEAT_RANK_OFFSET if rank >= REPEAT_RANK_OFFSET else rank


# Celery task names, shared so the producer can send a flush without importing the worker.
TASK_FLUSH: Final = "cdn_refresh.flush"
TASK_TICK: Final = "cdn_refresh.tick"
TASK_WEBHOOKS: Final = "cdn_refresh.webhooks"

# The HTTP API (``cdn-refresh api``) and its job-end webhooks.
API_HOST: Final = "127.0.0.1"
API_PORT: Final = 8080
API_MAX_BODY_BYTES: Final = 10 * 1024 * 1024
# Request bodies the API holds at once, all requests together: past it, a 503 (the memory
# an API process may spend on bodies is bounded, however many clients send at once).
API_MAX_BODY_BYTES_IN_FLIGHT: Final = 64 * 1024 * 1024
# How long a client may take to send a request's headers; then how long it may go without
# sending a byte of its body, and how long the whole body may take at most (a slow but steady
# sender gets through; one that stalls does not hold a buffer for long).
API_HEADER_TIMEOUT_S: Final = 10.0
API_BODY_TIMEOUT_S: Final = 30.0
API_BODY_MAX_S: Final = 600.0
# Paths one POST may carry: a 10 MB body holds about this many typical URLs.
API_MAX_PATHS: Final = 100_000
# How long a POST's Idempotency-Key returns the job it made.
IDEMPOTENCY_TTL_S: Final = 24 * 60 * 60
WEBHOOK_TIMEOUT_S: Final = 10.0
WEBHOOK_RETRY_BASE_DELAY_S: Final = 5.0
WEBHOOK_RETRY_MAX_DELAY_S: Final = 3600.0
# A delivery no receiver took in this long moves to the webhook dead letters.
WEBHOOK_MAX_AGE_S: Final = 3 * 24 * 60 * 60.0
# How long one run of the webhook task may spend sending before it leaves the rest to the next.
WEBHOOK_RUN_BUDGET_S: Final = 30.0
# Upper bounds (s) of the provider call duration histogram; +Inf is implied.
CALL_DURATION_BUCKETS_S: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
