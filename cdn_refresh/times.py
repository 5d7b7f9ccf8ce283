"""Times as a person reads them: local ISO time and how long ago (or from now).

The human output of the CLI shows these; ``--json`` and the API keep seconds since the epoch.
"""

from __future__ import annotations

import datetime as dt
import time

# Keys of the JSON documents that hold a time (seconds since the epoch).
TIME_KEYS = frozenset(
    {"submitted_at", "cooling_until", "completed_at", "created_at", "estimated_at", "failed_at"}
)


def local_iso(epoch: float) -> str:
    """``2026-12-04T16:02:11+01:00``: the local time, to the second, with its offset."""
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def age(seconds: float) -> str:
    """``42 s``, ``3 min``, ``5 h``, ``2 days``: rounded down to its largest unit."""
    seconds = abs(seconds)
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def shown_time(epoch: float, now: float | None = None) -> str:
    """``<local ISO time> (<age> ago)``, or ``(in <age>)`` for a time still to come."""
    delta = (time.time() if now is None else now) - epoch
    when = f"{age(delta)} ago" if delta >= 0 else f"in {age(delta)}"
    return f"{local_iso(epoch)} ({when})"
