"""Which fault, if any, hits a request: drawn from a seeded generator so tests repeat.

Every request in scope draws exactly two numbers, whatever the outcome, so that the sequence of
faults depends only on the seed and the number of such requests, not on what they asked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from emulator.config import EmulatorConfig


class Fault(Enum):
    """A fault decided before validation; ``NONE`` lets the request through."""

    NONE = "none"
    DROP = "drop"
    INTERNAL_ERROR = "internal_error"
    THROTTLE = "throttle"


@dataclass(frozen=True)
class FaultDraw:
    """The decision for one request: an early fault, and whether to drop the answer to a
    request that was accepted."""

    fault: Fault
    drop_after_accept: bool


NO_FAULT = FaultDraw(Fault.NONE, drop_after_accept=False)


class FaultPlan:
    """A seeded source of :class:`FaultDraw`. Not thread-safe: the caller holds the lock."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        """Start the sequence again from ``seed``."""
        self._rng = random.Random(seed)

    def draw(self, config: EmulatorConfig) -> FaultDraw:
        """One decision; the early faults share one number, split into bands by their rates."""
        early, late = self._rng.random(), self._rng.random()
        fault = Fault.NONE
        bound = 0.0
        for rate, kind in (
            (config.drop_rate, Fault.DROP),
            (config.internal_error_rate, Fault.INTERNAL_ERROR),
            (config.throttle_rate, Fault.THROTTLE),
        ):
            bound += rate
            if early < bound:
                fault = kind
                break
        return FaultDraw(fault, drop_after_accept=late < config.drop_after_accept_rate)
