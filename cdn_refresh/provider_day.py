"""The provider's day: its daily refresh quota starts again at 00:00 in UTC+8.

The one definition of when that is, for the worker's policy (a spent quota holds until the
reset) and for the store (a count the provider gave before its last reset says nothing).
The claim script takes the last reset as an argument and adds a day itself.
"""

from __future__ import annotations

from typing import Final

from cdn_refresh.constants import PROVIDER_RESET_UTC_OFFSET_H

# A fixed offset: UTC+8 keeps no daylight saving, so every provider day is this long.
PROVIDER_DAY_S: Final = 24 * 60 * 60
_OFFSET_S: Final = PROVIDER_RESET_UTC_OFFSET_H * 60 * 60


def last_reset(now: float) -> float:
    """When the provider last reset its daily count, as a Unix time (``now`` itself at the
    very moment of a reset)."""
    return (now + _OFFSET_S) // PROVIDER_DAY_S * PROVIDER_DAY_S - _OFFSET_S


def next_reset(now: float) -> float:
    """When the provider next resets its daily count, as a Unix time."""
    return last_reset(now) + PROVIDER_DAY_S


def seconds_until_reset(now: float) -> float:
    """Seconds from ``now`` until the provider's next reset (a whole day at a reset)."""
    return next_reset(now) - now
