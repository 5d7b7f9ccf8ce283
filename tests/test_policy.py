"""The policy table decides what every answer does and how long the work waits: one row per
error class, each row's wait as documented, the docs' table made from the rows, and no
decision of the kind anywhere else in the code."""

from __future__ import annotations

import ast
import inspect
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdn_refresh import provider_day
from tests.conftest import make_settings
from worker import errors
from worker.policy import (
    ON_HANDED_BACK,
    ON_LEASE_EXPIRED,
    ON_OUR_BUG,
    ON_SPLIT_BUDGET_SPENT,
    POLICIES,
    Action,
    Policy,
    WaitFacts,
    policy_for,
    table_markdown,
)

ROOT = Path(__file__).resolve().parent.parent
# Where the code that could decide something lives (the emulator plays the provider).
DECIDING_PACKAGES = ("cdn_refresh", "worker", "producer", "api")
POLICY = "worker/policy.py"
# A receiver's retries are not a provider's answer: webhook deliveries keep their own backoff.
OWN_BACKOFF = {"worker/webhooks.py"}
# The settings only a row's wait may read (and the settings model, which defines them).
# (``settings.retry.base_delay_s``: the retry group's; the webhooks' are ``retry_base_delay_s``.)
WAIT_SETTINGS = {"base_delay_s", "max_delay_s", "auth_hold_max_s"}
SETTINGS = "cdn_refresh/settings/work.py"

ERROR_CLASSES = {
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.CdnError) and cls.__module__ == errors.__name__
}
SUBCLASS_NAMES = {cls.__name__ for cls in ERROR_CLASSES} - {"CdnError"}
# 2026-12-04 15:00 UTC is 23:00 in UTC+8: an hour before the provider's reset.
AN_HOUR_BEFORE_RESET = datetime(2026, 12, 4, 15, 0, tzinfo=UTC).timestamp()
AT_RESET = datetime(2026, 12, 4, 16, 0, tzinfo=UTC).timestamp()


class _Edge(random.Random):
    """Jitter pinned to the top (or the bottom) of its range."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


def _facts(top: bool = True, **given: object) -> WaitFacts:
    settings = make_settings(retry_base_delay_s=1, retry_max_delay_s=60, auth_hold_max_s=300)
    return WaitFacts(settings.retry, _Edge(top), **given)  # type: ignore[arg-type]


def test_every_error_class_has_exactly_one_row() -> None:
    assert set(POLICIES) == ERROR_CLASSES
    for cls in ERROR_CLASSES:
        # Only the class counts, not what it was raised with.
        assert policy_for(cls.__new__(cls)) is POLICIES[cls]


RETRYABLE = [errors.RetryableError, errors.NetworkError, errors.RequestShapeError, errors.CdnError]
HOLDS_ALL = [errors.CredentialError, errors.UnreachableError, errors.HoldError]


@pytest.mark.parametrize(
    ("classes", "given", "top", "expected_s"),
    [
        # Jittered backoff: up to 1 s * 2^(attempt-1), capped at 60 s, from 0.
        (RETRYABLE, {"attempts": 1}, True, 1.0),
        (RETRYABLE, {"attempts": 0}, True, 1.0),
        (RETRYABLE, {"attempts": 3}, True, 4.0),
        (RETRYABLE, {"attempts": 8}, True, 60.0),
        (RETRYABLE, {"attempts": 3}, False, 0.0),
        # The provider's x-acs-retry-after is a floor, even above the cap.
        (RETRYABLE, {"attempts": 1, "retry_after_s": 90.0}, True, 90.0),
        (RETRYABLE, {"attempts": 3, "retry_after_s": 2.5}, False, 2.5),
        # Until the provider's reset, 00:00 UTC+8; a whole day at the reset itself.
        ([errors.QuotaExhaustedError], {"now": AN_HOUR_BEFORE_RESET}, True, 3600.0),
        ([errors.QuotaExhaustedError], {"now": AT_RESET}, True, 86400.0),
        (
            [errors.QuotaExhaustedError],
            {"now": AN_HOUR_BEFORE_RESET, "provider_left": 0, "batch_paths": 10},
            True,
            3600.0,
        ),
        (
            [errors.QuotaExhaustedError],
            {"now": AN_HOUR_BEFORE_RESET, "provider_left": 20, "batch_paths": 10},
            True,
            3600.0,
        ),
        # Some left, but less than the call carried: the claims take what is left soon.
        (
            [errors.QuotaExhaustedError],
            {"now": AN_HOUR_BEFORE_RESET, "provider_left": 5, "batch_paths": 10},
            True,
            1.0,
        ),
        # A doubling hold: 1 s, 2 s, 4 s ... up to AUTH_HOLD_MAX_S (300 s).
        (HOLDS_ALL, {"failures": 1}, True, 1.0),
        (HOLDS_ALL, {"failures": 2}, True, 2.0),
        (HOLDS_ALL, {"failures": 9}, True, 256.0),
        (HOLDS_ALL, {"failures": 10}, True, 300.0),
        (HOLDS_ALL, {"failures": 10_000}, True, 300.0),
        ([errors.RejectedPathError], {"attempts": 5, "failures": 5}, True, 0.0),
    ],
)
def test_each_rows_wait_is_the_documented_one(
    classes: list[type[errors.CdnError]], given: dict[str, object], top: bool, expected_s: float
) -> None:
    for cls in classes:
        assert POLICIES[cls].wait_s(_facts(top, **given)) == pytest.approx(expected_s), cls


def test_the_quota_hold_is_at_least_a_second_when_the_base_delay_is_shorter() -> None:
    facts = _facts(now=AN_HOUR_BEFORE_RESET, provider_left=5, batch_paths=10)
    settings = make_settings(retry_base_delay_s=0.01, retry_max_delay_s=1)
    assert POLICIES[errors.QuotaExhaustedError].wait_s(
        WaitFacts(settings.retry, facts.rng, now=facts.now, provider_left=5, batch_paths=10)
    ) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("cls", "action", "quota_back", "attempt"),
    [
        (errors.RejectedPathError, Action.SPLIT, True, True),
        (errors.QuotaExhaustedError, Action.HOLD_TYPE, True, False),
        (errors.CredentialError, Action.HOLD_ALL, True, False),
        (errors.UnreachableError, Action.HOLD_ALL, True, False),
        (errors.HoldError, Action.HOLD_ALL, True, False),
        (errors.RetryableError, Action.RETRY, True, True),
        (errors.NetworkError, Action.RETRY, True, True),
        (errors.RequestShapeError, Action.RETRY, True, True),
        (errors.CdnError, Action.RETRY, True, True),
    ],
)
def test_each_row_says_what_happens_whether_units_come_back_and_an_attempt_is_spent(
    cls: type[errors.CdnError], action: Action, quota_back: bool, attempt: bool
) -> None:
    row = POLICIES[cls]
    assert (row.action, row.returns_quota, row.spends_attempt) == (action, quota_back, attempt)


@pytest.mark.parametrize(
    ("row", "quota_back", "attempt"),
    [
        (ON_OUR_BUG, False, True),
        (ON_LEASE_EXPIRED, False, True),
        (ON_HANDED_BACK, True, False),
        (ON_SPLIT_BUDGET_SPENT, True, True),
    ],
)
def test_the_rows_for_lost_and_handed_back_batches_keep_what_may_have_been_spent(
    row: Policy, quota_back: bool, attempt: bool
) -> None:
    assert (row.returns_quota, row.spends_attempt) == (quota_back, attempt)


def test_one_definition_of_the_provider_day_agrees_with_the_calendar() -> None:
    assert provider_day.last_reset(AN_HOUR_BEFORE_RESET) == AT_RESET - 86_400
    assert provider_day.next_reset(AN_HOUR_BEFORE_RESET) == AT_RESET
    assert provider_day.last_reset(AT_RESET) == AT_RESET
    assert provider_day.seconds_until_reset(AT_RESET - 0.5) == pytest.approx(0.5)


def test_the_docs_table_is_made_from_the_rows() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert any(table_markdown() in p.read_text(encoding="utf-8") for p in docs if p.exists()), (
        "paste worker.policy.table_markdown() into the docs' table of answers"
    )


def _deciding_files() -> list[tuple[str, ast.Module]]:
    found = []
    for pkg in DECIDING_PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel != POLICY:
                found.append((rel, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def _names(node: ast.expr | None) -> set[str]:
    """The class names an ``isinstance`` or an ``except`` names (one, or a tuple of them)."""
    if node is None:
        return set()
    parts = node.elts if isinstance(node, ast.Tuple) else [node]
    return {p.id if isinstance(p, ast.Name) else getattr(p, "attr", "") for p in parts}


def _decisions(rel: str, tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
            and len(node.args) == 2
            and _names(node.args[1]) & SUBCLASS_NAMES
        ):
            found.append(f"{where} dispatches on an error class")
        if isinstance(node, ast.ExceptHandler) and _names(node.type) & SUBCLASS_NAMES:
            found.append(f"{where} catches an error class the table decides for")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Pow)
            and isinstance(node.left, ast.Constant)
            and node.left.value == 2
            and rel not in OWN_BACKOFF
        ):
            found.append(f"{where} computes a backoff")
        if isinstance(node, ast.Attribute) and node.attr in WAIT_SETTINGS and rel != SETTINGS:
            found.append(f"{where} reads {node.attr}, which only a row's wait may")
    return found


def test_no_policy_decision_is_made_outside_the_table() -> None:
    offenders = [
        found
        for rel, tree in _deciding_files()
        if rel != "worker/errors.py"  # the table's classes, and which code is which
        for found in _decisions(rel, tree)
    ]
    assert offenders == []


def test_the_guard_sees_the_decisions_it_forbids() -> None:
    tree = ast.parse(
        "try:\n    pass\nexcept RejectedPathError:\n    pass\n"
        "if isinstance(exc, (CredentialError, KeyError)):\n    pass\n"
        "seconds = min(s.auth_hold_max_s, 1 * 2 ** failures)\n"
    )
    found = _decisions("worker/elsewhere.py", tree)
    assert len(found) == 4, found
