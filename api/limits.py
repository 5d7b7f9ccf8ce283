"""The request-body limit (``CDN_REFRESH_API_MAX_BODY_BYTES``), enforced as the body arrives:
a body declared or found too large is answered 413 before anything parses it, and nothing
is enqueued."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_document

# Past the limit the rest of a body is read and dropped (so that the client, still sending,
# reads the 413 instead of a reset connection) up to this much more; then the connection goes.
DRAIN_BYTES = 16 * 1024 * 1024


class BodyLimit:
    """Pure ASGI middleware: buffer a body up to ``max_bytes``, else answer 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            more = bool(message.get("more_body"))
            if size > self.max_bytes:
                too_large = True
            if too_large:
                if size > self.max_bytes + DRAIN_BYTES:
                    break
                continue
            chunks.append(body)
        if too_large:
            await _too_large(send, self.max_bytes)
            return
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the disconnect, when it comes

    return replayed


async def _too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps(
        error_document(
            "body_too_large", f"the request body is over {max_bytes} bytes: nothing was enqueued"
        )
    ).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
