"""The provider's behaviour as plain function calls: parameters in, an :class:`Outcome` out.

No sockets here (see :mod:`emulator.server`) and no lock (see :mod:`emulator.state`), so every
rule can be read, and tested, without HTTP. Per request, in order:

1. a fault is drawn when the action is in ``fault_actions`` (drop, 500, 503), before anything
   is checked, the way an overloaded front end fails;
2. ``Action`` is looked up (404 ``InvalidAction.NotFound``);
3. the signature and freshness are checked (:mod:`emulator.auth`);
4. the action's call rate limit, if ``calls_per_s`` sets one (:mod:`emulator.ratelimit`);
5. the action runs; a drawn ``drop_after_accept`` then throws its answer away.

Tasks and their queries live in :mod:`emulator.tasks`, the read-only actions in
:mod:`emulator.describe`.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator import describe
from emulator.auth import NonceCache, authenticate
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, invalid_parameter, missing_parameter
from emulator.faults import NO_FAULT, Fault, FaultPlan
from emulator.operations import by_kind, served
from emulator.paths import ObjectPath, check_path, distinct_domains, served_as, split_paths
from emulator.quota import DailyQuota, QuotaKind, provider_day
from emulator.ratelimit import CallRate
from emulator.tasks import Task, TaskBook, task_fails

HOST_ID = "cdn.aliyuncs.com"
# Real task IDs are numbers of about ten digits; start there so IDs look like the real ones.
FIRST_TASK_ID = 17_000_000_001
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


def _names_prefix(wire_type: str) -> bool:
    """Whether a call of this ``ObjectType`` named prefixes (Directories) that refresh what
    lies under them."""
    found = served("RefreshObjectCaches", wire_type)
    return found is not None and found[0].prefix_path


def parse_bool(name: str, value: str | None) -> bool:
    """``true``/``false`` in any case (the official SDK sends Python's ``True``)."""
    if value is None or value == "":
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_parameter(name, value)


class Provider:
    """Alibaba Cloud CDN as far as this project uses it. Not thread-safe: see EmulatorState."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self._faults = FaultPlan(config.seed)
        self._nonces = NonceCache()
        self._quota = DailyQuota()
        self._task_ids: Iterator[int] = itertools.count(FIRST_TASK_ID)
        self._tasks = TaskBook()
        self._rates = CallRate()
        self._calls: list[dict[str, Any]] = []
        self._by_outcome: Counter[str] = Counter()
        self._by_action: dict[str, Counter[str]] = {}
        self._actions: dict[str, Callable[[Params, float, str, bool], dict[str, Any]]] = {
            "RefreshObjectCaches": self._refresh_object_caches,
            "DescribeRefreshQuota": self._describe_refresh_quota,
            "DescribeRefreshTaskById": self._describe_refresh_task_by_id,
            "DescribeRefreshTasks": self._describe_refresh_tasks,
            "PushObjectCache": self._push_object_cache,
        }

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
        self._quota.reset()
        self._tasks.clear()
        self._rates.clear()
        self._calls.clear()
        self._by_outcome.clear()
        self._by_action.clear()

    def calls(self) -> list[dict[str, Any]]:
        """Every accepted RefreshObjectCaches call, oldest first (copies)."""
        return [
            {**call, "paths": list(call["paths"]), "task_ids": list(call["task_ids"])}
            for call in self._calls
        ]

    def refreshed(self, paths: list[str]) -> list[dict[str, Any]]:
        """For each path, whether an accepted call refreshed it: as itself (a File call
        naming it, or a Directory call naming that directory), or under an accepted
        Directory that it lies in. The latest such call is the one shown."""
        own: dict[str, dict[str, Any]] = {}
        directories: dict[str, dict[str, Any]] = {}
        for call in self._calls:
            for sent in call["paths"]:
                own[served_as(sent)] = call
                if _names_prefix(call["object_type"]):
                    directories[served_as(sent)] = call
        answers = []
        for asked in paths:
            # Both sides as the CDN serves them: "/x/../a" is "/a", under no "/x/".
            path = served_as(asked)
            body = path.split("?", 1)[0]
            above = [d for d in directories if d != path and body.startswith(d)]
            # The latest refresh of either kind is what the CDN serves from.
            candidates = [("itself", path, own[path])] if path in own else []
            candidates += [("directory", d, directories[d]) for d in above]
            if not candidates:
                answers.append({"path": asked, "refreshed": False, "how": None})
                continue
            how, by, call = max(candidates, key=lambda c: (c[2]["call"], c[0] == "itself"))
            answers.append(
                {
                    "path": asked,
                    "refreshed": True,
                    "how": how,
                    "directory": by if how == "directory" else None,
                    "at": call["time"],
                    "call": call["call"],
                    "task_ids": list(call["task_ids"]),
                }
            )
        return answers

    def stats(self) -> dict[str, Any]:
        """Counters of requests by outcome code, overall and per action, and quota use."""
        day = provider_day(self._clock(), self.config.reset_utc_offset_h)
        return {
            "requests": sum(self._by_outcome.values()),
            "by_outcome": dict(self._by_outcome),
            "by_action": {a: dict(c) for a, c in self._by_action.items()},
            "calls": len(self._calls),
            "tasks": len(self._tasks),
            "quota": self._quota.snapshot(day),
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
        label = action if action in self._actions else "(unknown)"
        try:
            if draw.fault is Fault.DROP:
                self._count(label, DROPPED)
                return Outcome(0, {}, drop=True, delay_s=delay_s)
            if draw.fault is Fault.INTERNAL_ERROR:
                raise ApiError(
                    500,
                    "InternalError",
                    "The request processing has failed due to some unknown error.",
                )
            if draw.fault is Fault.THROTTLE:
                raise ApiError(
                    503,
                    "Throttling",
                    "Request was denied due to request throttling.",
                    {"x-acs-retry-after": str(config.throttle_retry_after_ms)},
                )
            if not action:
                raise missing_parameter("Action")
            run = self._actions.get(action)
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
            body = run(params, now_s, request_id, draw.drop_after_accept)
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

    # -- shared checks -----------------------------------------------------------------------

    def _check_domains(self, domains: list[str]) -> None:
        config = self.config
        for domain in domains:
            if domain in config.offline_domains:
                raise ApiError(404, "InvalidDomain.Offline", f"The domain {domain!r} is offline.")
            if domain in config.unknown_domains or (
                config.known_domains and domain not in config.known_domains
            ):
                raise ApiError(
                    404, "InvalidDomain.NotFound", f"The domain {domain!r} does not exist."
                )

    def _new_tasks(self, paths: list[ObjectPath], object_type: str, now_s: float) -> list[str]:
        """One task per distinct domain, IDs increasing, in order of first appearance."""
        ids: list[str] = []
        for domain in distinct_domains(paths):
            task_id = str(next(self._task_ids))
            group = tuple(p.text for p in paths if p.domain == domain)
            fails = task_fails(self.config.seed, task_id, self.config.task_failure_rate)
            self._tasks.add(Task(task_id, object_type, domain, group, now_s, fails))
            ids.append(task_id)
        return ids

    def _quota_left_to_us(self, kind: QuotaKind) -> int:
        """The daily quota of ``kind`` less what was spent elsewhere on the account."""
        support = by_kind(kind)
        return support.left_to_us(self.config) if support else self.config.push_quota

    def _checked_paths(
        self, raw: str | None, *, directory: bool, per_call: int, what: str
    ) -> list[ObjectPath]:
        lines = split_paths(raw or "")
        if len(lines) > per_call:
            raise ApiError(
                400,
                "InvalidObjectPath.Size.Malformed",
                f"{len(lines)} {what} in one call; at most {per_call} are allowed.",
            )
        max_length = self.config.max_path_length
        return [check_path(line, directory=directory, max_length=max_length) for line in lines]

    # -- actions -----------------------------------------------------------------------------

    def _refresh_object_caches(
        self, params: Params, now_s: float, request_id: str, dropped: bool
    ) -> dict[str, Any]:
        config = self.config
        object_type = params.get("ObjectType") or "File"
        found = served("RefreshObjectCaches", object_type)
        if found is None:
            raise ApiError(
                400,
                "InvalidObjectType.Malformed",
                f"The specified ObjectType {object_type!r} is invalid.",
            )
        op, support = found
        force = parse_bool("Force", params.get("Force"))
        paths = self._checked_paths(
            params.get("ObjectPath"),
            directory=op.prefix_path,
            per_call=int(getattr(config, support.per_call)),
            what=support.what,
        )
        domains = distinct_domains(paths)
        if len(domains) > config.domains_per_call:
            raise ApiError(
                400,
                "SingleRequest.OverLimit",
                f"{len(domains)} domains in one call; at most "
                f"{config.domains_per_call} are allowed.",
            )
        self._check_domains(domains)
        day = provider_day(now_s, config.reset_utc_offset_h)
        kind = support.kind
        limit = self._quota_left_to_us(kind)
        if not self._quota.take(kind, len(paths), limit, day):
            remaining = self._quota.remaining(kind, limit, day)
            raise ApiError(
                400,
                "QuotaExceeded.Refresh",
                f"Your refresh quota for today is not enough: {len(paths)} asked, "
                f"{remaining} left.",
            )
        task_ids = self._new_tasks(paths, object_type.lower(), now_s)
        self._calls.append(
            {
                "call": len(self._calls) + 1,
                "object_type": object_type,
                "force": force,
                "paths": [p.text for p in paths],
                "task_ids": task_ids,
                "request_id": request_id,
                "time": now_s,
                "dropped_response": dropped,
            }
        )
        return {"RefreshTaskId": ",".join(task_ids), "RequestId": request_id}

    def _describe_refresh_quota(
        self, params: Params, now_s: float, request_id: str, dropped: bool
    ) -> dict[str, Any]:
        return describe.refresh_quota(
            self.config, self._quota, self._quota_left_to_us, now_s, request_id
        )

    def _describe_refresh_task_by_id(
        self, params: Params, now_s: float, request_id: str, dropped: bool
    ) -> dict[str, Any]:
        return describe.tasks_by_id(
            self.config, self._tasks, params.get("TaskId"), now_s, request_id
        )

    def _describe_refresh_tasks(
        self, params: Params, now_s: float, request_id: str, dropped: bool
    ) -> dict[str, Any]:
        return describe.tasks_search(self.config, self._tasks, params, now_s, request_id)

    def _push_object_cache(
        self, params: Params, now_s: float, request_id: str, dropped: bool
    ) -> dict[str, Any]:
        config = self.config
        area = params.get("Area", "")
        if area not in ("", "domestic", "overseas"):
            raise invalid_parameter("Area", area)
        paths = self._checked_paths(
            params.get("ObjectPath"), directory=False, per_call=config.push_per_call, what="URLs"
        )
        self._check_domains(distinct_domains(paths))
        day = provider_day(now_s, config.reset_utc_offset_h)
        if not self._quota.take("push", len(paths), config.push_quota, day):
            raise ApiError(
                400, "QuotaExceeded.Preload", "Your prefetch quota for today is not enough."
            )
        task_ids = self._new_tasks(paths, "preload", now_s)
        return {"PushTaskId": ",".join(task_ids), "RequestId": request_id}
