"""Per-action call rate limits (``calls_per_s`` in the config): a sliding one-second window.

The provider documents a calls-per-second limit per account for most actions (5 for
DescribeRefreshTasks, 30 for DescribeRefreshTaskById, 50 for RefreshObjectCaches). The
emulator applies one only when the config names the action, so existing tests see no change.
"""

from __future__ import annotations

from collections import deque

from emulator.errors import ApiError

WINDOW_S = 1.0


def throttled(action: str, limit: int) -> ApiError:
    """503 ``Throttling``, the code PROVIDER.md lists for request throttling.

    No ``x-acs-retry-after``: the provider is not documented to send one for this limit, and a
    header the real answer may lack would teach a client to rely on it.
    """
    return ApiError(
        503,
        "Throttling",
        f"Request was denied due to request throttling: {action} allows {limit} calls per second.",
    )


class CallRate:
    """Accepted calls per action in the last second. Not thread-safe: the caller holds the
    emulator's lock."""

    def __init__(self) -> None:
        self._recent: dict[str, deque[float]] = {}

    def admit(self, action: str, limit: int | None, now_s: float) -> None:
        """Count a call to ``action``, or raise :func:`throttled` if ``limit`` calls were
        admitted in the last second. Refused calls do not count, so a client that keeps
        retrying gets through once the window moves on."""
        if limit is None:
            return
        recent = self._recent.setdefault(action, deque())
        while recent and recent[0] <= now_s - WINDOW_S:
            recent.popleft()
        if len(recent) >= limit:
            raise throttled(action, limit)
        recent.append(now_s)

    def clear(self) -> None:
        """Forget every call."""
        self._recent.clear()
