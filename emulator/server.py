"""The emulator over HTTP: a ``ThreadingHTTPServer`` in front of :class:`EmulatorState`.

API calls go to ``/`` (GET with a query string, or POST with a form body; parameters from both
are merged, the body winning). Admin endpoints need no signature and are not counted:

- ``GET /_emulator/calls``: ``{"calls": [...]}``, the accepted RefreshObjectCaches calls;
  ``?action=PushObjectCache`` (or any action) those of another action, ``?action=*`` all
- ``GET /_emulator/stats``: request counters by outcome code, accepted calls per action, quota
  use per counter, the preload queue
- ``GET /_emulator/config``: the settings, credentials reduced to key IDs
- ``POST /_emulator/config``: JSON object of settings to change; answers the new settings
- ``POST /_emulator/reset``: forget calls, tasks, quota use, nonces and counters
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError

from emulator.config import EmulatorConfig
from emulator.errors import ApiError
from emulator.provider import error_body, new_request_id
from emulator.state import EmulatorState

ADMIN_PREFIX = "/_emulator/"
FORM_TYPE = "application/x-www-form-urlencoded"
# An idle keep-alive connection is closed after this, so no handler thread waits forever.
IDLE_TIMEOUT_S = 30.0


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads must not keep the process alive, and closing must not wait for clients
    # that hold keep-alive connections open.
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, state: EmulatorState) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.state = state
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def close_open_connections(self) -> None:
        """Wake every handler thread still reading a keep-alive connection."""
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            # OSError: the client closed it already.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 for keep-alive, as the SDK's and httpx's connection pools expect.
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S
    # Headers and body leave in one write, with no Nagle delay: otherwise each keep-alive
    # call waits ~40 ms for a delayed ACK.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a test run or a benchmark would drown in access lines."""

    def do_GET(self) -> None:
        """An API call with its parameters in the query string, or an admin read."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """An API call with a form body (and maybe a query string), or an admin change."""
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_error(ApiError(400, "InvalidParameter", f"Bad request body: {exc}"))
            return
        split = urlsplit(self.path)
        if split.path.startswith(ADMIN_PREFIX):
            query = {k: v for k, v in parse_qsl(split.query) if k == "action"}
            self._admin(method, split.path[len(ADMIN_PREFIX) :], body, query)
        elif split.path != "/":
            self._send_error(
                ApiError(404, "InvalidAction.NotFound", f"RPC calls go to '/', not {split.path!r}.")
            )
        else:
            self._api(method, split.query, body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length)

    def _api(self, method: str, query: str, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", FORM_TYPE).split(";")[0].strip().lower()
        try:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if body and content_type == FORM_TYPE:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError) as exc:
            self._send_error(ApiError(400, "InvalidParameter", f"Undecodable parameters: {exc}"))
            return
        outcome = self.server.state.handle(method, params)
        if outcome.delay_s:
            time.sleep(outcome.delay_s)
        if outcome.drop:
            # The request was read; ending the connection without a byte of answer is what a
            # client sees when a load balancer or the network loses the reply.
            self.close_connection = True
            return
        self._send_json(outcome.status, outcome.body, outcome.headers)

    def _admin(self, method: str, name: str, body: bytes, query: dict[str, str]) -> None:
        state = self.server.state
        if (method, name) == ("GET", "calls"):
            self._send_json(200, {"calls": state.calls(**query)})
        elif (method, name) == ("GET", "stats"):
            self._send_json(200, state.stats())
        elif (method, name) == ("GET", "config"):
            self._send_json(200, state.config.public_view())
        elif (method, name) == ("POST", "config"):
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                config = state.configure(**changes)
            except ValidationError as exc:
                # Without the inputs: a credentials change must not echo its secret.
                errors = exc.errors(include_input=False, include_url=False)
                # default=str: a validator's ValueError sits in "ctx" and is not JSON.
                self._send_error(ApiError(400, "InvalidParameter", json.dumps(errors, default=str)))
            except ValueError as exc:
                self._send_error(ApiError(400, "InvalidParameter", str(exc)))
            else:
                self._send_json(200, config.public_view())
        elif (method, name) == ("POST", "refreshed"):
            try:
                asked = json.loads(body or b"{}").get("paths")
                if not isinstance(asked, list) or not all(isinstance(p, str) for p in asked):
                    raise ValueError('expected {"paths": [...]}')
            except (ValueError, AttributeError) as exc:
                self._send_error(ApiError(400, "InvalidParameter", str(exc)))
            else:
                self._send_json(200, {"paths": state.refreshed(asked)})
        elif (method, name) == ("POST", "reset"):
            state.reset()
            self._send_json(200, {"reset": True})
        else:
            self._send_error(ApiError(404, "NotFound", f"No admin endpoint {method} {name!r}."))

    def _send_error(self, error: ApiError) -> None:
        request_id = new_request_id()
        self._send_json(
            error.status,
            error_body(error, request_id),
            {**error.headers, "x-acs-request-id": request_id},
        )

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class EmulatorServer:
    """The emulator on a background thread. ``port=0`` picks a free port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.state = EmulatorState(config, clock)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the endpoint to give a client."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """``HOST:PORT``, the form the official SDK's ``Config.endpoint`` takes."""
        return self.url.removeprefix("http://")

    def start(self) -> EmulatorServer:
        """Bind and serve on a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the emulator is already started")
        self._httpd = _HTTPServer(self.host, self._requested_port, self.state)
        self._thread = threading.Thread(
            # A short poll makes stop() quick (it waits for one poll); idle cost is negligible.
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every connection and the socket, and wait for the thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_open_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8800,
    on_ready: Callable[[EmulatorServer], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; ``on_ready`` runs once the port is bound."""
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        # Signal handlers can only be set from the main thread.
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _stop)
    try:
        with EmulatorServer(config, host, port) as server:
            if on_ready is not None:
                on_ready(server)
            while not stopping.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
