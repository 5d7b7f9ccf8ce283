"""uvicorn's HTTP/1.1 protocol, with a deadline on a request's headers.

uvicorn times out an idle keep-alive connection, but not one that sends part of a request
line or headers and then stalls: such a connection (and its buffer) would stay open for
ever. Here a connection whose headers are not all in ``API_HEADER_TIMEOUT_S`` after it
opened, or after its last response, or after it began sending them, is closed. The body has
its own deadline (:mod:`api.limits`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def timed_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""

    class HeaderTimedProtocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _watch_headers(self) -> None:
            # IDLE: no complete request line and headers yet (a new connection, or the next
            # request on a kept-alive one). Past IDLE, the body's deadline takes over.
            if self.conn.their_state is h11.IDLE:
                if self._header_deadline is None:
                    self._header_deadline = self.loop.call_later(header_timeout_s, self._expire)
            else:
                self._disarm()

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _expire(self) -> None:
            self._header_deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimedProtocol
