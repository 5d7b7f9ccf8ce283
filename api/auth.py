"""Bearer tokens from ``CDN_REFRESH_API_TOKENS``: one dependency guards every ``/v1`` route.

Every configured token is compared, in constant time, whatever matched before: neither the
time taken nor the answer tells a caller how close a guess came, or which token it hit. The
comparison is of SHA-256 digests, all of one length, so that not even a token's length shows.
A token is never logged, echoed or put in an error.

The token is checked before a byte of the body is read (:class:`TokenGate`): a client
without a valid token costs no buffer. Tokens are not tenants: every token sees every job
(docs/http-api.md "Tokens"); what a token owns is its Idempotency-Keys, kept under :func:`scope_of`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, error_document

bearer = HTTPBearer(auto_error=False, description="A token from CDN_REFRESH_API_TOKENS")


# Prefixed so that the scope is not the digest the comparison above uses.
_SCOPE_LABEL = b"cdn-refresh idempotency scope\x00"


class TokenCheck:
    """The dependency: 401 without a token, or with one that is not configured; else the
    caller's scope (:func:`scope_of`)."""

    def __init__(self, tokens: list[str]) -> None:
        self._digests = [_digest(t) for t in tokens]

    def problem(self, token: str | None) -> str | None:
        """Why ``token`` is refused, or None."""
        if not token:
            return "a bearer token is required"
        given = _digest(token)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(digest, given)
        return None if matched else "the bearer token is not valid"

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> str:
        token = credentials.credentials if credentials is not None else None
        problem = self.problem(token)
        if problem is not None or token is None:
            raise _unauthorized(problem or "a bearer token is required")
        return scope_of(token)


def scope_of(token: str) -> str:
    """What a token's Idempotency-Keys are kept under: a digest of it, never the token."""
    return hashlib.sha256(_SCOPE_LABEL + token.encode("utf-8")).hexdigest()


class TokenGate:
    """Pure ASGI middleware in front of the body limit: a ``/v1`` request without a valid
    token is answered 401 from its headers alone, its body never read (the connection is
    closed instead). The route's :class:`TokenCheck` then checks again, for its scope."""

    def __init__(self, app: ASGIApp, check: TokenCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        kind, _, token = header.partition(" ")
        problem = self.check.problem(token.strip() if kind.lower() == "bearer" else None)
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error_document("unauthorized", problem)).encode("utf-8")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
