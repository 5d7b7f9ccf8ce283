"""The provider's actions, each a function of one authenticated :class:`Call`: the ones that
refresh or preload (they check, spend a daily counter, hand out tasks and are recorded), and
the read-only ones (:mod:`emulator.describe`). :data:`ACTIONS` maps each action name to its
function; the rows of :mod:`emulator.operations` say what differs between types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from emulator import describe
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, invalid_parameter, missing_parameter
from emulator.ledger import Ledger
from emulator.operations import PRELOAD, REFRESH_ACTION, TAG_REFRESH, served
from emulator.paths import ObjectPath, check_path, distinct_domains, split_paths

AREAS: Final = frozenset({"", "domestic", "overseas"})


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated request to run: its parameters and what it runs against."""

    config: EmulatorConfig
    ledger: Ledger
    params: Mapping[str, str]
    now_s: float
    request_id: str
    dropped: bool  # the answer will be thrown away (a drawn drop_after_accept)


def parse_bool(name: str, value: str | None) -> bool:
    """``true``/``false`` in any case (the official SDK sends Python's ``True``)."""
    if value is None or value == "":
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_parameter(name, value)


# -- shared checks ---------------------------------------------------------------------------


def check_domains(config: EmulatorConfig, domains: list[str]) -> None:
    """Refuse the first domain the account does not serve, or serves no longer."""
    for domain in domains:
        if domain in config.offline_domains:
            raise ApiError(404, "InvalidDomain.Offline", f"The domain {domain!r} is offline.")
        if domain in config.unknown_domains or (
            config.known_domains and domain not in config.known_domains
        ):
            raise ApiError(404, "InvalidDomain.NotFound", f"The domain {domain!r} does not exist.")


def checked_paths(
    config: EmulatorConfig, raw: str | None, *, directory: bool, per_call: str | None, what: str
) -> list[ObjectPath]:
    """``ObjectPath`` split, counted against the config field ``per_call`` (None: no limit)
    and each path checked."""
    lines = split_paths(raw or "")
    limit = int(getattr(config, per_call)) if per_call else None
    if limit is not None and len(lines) > limit:
        raise ApiError(
            400,
            "InvalidObjectPath.Size.Malformed",
            f"{len(lines)} {what} in one call; at most {limit} are allowed.",
        )
    max_length = config.max_path_length
    return [check_path(line, directory=directory, max_length=max_length) for line in lines]


def checked_domains(config: EmulatorConfig, paths: list[ObjectPath]) -> list[str]:
    """The distinct domains of ``paths``, at most ``domains_per_call`` and all served."""
    domains = distinct_domains(paths)
    if len(domains) > config.domains_per_call:
        raise ApiError(
            400,
            "SingleRequest.OverLimit",
            f"{len(domains)} domains in one call; at most {config.domains_per_call} are allowed.",
        )
    check_domains(config, domains)
    return domains


def by_domain(paths: list[ObjectPath]) -> list[tuple[str, tuple[str, ...]]]:
    """``(domain, its paths)`` in order of first appearance: one task each."""
    return [
        (domain, tuple(p.text for p in paths if p.domain == domain))
        for domain in distinct_domains(paths)
    ]


# -- actions that spend ----------------------------------------------------------------------


def refresh_object_caches(call: Call) -> dict[str, Any]:
    """``RefreshObjectCaches``: any ObjectType of the table, each on its own counter."""
    config, params = call.config, call.params
    object_type = params.get("ObjectType") or "File"
    row = served(REFRESH_ACTION, object_type)
    if row is None:
        raise ApiError(
            400,
            "InvalidObjectType.Malformed",
            f"The specified ObjectType {object_type!r} is invalid.",
        )
    force = parse_bool("Force", params.get("Force"))
    paths = checked_paths(
        config,
        params.get("ObjectPath"),
        directory=row.prefix_path,
        per_call=row.per_call,
        what=row.what,
    )
    checked_domains(config, paths)
    call.ledger.spend(row.kind, len(paths), config, call.now_s)
    task_ids = call.ledger.new_tasks(by_domain(paths), row.task_type, config, call.now_s)
    call.ledger.record(
        REFRESH_ACTION,
        call.request_id,
        call.now_s,
        object_type=object_type,
        force=force,
        # File takes Force and ignores it: it only applies to the other types.
        force_applied=force and row.force_applies,
        paths=[p.text for p in paths],
        task_ids=task_ids,
        dropped_response=call.dropped,
    )
    return {"RefreshTaskId": ",".join(task_ids), "RequestId": call.request_id}


def refresh_by_cache_tag(call: Call) -> dict[str, Any]:
    """``RefreshObjectCacheByCacheTag``: comma-separated tags of one domain, one task."""
    config, params, row = call.config, call.params, TAG_REFRESH
    domain = (params.get("DomainName") or "").strip().lower()
    if not domain:
        raise missing_parameter("DomainName")
    if "*" in domain:
        raise ApiError(
            400,
            "InvalidExtensiveDomain.ValueNotSupported",
            f"Wildcard domain {domain!r} is not supported.",
        )
    raw = params.get("CacheTag") or ""
    if not raw:
        raise missing_parameter("CacheTag")
    tags = [tag.strip() for tag in raw.split(",")]
    if any(not tag for tag in tags):
        raise invalid_parameter("CacheTag", raw)
    force = parse_bool("Force", params.get("Force"))
    check_domains(config, [domain])
    call.ledger.spend(row.kind, len(tags), config, call.now_s)
    task_ids = call.ledger.new_tasks([(domain, tuple(tags))], row.task_type, config, call.now_s)
    call.ledger.record(
        row.action,
        call.request_id,
        call.now_s,
        domain=domain,
        tags=tags,
        force=force,
        task_ids=task_ids,
        dropped_response=call.dropped,
    )
    return {row.answer_field: ",".join(task_ids), "RequestId": call.request_id}


def _preload_options(params: Mapping[str, str]) -> dict[str, Any]:
    area = params.get("Area") or ""
    if area not in AREAS:
        raise invalid_parameter("Area", area)
    with_header = params.get("WithHeader") or None
    if with_header is not None:
        try:
            headers = json.loads(with_header)
        except ValueError:
            headers = None
        if not isinstance(headers, dict):
            raise invalid_parameter("WithHeader", with_header)
    return {
        "area": area or None,
        "l2_preload": parse_bool("L2Preload", params.get("L2Preload")),
        "with_header": with_header,
        "query_hashkey": parse_bool("QueryHashkey", params.get("QueryHashkey")),
    }


def _check_queue(call: Call, adding: int) -> None:
    if PRELOAD.queue_limit is None:
        return
    limit = int(getattr(call.config, PRELOAD.queue_limit))
    queued = call.ledger.tasks.unfinished_paths(
        PRELOAD.task_type, call.now_s, call.config.complete_after_s
    )
    if queued + adding > limit:
        raise ApiError(
            403,
            "PreloadQueueFull",
            f"The preload queue is full: {queued} URLs queued, {adding} more asked, "
            f"at most {limit} allowed.",
        )


def push_object_cache(call: Call) -> dict[str, Any]:
    """``PushObjectCache``: preload, on its own counter and behind a per-account queue."""
    config, row = call.config, PRELOAD
    options = _preload_options(call.params)
    paths = checked_paths(
        config,
        call.params.get("ObjectPath"),
        directory=False,
        per_call=row.per_call,
        what=row.counter.what,
    )
    checked_domains(config, paths)
    _check_queue(call, len(paths))
    call.ledger.spend(row.kind, len(paths), config, call.now_s)
    task_ids = call.ledger.new_tasks(by_domain(paths), row.task_type, config, call.now_s)
    call.ledger.record(
        row.action,
        call.request_id,
        call.now_s,
        paths=[p.text for p in paths],
        **options,
        task_ids=task_ids,
        dropped_response=call.dropped,
    )
    return {row.answer_field: ",".join(task_ids), "RequestId": call.request_id}


# -- every action ----------------------------------------------------------------------------

#: Every action the emulator answers, by name.
ACTIONS: Final[Mapping[str, Callable[[Call], dict[str, Any]]]] = MappingProxyType(
    {
        REFRESH_ACTION: refresh_object_caches,
        TAG_REFRESH.action: refresh_by_cache_tag,
        PRELOAD.action: push_object_cache,
        "DescribeRefreshQuota": lambda c: describe.refresh_quota(
            c.config, c.ledger, c.now_s, c.request_id
        ),
        "DescribeRefreshTaskById": lambda c: describe.tasks_by_id(
            c.config, c.ledger.tasks, c.params.get("TaskId"), c.now_s, c.request_id
        ),
        "DescribeRefreshTasks": lambda c: describe.tasks_search(
            c.config, c.ledger.tasks, c.params, c.now_s, c.request_id
        ),
    }
)
