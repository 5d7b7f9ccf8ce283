"""The one exception the emulator's request handling raises: a provider error answer."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer: HTTP ``status`` with body ``{"Code", "Message", "RequestId", "HostId"}``.

    ``headers`` are extra response headers (``x-acs-retry-after`` on throttling).
    """

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def missing_parameter(name: str) -> ApiError:
    """400 ``MissingParameter`` naming the parameter."""
    return ApiError(
        400,
        "MissingParameter",
        f"The input parameter {name} that is mandatory "
        "for processing this request is not supplied.",
    )


def invalid_parameter(name: str, value: str) -> ApiError:
    """400 ``InvalidParameter`` naming the parameter and the refused value."""
    return ApiError(
        400, "InvalidParameter", f"The specified parameter {name} ({value!r}) is not valid."
    )
