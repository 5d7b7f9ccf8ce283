"""Request bodies, bounded as they arrive: one body's size (``CDN_REFRESH_API_MAX_BODY_BYTES``:
413, at once when the declared length is over it), the bytes all bodies held at once may take
(``API_MAX_BODY_BYTES_IN_FLIGHT``: 503, so that many clients sending at once cannot take the
process's memory), and the time a client may take to send one (408, so that a stalled sender
cannot hold a buffer, or a connection, for ever): ``API_BODY_TIMEOUT_S`` without a byte, and
``API_BODY_MAX_S`` for the whole body, so that a slow but steady sender gets through. Nothing
parses a body, and nothing is enqueued, until it is all in within these bounds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_document
from cdn_refresh.constants import API_BODY_MAX_S

# Past the limit the rest of a body is read and dropped (so that the client, still sending,
# reads the 413 instead of a reset connection) up to this much more; then the connection goes.
DRAIN_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodyBounds:
    """The bounds above (``timeout_s``: without a byte; ``max_s``: the whole body)."""

    max_bytes: int
    in_flight_bytes: int
    timeout_s: float
    max_s: float = API_BODY_MAX_S


class _Refused(Exception):
    """A body out of bounds: the answer to give instead."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BodyLimit:
    """Pure ASGI middleware: buffer a body within its bounds, else answer the error."""

    def __init__(self, app: ASGIApp, bounds: BodyBounds) -> None:
        self.app = app
        self.bounds = bounds
        self._held = 0  # bytes of every body buffered now (one event loop: no lock needed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        reserved = int(declared) if declared is not None and declared.isdigit() else 0
        if reserved > self.bounds.max_bytes:
            # Refused unread, at once: nothing of it is held, or waited for.
            await _refuse(send, _too_large(self.bounds.max_bytes))
            return
        # A declared length is reserved at once: a body that cannot fit is refused unread.
        self._held += reserved
        try:
            body = await asyncio.wait_for(self._read(receive, reserved), self.bounds.max_s)
        except _Refused as refused:
            await _refuse(send, refused)
            return
        except TimeoutError:
            message = f"the request body did not arrive within {self.bounds.max_s:g} s"
            await _refuse(send, _Refused(408, "body_timeout", message))
            return
        finally:
            self._held -= reserved
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, reserved: int) -> bytes | None:
        """The whole body (None: the client left). Counts what arrives past ``reserved``
        against the in-flight bound too, for the time this request holds it."""
        limit = self.bounds.max_bytes
        self._check_room()
        chunks: list[bytes] = []
        size, extra, too_large = 0, 0, False
        try:
            while True:
                message = await self._next(receive)
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                too_large = too_large or size > limit
                if not too_large:
                    grown = max(0, size - reserved) - extra
                    extra += grown
                    self._held += grown
                    self._check_room()
                    chunks.append(chunk)
                if not message.get("more_body") or size > limit + DRAIN_BYTES:
                    break
        finally:
            self._held -= extra
        if too_large:
            raise _too_large(limit)
        return b"".join(chunks)

    async def _next(self, receive: Receive) -> Message:
        """The next message of the body, unless the client sends nothing for the idle
        timeout (then a 408)."""
        try:
            return await asyncio.wait_for(receive(), self.bounds.timeout_s)
        except TimeoutError:
            message = f"no byte of the request body arrived for {self.bounds.timeout_s:g} s"
            raise _Refused(408, "body_timeout", message) from None

    def _check_room(self) -> None:
        if self._held > self.bounds.in_flight_bytes:
            raise _Refused(
                503,
                "server_busy",
                "too many request bodies are arriving at once: retry shortly "
                "(nothing was enqueued)",
            )


def _too_large(limit: int) -> _Refused:
    message = f"the request body is over {limit} bytes: nothing was enqueued"
    return _Refused(413, "body_too_large", message)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the disconnect, when it comes

    return replayed


async def _refuse(send: Send, refused: _Refused) -> None:
    body = json.dumps(error_document(refused.code, refused.message)).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body, if any, is not read
    ]
    if refused.status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
