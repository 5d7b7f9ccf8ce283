"""What the emulated account keeps between calls: quota use, tasks and the accepted calls.

The actions (:mod:`emulator.actions`) spend and record through it; the admin endpoints read
it. Not thread-safe: the caller holds the emulator's lock.
"""

from __future__ import annotations

import itertools
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from typing import Any

from emulator.config import EmulatorConfig
from emulator.errors import ApiError
from emulator.quota import COUNTERS, DailyQuota, QuotaKind, provider_day
from emulator.tasks import Task, TaskBook, task_fails

# Real task IDs are numbers of about ten digits; start there so IDs look like the real ones.
FIRST_TASK_ID = 17_000_000_001
#: In ``calls(action=...)``, every action.
EVERY_ACTION = "*"


class Ledger:
    """Quota use, tasks and accepted calls of the one emulated account."""

    def __init__(self) -> None:
        self.quota = DailyQuota()
        self.tasks = TaskBook()
        self._task_ids: Iterator[int] = itertools.count(FIRST_TASK_ID)
        self._calls: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget quota use, tasks and calls. Task IDs keep increasing, so that an ID is never
        handed out twice by one process."""
        self.quota.reset()
        self.tasks.clear()
        self._calls.clear()

    # -- quota -----------------------------------------------------------------------------

    def remaining(self, kind: QuotaKind, config: EmulatorConfig, now_s: float) -> int:
        """What is left today of ``kind`` to us (less what was spent elsewhere)."""
        day = provider_day(now_s, config.reset_utc_offset_h)
        return self.quota.remaining(kind, COUNTERS[kind].left_to_us(config), day)

    def spend(self, kind: QuotaKind, count: int, config: EmulatorConfig, now_s: float) -> None:
        """Use ``count`` of today's ``kind``, or raise its counter's error and use nothing."""
        counter = COUNTERS[kind]
        day = provider_day(now_s, config.reset_utc_offset_h)
        if not self.quota.take(kind, count, counter.left_to_us(config), day):
            left = self.remaining(kind, config, now_s)
            raise ApiError(
                400,
                counter.spent_code,
                f"Your quota of {counter.what} for today is not enough: {count} asked, "
                f"{left} left.",
            )

    # -- tasks -----------------------------------------------------------------------------

    def new_tasks(
        self,
        groups: Sequence[tuple[str, tuple[str, ...]]],
        task_type: str,
        config: EmulatorConfig,
        now_s: float,
    ) -> list[str]:
        """One task per ``(domain, paths)`` group, IDs increasing in the order given."""
        ids: list[str] = []
        for domain, paths in groups:
            task_id = str(next(self._task_ids))
            fails = task_fails(config.seed, task_id, config.task_failure_rate)
            self.tasks.add(Task(task_id, task_type, domain, paths, now_s, fails))
            ids.append(task_id)
        return ids

    # -- calls -----------------------------------------------------------------------------

    def record(self, action: str, request_id: str, now_s: float, **facts: Any) -> None:
        """Keep one accepted call: its action, number, time and what it asked."""
        self._calls.append(
            {
                "call": len(self._calls) + 1,
                "action": action,
                **facts,
                "request_id": request_id,
                "time": now_s,
            }
        )

    def calls(self, action: str) -> list[dict[str, Any]]:
        """The accepted calls of ``action`` (``"*"``: all), oldest first (copies)."""
        return [
            {k: list(v) if isinstance(v, list) else v for k, v in call.items()}
            for call in self._calls
            if action in (EVERY_ACTION, call["action"])
        ]

    def calls_by_action(self) -> dict[str, int]:
        """How many calls of each action were accepted."""
        return dict(Tally(call["action"] for call in self._calls))
