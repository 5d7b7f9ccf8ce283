"""What the emulator serves, as rows: every ``ObjectType`` of ``RefreshObjectCaches``
(:data:`REFRESH_TYPES`), and the actions that refresh or preload otherwise
(:data:`TAG_REFRESH`, :data:`PRELOAD`). A row names the daily counter it spends
(:data:`emulator.quota.COUNTERS`), the config field of its per-call limit, the ``ObjectType``
its tasks show, and how one of its paths reaches the objects the CDN serves. The actions in
:mod:`emulator.actions` read the rows and never branch on which one it is.

Every row takes its facts from the project's operations table
(:mod:`cdn_refresh.operations`): its wire type, whether its path names a prefix and whether
``Force`` applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from cdn_refresh.operations import OPERATIONS, ObjectType
from emulator.config import REFRESH_ACTION
from emulator.quota import COUNTERS, Counter, QuotaKind

__all__ = ["PRELOAD", "REFRESH_ACTION", "REFRESH_TYPES", "SUPPORT", "TAG_REFRESH", "served"]
# How a sent path reaches a served one (see emulator.refreshed): the path itself, everything
# under a directory, every path a regular expression matches, or the path whatever its query.
Reach = Literal["itself", "directory", "regex", "ignore_params"]


@dataclass(frozen=True, slots=True)
class RefreshType:
    """One ``ObjectType`` of ``RefreshObjectCaches``."""

    wire_type: str  # its ObjectType parameter
    task_type: str  # the ObjectType its tasks show in DescribeRefreshTaskById
    kind: QuotaKind  # the daily counter it spends
    per_call: str  # the config field of its paths per call
    prefix_path: bool  # its path names a directory: it must end with "/"
    force_applies: bool  # the provider honours Force for it (accepted, and ignored, otherwise)
    reach: Reach

    @property
    def counter(self) -> Counter:
        """Its daily counter's row."""
        return COUNTERS[self.kind]

    @property
    def what(self) -> str:
        """Its paths in an error message ("URLs")."""
        return self.counter.what


@dataclass(frozen=True, slots=True)
class ActionRow:
    """An action other than ``RefreshObjectCaches`` that hands out tasks and spends a counter."""

    action: str
    kind: QuotaKind
    task_type: str  # the ObjectType its tasks show
    answer_field: str  # the field of its answer that holds the task IDs
    per_call: str | None  # the config field of its units per call (None: no limit documented)
    queue_limit: str | None  # the config field of its unfinished units per account, if any

    @property
    def counter(self) -> Counter:
        """Its daily counter's row."""
        return COUNTERS[self.kind]


def _from_project(name: ObjectType, kind: QuotaKind, per_call: str, reach: Reach) -> RefreshType:
    op = OPERATIONS[name]
    return RefreshType(
        op.wire_type, op.wire_type.lower(), kind, per_call, op.prefix_path, op.force_applies, reach
    )


#: Every ObjectType RefreshObjectCaches takes, by its wire spelling; any other is refused
#: (``InvalidObjectType.Malformed``).
REFRESH_TYPES: Final[Mapping[str, RefreshType]] = MappingProxyType(
    {
        row.wire_type: row
        for row in (
            _from_project(ObjectType.FILE, "url", "urls_per_call", "itself"),
            _from_project(ObjectType.DIRECTORY, "dir", "directories_per_call", "directory"),
            _from_project(ObjectType.REGEX, "regex", "regexes_per_call", "regex"),
            # The current Chinese reference page's name; the SDK's docstrings say ExQuery
            # (PROVIDER.md: unclear). The provider's task type for it is not documented:
            # "ignoreparams" here.
            _from_project(
                ObjectType.IGNORE_PARAMS, "ignore_params", "ignore_params_per_call", "ignore_params"
            ),
        )
    }
)

#: ``RefreshObjectCacheByCacheTag``: tags of one domain; no per-call limit is documented. The
#: ObjectType its tasks show is not documented either: "tag" here.
TAG_REFRESH: Final = ActionRow(
    "RefreshObjectCacheByCacheTag", "tag", "tag", "RefreshTaskId", None, None
)
#: ``PushObjectCache``: preload, with its own counter and a per-account queue.
PRELOAD: Final = ActionRow(
    "PushObjectCache", "preload", "preload", "PushTaskId", "preload_per_call", "preload_queue_limit"
)

#: The project's operations the emulator serves, by name (every row of the project's table
#: whose wire type is served).
SUPPORT: Final[Mapping[ObjectType, RefreshType]] = MappingProxyType(
    {
        name: REFRESH_TYPES[op.wire_type]
        for name, op in OPERATIONS.items()
        if op.action == REFRESH_ACTION and op.wire_type in REFRESH_TYPES
    }
)


def served(action: str, wire_type: str) -> RefreshType | None:
    """The row ``action`` with this ``ObjectType`` is served by, if the emulator serves it."""
    return REFRESH_TYPES.get(wire_type) if action == REFRESH_ACTION else None
