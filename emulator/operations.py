"""What the emulator needs to serve each refresh operation beside its row of the operations
table (:mod:`cdn_refresh.operations`): the daily counter it spends, and the config fields of
its quota and per-call limit. A new operation the emulator serves is one entry here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from cdn_refresh.operations import OPERATIONS, ObjectType, Operation
from emulator.config import EmulatorConfig
from emulator.quota import QuotaKind


@dataclass(frozen=True, slots=True)
class Support:
    """How the emulator serves one operation."""

    kind: QuotaKind  # the daily counter it spends
    quota: str  # the config field of its daily quota
    spent_elsewhere: str  # the config field of the units other users spent
    per_call: str  # the config field of its paths per call
    what: str  # its paths in an error message ("URLs")

    def daily_quota(self, config: EmulatorConfig) -> int:
        """Its daily quota as configured."""
        return int(getattr(config, self.quota))

    def left_to_us(self, config: EmulatorConfig) -> int:
        """Its daily quota less what was spent elsewhere on the account."""
        return max(0, self.daily_quota(config) - int(getattr(config, self.spent_elsewhere)))


SUPPORT: Final[Mapping[ObjectType, Support]] = MappingProxyType(
    {
        ObjectType.FILE: Support(
            "url", "url_quota", "url_spent_elsewhere", "urls_per_call", "URLs"
        ),
        ObjectType.DIRECTORY: Support(
            "dir", "dir_quota", "dir_spent_elsewhere", "directories_per_call", "directories"
        ),
    }
)


def served(action: str, wire_type: str) -> tuple[Operation, Support] | None:
    """The operation ``action`` sends with this ``ObjectType``, if the emulator serves it."""
    for name, support in SUPPORT.items():
        op = OPERATIONS[name]
        if op.action == action and op.wire_type == wire_type:
            return op, support
    return None


def by_kind(kind: QuotaKind) -> Support | None:
    """The operation that spends the daily counter ``kind``, if any."""
    return next((s for s in SUPPORT.values() if s.kind == kind), None)
