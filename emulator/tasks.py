"""Refresh and prefetch tasks: what each holds, how its status moves, and how they are queried.

A task is one domain's paths from one accepted call. Its status is ``Refreshing`` until
``complete_after_s`` has passed, then ``Complete``, or ``Failed`` for the share of tasks set by
``task_failure_rate``. The provider keeps tasks for three days; older ones are not found.

Both query actions answer one entry per (task, path): ``DescribeRefreshTaskById`` here as
:meth:`TaskBook.by_ids`, ``DescribeRefreshTasks`` as :meth:`TaskBook.search` (filters and pages,
see :class:`TaskQuery`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cdn_refresh.signature import format_timestamp
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, invalid_parameter, missing_parameter

# The provider keeps tasks for three days.
TASK_RETENTION_S = 3 * 24 * 60 * 60
# The first of the failure descriptions the provider documents ("Internal Error",
# "Origin Timeout", "Origin Return StatusCode 5XX"): the emulator has no origin to blame.
FAILED_DESCRIPTION = "Internal Error"

# DescribeRefreshTasks, from the provider's API reference: ObjectType and Status take these
# values, PageSize is 1..100 (default 20; older pages said 50), PageNumber 1..100000.
QUERY_OBJECT_TYPES = frozenset({"file", "directory", "regex", "preload", "block", "unblock"})
QUERY_STATUSES = frozenset({"Complete", "Refreshing", "Failed", "Pending", "Timeout", "Canceled"})
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE_NUMBER = 100_000
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Task:
    """One refresh or prefetch task: one domain's paths from one call."""

    task_id: str
    # Lower case as the provider shows it: "file", "directory", "regex", "preload", ... (the
    # rows of emulator.operations name them).
    object_type: str
    domain: str
    paths: tuple[str, ...]
    created_s: float
    fails: bool = False


@dataclass(frozen=True)
class TaskQuery:
    """The filters of one DescribeRefreshTasks call; ``None`` means "any"."""

    task_id: str | None = None
    object_path: str | None = None
    object_type: str | None = None
    domain: str | None = None
    status: str | None = None
    start_s: int | None = None
    end_s: int | None = None
    page_number: int = 1
    page_size: int = 20


def parse_query(params: Mapping[str, str]) -> TaskQuery:
    """The filters of a DescribeRefreshTasks call; raise :class:`ApiError` for a bad one.

    Every filter is optional (none at all lists the newest tasks). The reference asks for
    ObjectType whenever DomainName or Status is given, and TaskId is one ID, not a list.
    """
    task_id = params.get("TaskId") or None
    if task_id is not None and not task_id.isdigit():
        raise ApiError(
            400, "InvalidTaskId.Malformed", f"The specified TaskId {task_id!r} is invalid."
        )
    object_type = params.get("ObjectType") or None
    domain = params.get("DomainName") or None
    status = params.get("Status") or None
    if object_type is None and (domain is not None or status is not None):
        raise missing_parameter("ObjectType")
    if object_type is not None and object_type not in QUERY_OBJECT_TYPES:
        raise invalid_parameter("ObjectType", object_type)
    if status is not None and status not in QUERY_STATUSES:
        raise invalid_parameter("Status", status)
    start_s = _time(params, "StartTime")
    end_s = _time(params, "EndTime")
    if start_s is not None and end_s is not None and end_s < start_s:
        raise ApiError(400, "InvalidEndTime.Mismatch", "EndTime is earlier than StartTime.")
    return TaskQuery(
        task_id=task_id,
        object_path=params.get("ObjectPath") or None,
        object_type=object_type,
        # Host names compare without case, as the domain sets in the config do.
        domain=domain.strip().lower() if domain else None,
        status=status,
        start_s=start_s,
        end_s=end_s,
        page_number=_bounded(params, "PageNumber", 1, MAX_PAGE_NUMBER),
        page_size=_bounded(params, "PageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    )


def _bounded(params: Mapping[str, str], name: str, default: int, most: int) -> int:
    raw = params.get(name) or ""
    if raw == "":
        return default
    # isascii: str.isdigit also says yes to digits int() refuses, such as "²".
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise invalid_parameter(name, raw)
    return int(raw)


def _time(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name) or ""
    if raw == "":
        return None
    try:
        moment = datetime.strptime(raw, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ApiError(
            400, f"Invalid{name}.Malformed", f"{name} {raw!r} is not yyyy-MM-ddTHH:mm:ssZ."
        ) from None
    return int(moment.timestamp())


def task_fails(seed: int | None, task_id: str, rate: float) -> bool:
    """Whether task ``task_id`` ends Failed: a draw of its own from (seed, task ID).

    Not from the fault plan's generator: drawing there would shift every later fault, so
    turning task failures on would change which calls are throttled.
    """
    if rate <= 0:
        return False
    return random.Random(f"{seed}:{task_id}").random() < rate


def task_status(task: Task, now_s: float, complete_after_s: float) -> tuple[str, str, str]:
    """``(Status, Process, Description)`` of ``task`` at ``now_s``."""
    elapsed_s = now_s - task.created_s
    if elapsed_s < complete_after_s:
        return "Refreshing", f"{min(99, int(100 * elapsed_s / complete_after_s))}%", ""
    if task.fails:
        # Unconfirmed what Process shows for a failed task; 0% keeps it from reading as done.
        return "Failed", "0%", FAILED_DESCRIPTION
    return "Complete", "100%", ""


class TaskBook:
    """Every task handed out, by ID. Not thread-safe: the caller holds the emulator's lock."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: Task) -> None:
        """Keep ``task``."""
        self._tasks[task.task_id] = task

    def clear(self) -> None:
        """Forget every task."""
        self._tasks.clear()

    def unfinished_paths(self, task_type: str, now_s: float, complete_after_s: float) -> int:
        """Paths of the ``task_type`` tasks still under way at ``now_s`` (the preload queue)."""
        return sum(
            len(task.paths)
            for task in self._tasks.values()
            if task.object_type == task_type and now_s - task.created_s < complete_after_s
        )

    def _live(self, task: Task | None, now_s: float) -> bool:
        return task is not None and now_s - task.created_s <= TASK_RETENTION_S

    def by_ids(self, ids: list[str], now_s: float, config: EmulatorConfig) -> list[dict[str, str]]:
        """The entries of the tasks named, in the order named; unknown or expired IDs give
        nothing."""
        tasks = [self._tasks.get(task_id) for task_id in ids]
        return [
            entry(task, path, now_s, config.complete_after_s)
            for task in tasks
            if task is not None and self._live(task, now_s)
            for path in task.paths
        ]

    def search(
        self, query: TaskQuery, now_s: float, config: EmulatorConfig
    ) -> tuple[list[dict[str, str]], int]:
        """One page of the entries ``query`` matches, newest task first, and how many match
        in all."""
        matches = list(self._matching(query, now_s, config.complete_after_s))
        first = (query.page_number - 1) * query.page_size
        return matches[first : first + query.page_size], len(matches)

    def _matching(
        self, query: TaskQuery, now_s: float, complete_after_s: float
    ) -> Iterator[dict[str, str]]:
        # Newest first, as the provider's console lists them; IDs grow with time, so the ID
        # breaks ties between tasks made in the same second.
        for task in sorted(
            self._tasks.values(), key=lambda t: (t.created_s, int(t.task_id)), reverse=True
        ):
            if not self._live(task, now_s) or not _task_matches(task, query):
                continue
            for path in task.paths:
                if query.object_path is not None and path != query.object_path:
                    continue
                item = entry(task, path, now_s, complete_after_s)
                if query.status is None or item["Status"] == query.status:
                    yield item


def _task_matches(task: Task, query: TaskQuery) -> bool:
    # CreationTime is shown to the second, so the time range compares whole seconds too.
    created_s = int(task.created_s)
    return (
        (query.task_id is None or task.task_id == query.task_id)
        and (query.object_type is None or task.object_type == query.object_type)
        and (query.domain is None or task.domain == query.domain)
        and (query.start_s is None or created_s >= query.start_s)
        and (query.end_s is None or created_s <= query.end_s)
    )


def entry(task: Task, path: str, now_s: float, complete_after_s: float) -> dict[str, str]:
    """One ``CDNTask`` entry: the task as seen for one of its paths."""
    status, process, description = task_status(task, now_s, complete_after_s)
    return {
        "TaskId": task.task_id,
        "ObjectPath": path,
        "ObjectType": task.object_type,
        "Status": status,
        "Process": process,
        "Description": description,
        "CreationTime": format_timestamp(datetime.fromtimestamp(task.created_s, UTC)),
    }
