"""The operations table: one row per kind of refresh, and every per-operation fact in it.

A row says how an operation is spelled (by people and JSON, in stored key names, on the
wire), what one provider call may carry, which daily quota it spends (our setting and its
default, the ``quota`` option that changes the stored limit, the provider's fields in
``DescribeRefreshQuota``), what it covers and whether its calls are tracked. The rest of the
code looks the row up and never branches on which operation it is (the way kombu's
``TRANSPORT_ALIASES`` names transports): a new operation is a row here, its support in the
emulator and its tests (docs/development.md).

The floor of the floor: this module imports nothing from the project.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # settings import the constants, which import this table
    from cdn_refresh.settings import Settings


class ObjectType(StrEnum):
    """The name of an operation. The value is the stored and wire spelling (``File``), kept
    as it is: records, batches and jobs in Redis hold it."""

    FILE = "File"
    DIRECTORY = "Directory"
    REGEX = "Regex"
    IGNORE_PARAMS = "IgnoreParams"

    @property
    def label(self) -> str:
        """How people and JSON spell it: ``file``, ``directory``, ``regex``, ..."""
        return OPERATIONS[self].label

    @property
    def op(self) -> Operation:
        """The operation's row."""
        return OPERATIONS[self]

    @classmethod
    def parse(cls, text: str) -> ObjectType:
        """An operation by its label or name, in any case; ValueError otherwise."""
        for op in OPERATIONS.values():
            if text.lower() in (op.label, op.name.value.lower()):
                return op.name
        labels = " or ".join(op.label for op in OPERATIONS.values())
        raise ValueError(f"object type must be {labels}, not {text!r}")


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation's facts. Setting names are the environment variables without the
    ``CDN_REFRESH_`` prefix, read with ``Settings.value_of``."""

    name: ObjectType
    label: str  # people and JSON: `--type file`, `"file": {...}` in `quota --json`
    # The segment of its stored key names (`{cdnr}:dir:pending`). Never change one: a
    # running deployment's queue and quota live under it.
    key_segment: str
    action: str  # the provider action that sends it
    wire_type: str  # the action's `ObjectType` parameter
    paths_per_call: int  # the provider's limit of paths in one call
    domains_per_call: int  # the provider's limit of distinct domains in one call
    # The setting that may lower `paths_per_call`; None where there is nothing to lower (one
    # regex a call).
    per_call_setting: str | None
    quota_setting: str  # the setting of its daily (rolling-window) limit
    default_daily_quota: int
    set_quota_option: str  # the `cdn-refresh quota` option that stores a new limit
    # Its fields in DescribeRefreshQuota: what is left today, and the daily limit.
    provider_remain_field: str
    provider_quota_field: str
    # The operations one of its paths can stand for: a Directory refreshes the Files under it.
    covers: tuple[ObjectType, ...]
    tracked: bool  # its calls are followed to completion (DescribeRefreshTaskById)
    # Its path names everything under it: it ends with "/" and has no query.
    prefix_path: bool
    # Its path after the host is a regular expression, kept as written (cdn_refresh.patterns).
    pattern_path: bool
    # The provider ignores its query string: a query is dropped when its path is normalised,
    # so `/app.js?v=1` and `/app.js?v=2` are one path.
    query_ignored: bool
    force_applies: bool  # the provider honours `Force` for it


FILE: Final = Operation(
    name=ObjectType.FILE,
    label="file",
    key_segment="file",
    action="RefreshObjectCaches",
    wire_type="File",
    paths_per_call=1000,
    domains_per_call=10,
    per_call_setting="URLS_PER_CALL",
    quota_setting="URL_DAILY_QUOTA",
    # The seed document's daily quota (today's accounts often have 10,000 URLs: configurable).
    default_daily_quota=2000,
    set_quota_option="--set-url-quota",
    provider_remain_field="UrlRemain",
    provider_quota_field="UrlQuota",
    covers=(),
    tracked=True,
    prefix_path=False,
    pattern_path=False,
    query_ignored=False,
    force_applies=False,
)
DIRECTORY: Final = Operation(
    name=ObjectType.DIRECTORY,
    label="directory",
    key_segment="dir",
    action="RefreshObjectCaches",
    wire_type="Directory",
    paths_per_call=100,
    domains_per_call=10,
    per_call_setting="DIRECTORIES_PER_CALL",
    quota_setting="DIRECTORY_DAILY_QUOTA",
    default_daily_quota=100,
    set_quota_option="--set-directory-quota",
    provider_remain_field="DirRemain",
    provider_quota_field="DirQuota",
    covers=(ObjectType.FILE,),
    tracked=True,
    prefix_path=True,
    pattern_path=False,
    query_ignored=False,
    force_applies=True,
)

# Paths that match a regular expression (after the host): the provider's own dialect, which
# our check (Python's `re`) only approximates. Outside any coverage.
REGEX: Final = Operation(
    name=ObjectType.REGEX,
    label="regex",
    key_segment="regex",
    action="RefreshObjectCaches",
    wire_type="Regex",
    paths_per_call=1,
    domains_per_call=10,
    per_call_setting=None,
    quota_setting="REGEX_DAILY_QUOTA",
    default_daily_quota=20,
    set_quota_option="--set-regex-quota",
    provider_remain_field="RegexRemain",
    provider_quota_field="RegexQuota",
    covers=(),
    tracked=True,
    prefix_path=False,
    pattern_path=True,
    query_ignored=False,
    force_applies=True,
)
# A URL whatever its query string (`/app.js` for every `?v=`): its query is dropped when it is
# normalised. It would cover pending Files of the same URL; that coverage is not applied yet
# (the claim scripts serve one coverage pair), so it covers nothing here.
IGNORE_PARAMS: Final = Operation(
    name=ObjectType.IGNORE_PARAMS,
    label="ignore-params",
    key_segment="ignore_params",
    action="RefreshObjectCaches",
    wire_type="IgnoreParams",
    paths_per_call=1000,
    domains_per_call=10,
    per_call_setting="IGNORE_PARAMS_PER_CALL",
    quota_setting="IGNORE_PARAMS_DAILY_QUOTA",
    default_daily_quota=100,
    set_quota_option="--set-ignore-params-quota",
    provider_remain_field="IgnoreParamsRemain",
    provider_quota_field="IgnoreParamsQuota",
    covers=(),
    tracked=True,
    prefix_path=False,
    pattern_path=False,
    query_ignored=True,
    force_applies=True,
)

# Every operation by name, in the order people read them (`quota` lists them so).
OPERATIONS: Final[Mapping[ObjectType, Operation]] = MappingProxyType(
    {op.name: op for op in (FILE, DIRECTORY, REGEX, IGNORE_PARAMS)}
)
OBJECT_TYPES: Final = tuple(OPERATIONS)
# The one per-call setting every operation shares.
DOMAINS_PER_CALL_SETTING: Final = "MAX_DOMAINS_PER_CALL"


Table = Mapping[ObjectType, Operation]


def covered_by(name: ObjectType, table: Table = OPERATIONS) -> tuple[ObjectType, ...]:
    """The operations whose paths can stand for a path of ``name`` (a File's Directories)."""
    return tuple(op.name for op in table.values() if name in op.covers)


def counterpart(name: ObjectType, table: Table = OPERATIONS) -> ObjectType:
    """The one operation ``name`` is paired with by coverage, either way (a File's covering
    Directory, a Directory's covered Files): the coverage scripts read both sides' keys.
    An operation outside any coverage is its own pair: the scripts read the other side only
    where coverage applies, so its keys stand in. ValueError when there is more than one (a
    table the scripts cannot yet serve)."""
    pair = set(table[name].covers) | set(covered_by(name, table))
    if not pair:
        return name
    if len(pair) != 1:
        raise ValueError(f"{name} is paired by coverage with {sorted(pair)}, not one operation")
    return pair.pop()


@dataclass(frozen=True, slots=True)
class Coverage:
    """One coverage of the table: a path of ``covering`` refreshes paths of ``covered``."""

    covering: ObjectType
    covered: ObjectType


def coverage(table: Table = OPERATIONS) -> Coverage:
    """The table's one coverage (a Directory covers Files), which promotion and ``plan`` use:
    many pending paths of ``covered`` sent as one of ``covering``. ValueError unless there is
    exactly one (a table they cannot yet serve)."""
    found = [Coverage(op.name, covered) for op in table.values() for covered in op.covers]
    if len(found) != 1:
        raise ValueError(f"promotion needs exactly one coverage in the table, not {found}")
    return found[0]


def daily_quota(settings: Settings, name: ObjectType) -> int:
    """This process's daily limit of one operation, read from its row's setting."""
    return int(settings.value_of(OPERATIONS[name].quota_setting))


def paths_per_call(settings: Settings, op: Operation) -> int:
    """Paths of ``op`` one call carries: its setting, never above the provider's limit."""
    if op.per_call_setting is None:
        return op.paths_per_call
    return min(int(settings.value_of(op.per_call_setting)), op.paths_per_call)


def domains_per_call(settings: Settings, op: Operation) -> int:
    """Distinct domains one call of ``op`` carries: the deployment's setting
    (``MAX_DOMAINS_PER_CALL``), never above the operation's provider limit."""
    setting = int(settings.value_of(DOMAINS_PER_CALL_SETTING))
    return min(setting, op.domains_per_call)
