"""The emulator's shared state: one :class:`Provider` behind a lock, for many server threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from emulator.config import EmulatorConfig
from emulator.operations import REFRESH_ACTION
from emulator.provider import Outcome, Provider


class EmulatorState:
    """Thread-safe access to the emulated provider: answer requests, read and change it."""

    def __init__(
        self, config: EmulatorConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._provider = Provider(config or EmulatorConfig(), clock)

    @property
    def config(self) -> EmulatorConfig:
        """The settings in force (immutable; change them with :meth:`configure`)."""
        with self._lock:
            return self._provider.config

    def handle(self, method: str, params: Mapping[str, str]) -> Outcome:
        """Answer one API request (see :meth:`Provider.handle`)."""
        with self._lock:
            return self._provider.handle(method, params)

    def calls(self, action: str = REFRESH_ACTION) -> list[dict[str, Any]]:
        """Every accepted call of ``action`` (default RefreshObjectCaches; ``"*"`` every
        action), oldest first."""
        with self._lock:
            return self._provider.calls(action)

    def refreshed(self, paths: list[str]) -> list[dict[str, Any]]:
        """Whether each path was refreshed, as itself or under a Directory (tests, bench)."""
        with self._lock:
            return self._provider.refreshed(paths)

    def stats(self) -> dict[str, Any]:
        """Request counters by outcome code, accepted calls per action, quota use per counter
        and the preload queue."""
        with self._lock:
            return self._provider.stats()

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change settings by field name; raises ``pydantic.ValidationError`` on a bad one."""
        with self._lock:
            config = self._provider.config.updated(**changes)
            self._provider.reconfigure(config)
            return config

    def reset(self) -> None:
        """Forget calls, quota use, tasks, nonces and counters; restart the fault sequence."""
        with self._lock:
            self._provider.reset()
