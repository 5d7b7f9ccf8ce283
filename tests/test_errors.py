"""Every provider error code in PROVIDER.md maps to the class that says what to do about it."""

from __future__ import annotations

import pytest

from worker.errors import (
    CdnError,
    CredentialError,
    HoldError,
    NetworkError,
    QuotaExhaustedError,
    RejectedPathError,
    RequestShapeError,
    RetryableError,
    error_for,
)
from worker.policy import Action, policy_for

# (code, HTTP status the provider sends it with, expected class), straight from PROVIDER.md.
DOCUMENTED = [
    ("InternalError", 500, RetryableError),
    ("ServiceUnavailable", 503, RetryableError),
    ("Throttling", 503, RetryableError),
    ("Throttling", 400, RetryableError),
    ("TooManyRequests", 429, RetryableError),
    ("ServiceBusy", 403, RetryableError),
    ("QuotaPerMinuteExceeded.Refresh", 400, RetryableError),
    ("TooMany.Refresh", 400, RetryableError),
    ("QuotaExceeded.Refresh", 400, QuotaExhaustedError),
    ("InvalidObjectPath.Malformed", 400, RejectedPathError),
    ("InvalidDomain.NotFound", 404, RejectedPathError),
    ("InvalidDomain.Offline", 404, RejectedPathError),
    ("InvalidExtensiveDomain.ValueNotSupported", 400, RejectedPathError),
    ("SignatureDoesNotMatch", 400, CredentialError),
    ("SignatureDoesNotMatch", 403, CredentialError),
    ("InvalidAccessKeyId.NotFound", 404, CredentialError),
    ("Forbidden.RAM", 403, CredentialError),
    ("OperationDenied", 403, CredentialError),
    ("IllegalOperation", 403, CredentialError),
    ("InvalidTimeStamp.Expired", 400, CredentialError),
    ("SignatureNonceUsed", 400, CredentialError),
    ("InvalidObjectPath.Size.Malformed", 400, RequestShapeError),
    ("SingleRequest.OverLimit", 400, RequestShapeError),
    ("InvalidObjectType.Malformed", 400, RequestShapeError),
    ("MissingParameter", 400, RequestShapeError),
]
_IDS = [f"{code}-{status}" for code, status, _ in DOCUMENTED]


@pytest.mark.parametrize(("code", "status", "expected"), DOCUMENTED, ids=_IDS)
def test_documented_code_maps_to_its_class(
    code: str, status: int, expected: type[CdnError]
) -> None:
    error = error_for(code, "provider says no", status, request_id="req-1")
    assert type(error) is expected
    assert error.code == code
    assert error.message == "provider says no"
    assert error.status_code == status
    assert error.request_id == "req-1"
    assert str(error) == f"{code}: provider says no"


@pytest.mark.parametrize(("code", "status", "expected"), DOCUMENTED, ids=_IDS)
def test_each_error_has_exactly_one_outcome(
    code: str, status: int, expected: type[CdnError]
) -> None:
    error = error_for(code, "", status)
    outcomes = [isinstance(error, c) for c in (RetryableError, HoldError, RejectedPathError)]
    assert outcomes.count(True) == 1
    assert isinstance(error, QuotaExhaustedError) is (code == "QuotaExceeded.Refresh")


@pytest.mark.parametrize(
    ("error_class", "action", "quota_back"),
    [
        (RejectedPathError, Action.SPLIT, True),
        (QuotaExhaustedError, Action.HOLD_TYPE, True),
        (CredentialError, Action.HOLD_ALL, True),
        (RequestShapeError, Action.RETRY, True),
        (RetryableError, Action.RETRY, True),
        (CdnError, Action.RETRY, True),
    ],
)
def test_the_policy_table_says_what_each_error_class_does(
    error_class: type[CdnError], action: Action, quota_back: bool
) -> None:
    error = error_class("Some.Code")
    assert policy_for(error).action is action
    assert policy_for(error).quota_back(error) is quota_back


def test_an_unknown_outcome_keeps_the_quota_whatever_the_row_says() -> None:
    sent = NetworkError("ReadTimeout", "timed out", outcome_unknown=True)
    unsent = NetworkError("ConnectError", "refused", outcome_unknown=False)
    assert policy_for(sent).quota_back(sent) is False
    assert policy_for(unsent).quota_back(unsent) is True


def test_shape_errors_are_retried_and_holds_are_not_failures() -> None:
    assert issubclass(RequestShapeError, RetryableError)
    assert not issubclass(QuotaExhaustedError, RetryableError)
    assert not issubclass(CredentialError, RetryableError)


def test_network_error_is_transient_and_records_whether_outcome_is_known() -> None:
    sent = NetworkError("ReadTimeout", "timed out", outcome_unknown=True)
    unsent = NetworkError("ConnectError", "refused", outcome_unknown=False)
    assert isinstance(sent, RetryableError)
    assert sent.outcome_unknown is True
    assert unsent.outcome_unknown is False
    assert sent.status_code is None
    assert sent.retry_after_s is None


def test_transient_error_carries_retry_after_hint() -> None:
    error = error_for("Throttling", "slow down", 503, retry_after_s=1.5)
    assert isinstance(error, RetryableError)
    assert error.retry_after_s == 1.5


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_unknown_code_with_5xx_or_429_is_transient_and_keeps_its_code(status: int) -> None:
    error = error_for("Brand.New.Code", "huh", status, request_id="r", retry_after_s=2.0)
    assert type(error) is RetryableError
    assert error.code == "Brand.New.Code"
    assert error.status_code == status
    assert error.request_id == "r"
    assert error.retry_after_s == 2.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_unknown_code_with_other_4xx_is_a_refused_call_and_keeps_its_code(status: int) -> None:
    error = error_for("Brand.New.Code", "huh", status, request_id="r")
    assert type(error) is RequestShapeError
    assert error.code == "Brand.New.Code"
    assert error.status_code == status
    assert error.request_id == "r"


def test_known_permanent_code_stays_permanent_on_a_5xx_status() -> None:
    # The code wins over the status: a credential problem is never retried blindly.
    assert type(error_for("SignatureDoesNotMatch", "", 500)) is CredentialError


def test_known_transient_code_stays_transient_on_a_4xx_status() -> None:
    assert type(error_for("ServiceBusy", "", 403)) is RetryableError


def test_error_without_message_renders_just_its_code() -> None:
    assert str(error_for("InternalError", "", 500)) == "InternalError"
