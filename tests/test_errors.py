"""Every provider error code in PROVIDER.md maps to the class that says what to do about it."""

from __future__ import annotations

import pytest

from worker.errors import (
    CdnError,
    CredentialError,
    InvalidPathError,
    NetworkError,
    PermanentError,
    QuotaExhaustedError,
    RequestShapeError,
    TransientError,
    error_for,
)

# (code, HTTP status the provider sends it with, expected class), straight from PROVIDER.md.
DOCUMENTED = [
    ("InternalError", 500, TransientError),
    ("ServiceUnavailable", 503, TransientError),
    ("Throttling", 503, TransientError),
    ("Throttling", 400, TransientError),
    ("TooManyRequests", 429, TransientError),
    ("ServiceBusy", 403, TransientError),
    ("QuotaPerMinuteExceeded.Refresh", 400, TransientError),
    ("TooMany.Refresh", 400, TransientError),
    ("QuotaExceeded.Refresh", 400, QuotaExhaustedError),
    ("InvalidObjectPath.Malformed", 400, InvalidPathError),
    ("InvalidDomain.NotFound", 404, InvalidPathError),
    ("InvalidDomain.Offline", 404, InvalidPathError),
    ("InvalidExtensiveDomain.ValueNotSupported", 400, InvalidPathError),
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
def test_transient_and_permanent_never_overlap(
    code: str, status: int, expected: type[CdnError]
) -> None:
    error = error_for(code, "", status)
    assert isinstance(error, CdnError)
    is_transient = isinstance(error, TransientError)
    is_permanent = isinstance(error, PermanentError)
    is_quota = isinstance(error, QuotaExhaustedError)
    # Exactly one of the three branches, and the one the docs prescribe.
    assert [is_transient, is_permanent, is_quota].count(True) == 1
    assert is_transient is issubclass(expected, TransientError)
    assert is_quota is (code == "QuotaExceeded.Refresh")


@pytest.mark.parametrize(
    "expected", [InvalidPathError, CredentialError, RequestShapeError], ids=lambda c: c.__name__
)
def test_path_credential_and_shape_errors_are_permanent(expected: type[CdnError]) -> None:
    assert issubclass(expected, PermanentError)
    assert not issubclass(expected, TransientError)


def test_quota_exhausted_is_neither_transient_nor_permanent() -> None:
    assert not issubclass(QuotaExhaustedError, TransientError)
    assert not issubclass(QuotaExhaustedError, PermanentError)


def test_network_error_is_transient_and_records_whether_outcome_is_known() -> None:
    sent = NetworkError("ReadTimeout", "timed out", outcome_unknown=True)
    unsent = NetworkError("ConnectError", "refused", outcome_unknown=False)
    assert isinstance(sent, TransientError)
    assert sent.outcome_unknown is True
    assert unsent.outcome_unknown is False
    assert sent.status_code is None
    assert sent.retry_after_s is None


def test_transient_error_carries_retry_after_hint() -> None:
    error = error_for("Throttling", "slow down", 503, retry_after_s=1.5)
    assert isinstance(error, TransientError)
    assert error.retry_after_s == 1.5


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_unknown_code_with_5xx_or_429_is_transient_and_keeps_its_code(status: int) -> None:
    error = error_for("Brand.New.Code", "huh", status, request_id="r", retry_after_s=2.0)
    assert type(error) is TransientError
    assert error.code == "Brand.New.Code"
    assert error.status_code == status
    assert error.request_id == "r"
    assert error.retry_after_s == 2.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_unknown_code_with_other_4xx_is_permanent_and_keeps_its_code(status: int) -> None:
    error = error_for("Brand.New.Code", "huh", status, request_id="r")
    assert type(error) is PermanentError
    assert error.code == "Brand.New.Code"
    assert error.status_code == status
    assert error.request_id == "r"


def test_known_permanent_code_stays_permanent_on_a_5xx_status() -> None:
    # The code wins over the status: a credential problem is never retried blindly.
    assert type(error_for("SignatureDoesNotMatch", "", 500)) is CredentialError


def test_known_transient_code_stays_transient_on_a_4xx_status() -> None:
    assert type(error_for("ServiceBusy", "", 403)) is TransientError


def test_error_without_message_renders_just_its_code() -> None:
    assert str(error_for("InternalError", "", 500)) == "InternalError"
