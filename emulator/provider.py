"""The provider's behaviour as plain function calls: parameters in, an :class:`Outcome` out.

No sockets here (see :mod:`emulator.server`) and no lock (see :mod:`emulator.state`), so every
rule can be read, and tested, without HTTP. Per request, in order:

1. a fault is drawn when the action is in ``fault_actions`` (drop, 500, 503), before anything
   is checked, the way an overloaded front end fails;
2. ``Action`` is looked up (404 ``InvalidAction.NotFound``);
3. the signature and freshness are checked (:mod:`emulator.auth`);
4. the action's call rate limit, if ``calls_per_s`` sets one (:mod:`emulator.ratelimit`);
5. the action runs; a drawn ``drop_after_accept`` then throws its answer away.

The actions themselves are in :mod:`emulator.actions` (one function each, over the rows of
:mod:`emulator.operations`); what the account keeps between calls (quota use, tasks, calls) in
:mod:`emulator.ledger`; tasks and their queries in :mod:`emulator.tasks`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.actions import ACTIONS, Call
from emulator.auth import NonceCache, authenticate
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, missing_parameter
from emulator.faults import NO_FAULT, Fault, FaultPlan
from emulator.ledger import Ledger
from emulator.operations import PRELOAD, REFRESH_ACTION
from emulator.quota import provider_day
from emulator.ratelimit import CallRate
from emulator.refreshed import refreshed

HOST_ID = "cdn.aliyuncs.com"
SUCCESS = "Success"
DROPPED = "Dropped"
DROPPED_AFTER_ACCEPT = "DroppedAfterAccept"

Params = Mapping[str, str]


@dataclass
class Outcome:
    """What to answer: ``status`` and JSON ``body``, or ``drop`` the connection unanswered.

    ``delay_s`` is the injected latency to sleep before either.
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay_s: float = 0.0


def new_request_id() -> str:
    """A request ID in the provider's shape (an upper-case UUID)."""
    return str(uuid.uuid4()).upper()


def error_body(error: ApiError, request_id: str) -> dict[str, Any]:
    """The provider's error JSON."""
    return {
        "Code": error.code,
        "Message": error.message,
        "RequestId": request_id,
        "HostId": HOST_ID,
    }


class Provider:
    """Alibaba Cloud CDN as far as this project uses it. Not thread-safe: see EmulatorState."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._faults = FaultPlan(config.seed)
        self._nonces = NonceCache()
        self._ledger = Ledger()
        self._rates = CallRate()
        self._by_outcome: Counter[str] = Counter()
        self._by_action: dict[str, Counter[str]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def reconfigure(self, config: EmulatorConfig) -> None:
        """Use ``config`` from now on; a new seed restarts the fault sequence."""
        if config.seed != self.config.seed:
            self._faults.reseed(config.seed)
        self.config = config

    def reset(self) -> None:
        """Forget calls, tasks, quota use, nonces, rate windows and counters; restart the fault
        sequence.

        Task IDs keep increasing so that an ID is never handed out twice by one process.
        """
        self._faults.reseed(self.config.seed)
        self._nonces.clear()
        self._ledger.reset()
        self._rates.clear()
        self._by_outcome.clear()
        self._by_action.clear()

    def calls(self, action: str = REFRESH_ACTION) -> list[dict[str, Any]]:
        """Every accepted call of ``action`` (default RefreshObjectCaches; ``"*"`` every
        action), oldest first (copies)."""
        return self._ledger.calls(action)

    def refreshed(self, paths: list[str]) -> list[dict[str, Any]]:
        """For each path, whether an accepted refresh reached it (see :mod:`emulator.refreshed`):
        as itself, under a Directory, matched by a Regex, or with another query (IgnoreParams).
        The latest such call is the one shown."""
        return refreshed(paths, self._ledger.calls(REFRESH_ACTION))

    def stats(self) -> dict[str, Any]:
        """Counters of requests by outcome code, overall and per action, accepted calls per
        action, quota use per counter and the preload queue."""
        now_s = self._clock()
        day = provider_day(now_s, self.config.reset_utc_offset_h)
        by_action = self._ledger.calls_by_action()
        return {
            "requests": sum(self._by_outcome.values()),
            "by_outcome": dict(self._by_outcome),
            "by_action": {a: dict(c) for a, c in self._by_action.items()},
            "calls": by_action.get(REFRESH_ACTION, 0),
            "calls_by_action": by_action,
            "tasks": len(self._ledger.tasks),
            "quota": self._ledger.quota.snapshot(day),
            "preload_queued": self._ledger.tasks.unfinished_paths(
                PRELOAD.task_type, now_s, self.config.complete_after_s
            ),
        }

    # -- one request -------------------------------------------------------------------------

    def handle(self, method: str, params: Params) -> Outcome:
        """Answer one API request made with HTTP ``method`` and these parameters."""
        now_s = self._clock()
        request_id = new_request_id()
        config = self.config
        action = params.get("Action", "")
        in_scope = bool(action) and config.faults_apply_to(action)
        draw = self._faults.draw(config) if in_scope else NO_FAULT
        delay_s = config.latency_s if in_scope else 0.0
        label = action if action in ACTIONS else "(unknown)"
        try:
            if draw.fault is Fault.DROP:
                self._count(label, DROPPED)
                return Outcome(0, {}, drop=True, delay_s=delay_s)
            _raise_drawn(draw.fault, config)
            if not action:
                raise missing_parameter("Action")
            run = ACTIONS.get(action)
            if run is None:
                raise ApiError(
                    404,
                    "InvalidAction.NotFound",
                    f"Specified api {action!r} is not found, please check your url and method.",
                )
            authenticate(method, params, config, self._nonces, now_s)
            # After authentication: the provider limits calls per account, so it has to know
            # whose call it is first.
            self._rates.admit(action, config.calls_per_s.get(action), now_s)
            call = Call(config, self._ledger, params, now_s, request_id, draw.drop_after_accept)
            body = run(call)
        except ApiError as error:
            self._count(label, error.code)
            headers = {**error.headers, "x-acs-request-id": request_id}
            return Outcome(error.status, error_body(error, request_id), headers, delay_s=delay_s)
        if draw.drop_after_accept:
            self._count(label, DROPPED_AFTER_ACCEPT)
            return Outcome(200, body, drop=True, delay_s=delay_s)
        self._count(label, SUCCESS)
        return Outcome(200, body, {"x-acs-request-id": request_id}, delay_s=delay_s)

    def _count(self, action: str, code: str) -> None:
        self._by_outcome[code] += 1
        self._by_action.setdefault(action, Counter())[code] += 1


def _raise_drawn(fault: Fault, config: EmulatorConfig) -> None:
    """Answer a drawn InternalError or Throttling before anything is checked."""
    if fault is Fault.INTERNAL_ERROR:
        raise ApiError(
            500, "InternalError", "The request processing has failed due to some unknown error."
        )
    if fault is Fault.THROTTLE:
        raise ApiError(
            503,
            "Throttling",
            "Request was denied due to request throttling.",
            {"x-acs-retry-after": str(config.throttle_retry_after_ms)},
        )
