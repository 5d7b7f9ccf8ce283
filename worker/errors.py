"""Errors from the CDN provider, split by what the pipeline must do about them.

::

    CdnError                      base: code, message, request id, HTTP status
    ├── TransientError            retry with backoff (InternalError, Throttling, 5xx, network)
    │   └── NetworkError          no answer; ``outcome_unknown`` when the request was sent
    ├── QuotaExhaustedError       QuotaExceeded.Refresh: keep the paths, wait for the reset
    └── PermanentError            retrying the same request cannot help
        ├── InvalidPathError      a path or domain the provider refuses (per path)
        ├── CredentialError       keys, permissions, clock: an operator must act
        └── RequestShapeError     the call itself is malformed (limits, parameters)

An unknown code falls back on its HTTP status (5xx transient, 4xx permanent) and keeps its
code, so logs and ``lookup`` still show what the provider said.
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


class TransientError(CdnError):
    """The same request may succeed later. ``retry_after_s`` is the provider's hint, if any.

    ``outcome_unknown`` is true when the provider may have acted on the request all the same
    (no answer after sending, a 200 without a task ID, a gateway's page instead of JSON):
    the quota it may have spent must stay counted.
    """

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


class NetworkError(TransientError):
    """No answer came. ``outcome_unknown`` is true when the request may have been processed
    (a timeout or dropped connection after sending), false when it surely was not sent."""

    def __init__(self, code: str, message: str = "", *, outcome_unknown: bool) -> None:
        super().__init__(code, message, outcome_unknown=outcome_unknown)


class QuotaExhaustedError(CdnError):
    """The provider's daily quota is spent: the paths are fine and wait for the reset."""


class PermanentError(CdnError):
    """Retrying the same request cannot succeed."""


class InvalidPathError(PermanentError):
    """A path or its domain is refused; the other paths of the call may be fine."""


class CredentialError(PermanentError):
    """Credentials, permissions or the clock are wrong; paths wait until an operator acts."""


class RequestShapeError(PermanentError):
    """The call itself breaks a rule (too many paths or domains, a missing parameter)."""


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
        return TransientError(
            code,
            message,
            status_code=status_code,
            request_id=request_id,
            retry_after_s=retry_after_s,
        )
    cls: type[CdnError] = _CLASS_BY_CODE.get(code, PermanentError)
    return cls(code, message, status_code=status_code, request_id=request_id)


_CLASS_BY_CODE: Final[dict[str, type[CdnError]]] = {
    **dict.fromkeys(QUOTA_CODES, QuotaExhaustedError),
    **dict.fromkeys(INVALID_PATH_CODES, InvalidPathError),
    **dict.fromkeys(CREDENTIAL_CODES, CredentialError),
    **dict.fromkeys(REQUEST_SHAPE_CODES, RequestShapeError),
}
_KNOWN_CODES: Final = frozenset(_CLASS_BY_CODE) | TRANSIENT_CODES
