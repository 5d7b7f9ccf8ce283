"""The provider's read-only actions: the quota left today, and tasks by ID or by search.

Plain functions over the provider's state, so that :mod:`emulator.provider` keeps the
request path and the actions that spend quota.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cdn_refresh.operations import OPERATIONS
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, missing_parameter
from emulator.operations import SUPPORT
from emulator.quota import DailyQuota, QuotaKind, provider_day
from emulator.tasks import TaskBook, parse_query


def refresh_quota(
    config: EmulatorConfig,
    quota: DailyQuota,
    left_to_us: Callable[[QuotaKind], int],
    now_s: float,
    request_id: str,
) -> dict[str, Any]:
    """``DescribeRefreshQuota``: each quota and what is left of it today."""
    day = provider_day(now_s, config.reset_utc_offset_h)
    # The provider answers numbers as strings here.
    counts: dict[str, str] = {}
    for name, support in SUPPORT.items():
        op = OPERATIONS[name]  # the fields its row names
        counts[op.provider_quota_field] = str(support.daily_quota(config))
        remaining = quota.remaining(support.kind, left_to_us(support.kind), day)
        counts[op.provider_remain_field] = str(remaining)
    return {
        **counts,
        "PreloadQuota": str(config.push_quota),
        "PreloadRemain": str(quota.remaining("push", config.push_quota, day)),
        "RegexQuota": str(config.regex_quota),
        "RegexRemain": str(config.regex_quota),
        "RequestId": request_id,
    }


def tasks_by_id(
    config: EmulatorConfig, tasks: TaskBook, raw: str | None, now_s: float, request_id: str
) -> dict[str, Any]:
    """``DescribeRefreshTaskById``: the tasks named in ``raw`` (comma-separated IDs)."""
    if not raw:
        raise missing_parameter("TaskId")
    ids = [part.strip() for part in raw.split(",")]
    if len(ids) > config.task_ids_per_query:
        raise ApiError(
            400,
            "InvalidTaskId.ExceedLimit",
            f"{len(ids)} task IDs; at most {config.task_ids_per_query} are allowed.",
        )
    for task_id in ids:
        if not task_id.isdigit():
            raise ApiError(
                400, "InvalidTaskId.Malformed", f"The specified TaskId {task_id!r} is invalid."
            )
    entries = tasks.by_ids(ids, now_s, config)
    return {"Tasks": entries, "TotalCount": len(entries), "RequestId": request_id}


def tasks_search(
    config: EmulatorConfig,
    tasks: TaskBook,
    params: Mapping[str, str],
    now_s: float,
    request_id: str,
) -> dict[str, Any]:
    """``DescribeRefreshTasks``: one page of the tasks matching the query in ``params``."""
    query = parse_query(params)
    page, total = tasks.search(query, now_s, config)
    # Unlike DescribeRefreshTaskById, the entries sit in {"CDNTask": [...]} and the page
    # numbers are integers: the shape of the API reference and of the official SDK's model.
    return {
        "Tasks": {"CDNTask": page},
        "PageNumber": query.page_number,
        "PageSize": query.page_size,
        "TotalCount": total,
        "RequestId": request_id,
    }
