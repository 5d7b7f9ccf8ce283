"""The Lua scripts, the order of their keys and the names of their arguments, written once.

Each script is a file in ``lua/`` that begins with one ``local name = KEYS[n]`` line per key
and one ``local name = ARGV[n]`` line per argument; its :class:`ScriptSpec` here lists the
same names in the same order (tests hold the two together), and :meth:`Scripts.run` binds the
keys to this prefix's key names and the arguments, given by name, to their positions (and a
list after them, enqueue's or submit's paths, by the name the spec's ``trailing`` gives it).
The prelude (``prelude.lua``, ``prelude_waiters.lua``, ``prelude_paths.lua``,
``prelude_coverage.lua``), the helpers every script shares (Redis's clock, slicing for
``unpack``, comma-separated lists, waiters by digest, a batch's paths), is prepended to each
script when it is registered, after the state names generated from
:mod:`~cdn_refresh.store.states` (``STATE.PENDING``, ``RELEASE.RETRY``): no script spells a
state. A script's own sections (``parts``: claim's) come next, then its short main. redis-py's
``register_script`` reloads a script by itself after a NOSCRIPT (a Redis restart, say).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from cdn_refresh.constants import ObjectType
from cdn_refresh.operations import OPERATIONS
from cdn_refresh.store.keys import Keys, keeps_coverage_index
from cdn_refresh.store.states import lua_constants

PRELUDE = "prelude.lua"
# The prelude in files of a readable size, prepended in this order.
PRELUDES = (PRELUDE, "prelude_waiters.lua", "prelude_paths.lua", "prelude_coverage.lua")


@dataclass(frozen=True, slots=True)
class ScriptSpec:
    """A script file, the names of its ``KEYS`` and of its ``ARGV``, in order.

    ``parts`` are section files of this script alone, prepended to it after the prelude
    (claim's sections), so that its own file is the short main that calls them.
    ``trailing`` names a list that follows the named ``args`` in ARGV (submit's paths): the
    caller gives it by that name too, and the script binds it in its header after the args.
    """

    file: str
    keys: tuple[str, ...]
    args: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    trailing: str | None = None


ENQUEUE = ScriptSpec(
    "enqueue.lua",
    (
        "pending",
        "pending_lex",
        "waiters",
        "cooling",
        "cooling_rank",
        "job_counts",
        "dead",
        "records_by_time",
        "last_sent",
        "jobs_open",
        "quota_window",
        "digesting",
    ),
    args=("job", "rank", "window_s", "object_type"),
    parts=("enqueue_ranks.lua",),
    trailing="paths",
)
REPLAY = ScriptSpec(
    "replay.lua",
    (
        "dead",
        "pending",
        "waiters",
        "pathinfo",
        "job_counts",
        "pending_lex",
        "cooling",
        "cooling_rank",
        "digesting",
    ),
    args=("rank", "object_type"),
    trailing="paths",
)
CLAIM = ScriptSpec(
    "claim.lua",
    keys=(
        "pending",
        "pending_lex",
        "waiters",
        "cooling",
        "cooling_rank",
        "records_by_time",
        "last_sent",
        "batches",
        "leases",
        "quota",
        "quota_total",
        "quota_window",
        "hold",
        "auth_hold",
        "backoff",
        "job_counts",
        "batch_seq",
        "other.pending",
        "other.pending_lex",
        "other.quota_total",
        "other.hold",
        "other.backoff",
        "covering",
        "other.covering",
        "provider_quota",
        "batch_owners",
        "claim_token",
        "other.provider_quota",
        "quota_limit",
        "other.quota_limit",
        "digesting",
    ),
    args=(
        "now",
        "window_s",
        "limit",
        "reserve_share",
        "max_paths",
        "max_domains",
        "lease_s",
        "bulk_floor",
        "object_type",
        "scan_limit",
        "cooldown_s",
        "file_claim",
        "covering_limit",
        "covering_reserve",
        "last_reset",
        "count_margin_s",
        "owner",
    ),
    parts=("claim_quota.lua", "claim_coverage.lua", "claim_pack.lua"),
)
COVER = ScriptSpec(
    "cover.lua",
    (
        "batches",
        "leases",
        "covered",
        "quota",
        "quota_total",
        "pending",
        "pending_lex",
        "waiters",
        "job_counts",
        "covering",
        "other.pending",
        "other.waiters",
        "digesting",
    ),
    ("id", "budget", "cap", "bulk_floor", "repeat_offset"),
    parts=("cover_nest.lua", "cover_steps.lua"),
)
SUBMIT = ScriptSpec(
    "submit.lua",
    (
        "batches",
        "leases",
        "pathinfo",
        "records",
        "records_by_time",
        "dead",
        "job_counts",
        "job_tasks",
        "auth_failures",
        "auth_error",
        "covered",
        "other.pathinfo",
        "other.records",
        "other.records_by_time",
        "other.dead",
        "metrics",
        "covering",
        "tracking",
        "tracks",
    ),
    args=("id", "now", "info", "mode"),
    parts=("submit_paths.lua", "submit_records.lua", "submit_after.lua"),
    trailing="paths",
)
RELEASE = ScriptSpec(
    "release.lua",
    (
        "batches",
        "leases",
        "pending",
        "waiters",
        "pathinfo",
        "dead",
        "quota",
        "quota_total",
        "job_counts",
        "pending_lex",
        "cooling",
        "cooling_rank",
        "covered",
        "other.pending",
        "other.waiters",
        "last_sent",
        "metrics",
        "other.cooling",
        "other.cooling_rank",
        "covering",
        "digesting",
    ),
    args=("id", "now", "mode", "info"),
    parts=("release_steps.lua",),
    trailing="paths",
)
TRACK = ScriptSpec(
    "track.lua",
    (
        "tracking",
        "tracks",
        "task_status",
        "task_status_by_time",
        "job_counts",
        "records",
        "pending",
        "pending_lex",
        "waiters",
        "pathinfo",
        "dead",
        "other.pending",
        "other.pending_lex",
        "other.waiters",
        "other.pathinfo",
        "other.dead",
        "other.records",
        "digesting",
    ),
    ("call", "now", "answer"),
    parts=("track_settle.lua",),
)
EXTEND_TTL = ScriptSpec("extend_ttl.lua", ("target",), ("value", "ttl_ms"))
QUOTA_USED = ScriptSpec(
    "quota_used.lua",
    ("quota", "quota_window", "quota_limit"),
    ("now", "configured_window_s", "configured_limit"),
)
TOUCH_JOB = ScriptSpec("touch_job.lua", ("jobs_open",), ("job_id", "lease_s", "mode"))
WEBHOOK_FIRE = ScriptSpec(
    "webhook_fire.lua",
    ("webhooks", "webhook_outbox", "webhook_deliveries", "webhook_created"),
    ("job_id", "delivery_id", "delivery", "now", "created_at"),
)
WEBHOOK_LEASE = ScriptSpec(
    "webhook_lease.lua",
    ("webhook_outbox", "webhook_deliveries", "webhook_created"),
    ("now", "most", "lease_s"),
)
WEBHOOK_BURY = ScriptSpec(
    "webhook_bury.lua",
    ("webhooks", "webhook_outbox", "webhook_deliveries", "webhook_created", "webhook_dead"),
    ("delivery_id", "delivery", "job_id"),
)
WEBHOOK_RETRY = ScriptSpec(
    "webhook_retry.lua",
    ("webhook_outbox", "webhook_deliveries"),
    ("delivery_id", "delivery", "delay_s"),
)
HEARTBEAT = ScriptSpec("heartbeat.lua", ("heartbeats",), ("owner", "ttl_s"))
ORPHANED = ScriptSpec("orphaned.lua", ("batch_owners", "batches", "heartbeats"), ("now",))
# ``idempotency`` is one Idempotency-Key's own STRING: given as an extra key.
IDEMPOTENCY_BEGIN = ScriptSpec(
    "idempotency_begin.lua",
    ("idempotency", "legacy_idempotency", "job_seq", "jobs", "webhooks"),
    ("fingerprint", "owner", "stale_after_s", "ttl_s", "callback"),
)
IDEMPOTENCY_BEAT = ScriptSpec("idempotency_beat.lua", ("idempotency",), ("owner", "done"))
IDEMPOTENCY_FINISH = ScriptSpec(
    "idempotency_finish.lua", ("idempotency",), ("owner", "done_mark", "ttl_s")
)
# The upgrade to schema 3 (store/digesting.py): path-keyed waiters to their digest.
DIGEST_WAITERS = ScriptSpec("digest_waiters.lua", ("waiters", "job_counts"), trailing="paths")
IDEMPOTENCY_ABANDON = ScriptSpec("idempotency_abandon.lua", ("idempotency", "webhooks"), ("owner",))
ALL: tuple[ScriptSpec, ...] = (
    ENQUEUE,
    REPLAY,
    CLAIM,
    COVER,
    SUBMIT,
    RELEASE,
    TRACK,
    EXTEND_TTL,
    QUOTA_USED,
    TOUCH_JOB,
    WEBHOOK_FIRE,
    WEBHOOK_LEASE,
    WEBHOOK_RETRY,
    HEARTBEAT,
    ORPHANED,
    WEBHOOK_BURY,
    IDEMPOTENCY_BEGIN,
    IDEMPOTENCY_BEAT,
    IDEMPOTENCY_FINISH,
    IDEMPOTENCY_ABANDON,
    DIGEST_WAITERS,
)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text(encoding="utf-8")


def source(spec: ScriptSpec) -> str:
    """The script's own text, without the prelude: its sections, then its main."""
    return "\n".join(_read(name) for name in (*spec.parts, spec.file))


def main(spec: ScriptSpec) -> str:
    """The script's own file alone: its header and its main."""
    return _read(spec.file)


def bind_args(spec: ScriptSpec, args: Mapping[str, Any], rest: Sequence[Any] = ()) -> list[Any]:
    """``args`` in the order of ``spec.args`` (each name given, no other), then the list
    ``spec.trailing`` names (given by that name too), then ``rest``."""
    names = {*spec.args, *((spec.trailing,) if spec.trailing else ())}
    if set(args) != names:
        missing, unknown = names - set(args), set(args) - names
        raise ValueError(f"{spec.file}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    trailing = list(args[spec.trailing]) if spec.trailing else []
    return [args[name] for name in spec.args] + trailing + list(rest)


def prelude() -> str:
    """The helpers prepended to every script."""
    return "\n".join(_read(name) for name in PRELUDES)


def indexed_constants() -> str:
    """``INDEXED``: the operations that keep a coverage index, by name, for the prelude's
    ``coverage_index`` (read from the operations table, like the state names)."""
    names = ", ".join(
        f"['{name.value}'] = true" for name in OPERATIONS if keeps_coverage_index(name)
    )
    return f"local INDEXED = {{{names}}}\n"


def shared() -> str:
    """What every script is prepended with: the state names and the operations that keep a
    coverage index, then the prelude."""
    return lua_constants() + indexed_constants() + prelude()


class Scripts:
    """Every script registered on one client, run with its keys bound by name."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._keys = keys
        head = shared()
        self._registered: dict[str, Script] = {
            spec.file: client.register_script(head + "\n" + source(spec)) for spec in ALL
        }

    def shas(self) -> dict[str, str]:
        """Each script file's SHA1 as Redis knows it (the slow log names scripts by it)."""
        return {name: script.sha for name, script in self._registered.items()}

    def run(
        self,
        spec: ScriptSpec,
        args: Mapping[str, Any] | Sequence[Any],
        object_type: ObjectType | None = None,
        *,
        extra_keys: dict[str, str] | None = None,
        client: redis.client.Pipeline | None = None,
    ) -> Any:
        """Run ``spec`` with its keys for ``object_type``; ``client`` queues it on a pipeline.

        A script whose spec names its ``args`` takes them by name (a mapping, checked against
        the spec); one without takes a sequence. ``extra_keys`` names keys that are no field
        of the layout (``target`` of extend_ttl).
        """
        if extra_keys:
            keys = [extra_keys.get(n) or self._keys.bind((n,), object_type)[0] for n in spec.keys]
        else:
            keys = self._keys.bind(spec.keys, object_type)
        if isinstance(args, Mapping):
            argv = bind_args(spec, args)
        elif spec.args:
            raise TypeError(f"{spec.file} takes its arguments by name")
        else:
            argv = list(args)
        return self._registered[spec.file](keys=keys, args=argv, client=client)
