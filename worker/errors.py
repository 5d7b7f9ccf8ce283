"""Errors from the CDN provider, one class for each thing the pipeline does about them.

::

    CdnError                      base: code, message, request id, HTTP status
    ├── RetryableError            retried with backoff; dead-lettered at MAX_ATTEMPTS
    │   ├── NetworkError          no answer; ``outcome_unknown`` when the request was sent
    │   └── RequestShapeError     the call itself broke a rule (limits, parameters)
    ├── HoldError                 the paths are fine: they wait, no attempt counted
    │   ├── QuotaExhaustedError   QuotaExceeded.Refresh: this type holds until the reset
    │   ├── CredentialError       keys, permissions, clock: everything holds for an operator
    │   └── UnreachableError      no connection: the request never left; everything holds
    └── RejectedPathError         a path or domain refused: split, then dead-letter it

What each one costs (quota back or not, an attempt, how long the work waits) is the table in
:mod:`worker.policy`, one row per class here. An unknown code falls back on its HTTP status
(5xx and 429 retryable, other 4xx too, but as a call the provider refused) and keeps its
code, so logs and ``lookup`` still show it.
"""

from __future__ import annotations

from typing import Final


class CdnError(Exception):
    """Base class of every error the CDN client raises."""

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.request_id = request_id

    #: True when the provider may have acted on the request all the same (no answer after
    #: sending, a 200 without a task ID, a gateway's page instead of JSON): the quota it may
    #: have spent must stay counted.
    outcome_unknown: bool = False
    #: The provider's ``x-acs-retry-after`` hint, if any.
    retry_after_s: float | None = None
    #: What the one log line of a hold of all work calls the problem, and what ends it (the
    #: policy decides which errors hold: here only the words).
    problem: str = "hold"
    remedy: str = ""


class RetryableError(CdnError):
    """The same request may succeed later. ``retry_after_s`` is the provider's hint, if any."""

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(code, message, status_code=status_code, request_id=request_id)
        self.retry_after_s = retry_after_s
        self.outcome_unknown = outcome_unknown


class NetworkError(RetryableError):
    """No answer came. ``outcome_unknown`` is true when the request may have been processed
    (a timeout or dropped connection after sending), false when it surely was not sent."""

    def __init__(self, code: str, message: str = "", *, outcome_unknown: bool) -> None:
        super().__init__(code, message, outcome_unknown=outcome_unknown)


class RequestShapeError(RetryableError):
    """The call itself breaks a rule (too many paths or domains, a missing parameter), or
    a 4xx answer we do not know: retried, in case it passes, then dead-lettered."""


class HoldError(CdnError):
    """Nothing is wrong with the paths: they wait while the work holds."""


class QuotaExhaustedError(HoldError):
    """The provider's daily quota is spent: the paths wait for the reset."""


class CredentialError(HoldError):
    """Credentials, permissions or the clock are wrong; paths wait until an operator acts."""

    problem = "credential error"
    remedy = "fix the access key, then `cdn-refresh dead-letter replay --all` resumes"


class UnreachableError(HoldError):
    """No connection to the endpoint (refused, no route, DNS, connect timeout): the request
    provably never left, so the provider spent nothing and the paths did nothing wrong. A
    wrong endpoint or a network blip must not spend attempts and dead-letter everything:
    the work holds, doubling, as for a credential error, and resumes when it answers. (A read
    timeout is not this: the request may have reached the provider.)"""

    problem = "endpoint does not answer"
    remedy = (
        "check CDN_REFRESH_ENDPOINT and the network; nothing is spent, and the work resumes "
        "by itself once the endpoint answers (or at once with `cdn-refresh dead-letter replay "
        "--all`)"
    )


class RejectedPathError(CdnError):
    """A path or its domain is refused; the other paths of the call may be fine."""


TRANSIENT_CODES: Final = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "TooManyRequests",
        "ServiceBusy",
        "QuotaPerMinuteExceeded.Refresh",
        "TooMany.Refresh",
    }
)
QUOTA_CODES: Final = frozenset({"QuotaExceeded.Refresh"})
INVALID_PATH_CODES: Final = frozenset(
    {
        "InvalidObjectPath.Malformed",
        "InvalidDomain.NotFound",
        "InvalidDomain.Offline",
        "InvalidExtensiveDomain.ValueNotSupported",
    }
)
CREDENTIAL_CODES: Final = frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "Forbidden.RAM",
        "OperationDenied",
        "IllegalOperation",
        "InvalidTimeStamp.Expired",
        "SignatureNonceUsed",
        "InvalidSecurityToken.Expired",
        "InvalidSecurityToken.Malformed",
    }
)
REQUEST_SHAPE_CODES: Final = frozenset(
    {
        "InvalidObjectPath.Size.Malformed",
        "SingleRequest.OverLimit",
        "InvalidObjectType.Malformed",
        "MissingParameter",
    }
)


def error_for(
    code: str,
    message: str,
    status_code: int,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> CdnError:
    """The exception for a provider error answer: by code first, then by status."""
    unknown = code not in _KNOWN_CODES
    if code in TRANSIENT_CODES or (unknown and (status_code >= 500 or status_code == 429)):
        return RetryableError(
            code,
            message,
            status_code=status_code,
            request_id=request_id,
            retry_after_s=retry_after_s,
        )
    cls: type[CdnError] = _CLASS_BY_CODE.get(code, RequestShapeError)
    return cls(code, message, status_code=status_code, request_id=request_id)


_CLASS_BY_CODE: Final[dict[str, type[CdnError]]] = {
    **dict.fromkeys(QUOTA_CODES, QuotaExhaustedError),
    **dict.fromkeys(INVALID_PATH_CODES, RejectedPathError),
    **dict.fromkeys(CREDENTIAL_CODES, CredentialError),
    **dict.fromkeys(REQUEST_SHAPE_CODES, RequestShapeError),
}
_KNOWN_CODES: Final = frozenset(_CLASS_BY_CODE) | TRANSIENT_CODES
