"""Bearer tokens from ``CDN_REFRESH_API_TOKENS``: one dependency guards every ``/v1`` route.

Every configured token is compared, in constant time, whatever matched before: neither the
time taken nor the answer tells a caller how close a guess came, or which token it hit. The
comparison is of SHA-256 digests, all of one length, so that not even a token's length shows.
A token is never logged, echoed or put in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="A token from CDN_REFRESH_API_TOKENS")


class TokenCheck:
    """The dependency: 401 without a token, or with one that is not configured."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [_digest(t) for t in tokens]

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> None:
        if credentials is None or not credentials.credentials:
            raise _unauthorized("a bearer token is required")
        given = _digest(credentials.credentials)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(digest, given)
        if not matched:
            raise _unauthorized("the bearer token is not valid")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
