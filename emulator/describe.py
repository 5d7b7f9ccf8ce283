"""The provider's read-only actions: the quota left today, and tasks by ID or by search.

Plain functions over the provider's state, so that :mod:`emulator.provider` keeps the
request path and the actions that spend quota.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.config import EmulatorConfig
from emulator.errors import ApiError, missing_parameter
from emulator.ledger import Ledger
from emulator.quota import COUNTERS
from emulator.tasks import TaskBook, parse_query


def refresh_quota(
    config: EmulatorConfig, ledger: Ledger, now_s: float, request_id: str
) -> dict[str, Any]:
    """``DescribeRefreshQuota``: each counter's daily quota and what is left of it today,
    for every counter the provider answers fields for (refresh and preload apart)."""
    # The provider answers numbers as strings here.
    counts: dict[str, str] = {}
    for kind, counter in COUNTERS.items():
        if counter.quota_field is None or counter.remain_field is None:
            continue
        counts[counter.quota_field] = str(counter.daily_quota(config))
        counts[counter.remain_field] = str(ledger.remaining(kind, config, now_s))
    return {**counts, "RequestId": request_id}


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
