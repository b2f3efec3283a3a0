"""Close connections that send their request too slowly (slowloris), with a 408.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but a connection
that never finishes its request line, headers or body is kept open for ever: a few thousand
of them hold a file descriptor and a protocol object each, and can exhaust the process.

Each connection carries one deadline, set when it opens (headers), when its headers are
complete (body) and cleared when the request is complete: a float assignment on the hot path,
no timer per request. One sweep per server, a few times a second, closes what is overdue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"content-length: 48\r\n"
    b"connection: close\r\n\r\n"
    b'{"error": "request not received in time (408)"}\n'
)


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any], interval: float) -> None:
    """Close every connection of this server whose request is overdue, then come back."""
    now = loop.time()
    for conn in list(connections):
        deadline = getattr(conn, "deadline", None)
        if deadline is not None and deadline < now:
            conn.timed_out()
    loop.call_later(interval, _sweep, loop, connections, interval)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a body timeout."""

    deadline: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        config = self.config
        self.header_timeout = getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT)
        self.body_timeout = getattr(config, "body_timeout", DEFAULT_BODY_TIMEOUT)
        self.deadline = self.loop.time() + self.header_timeout
        state = self.server_state
        if not getattr(state, "pgmlops_sweeping", False):
            state.pgmlops_sweeping = True  # type: ignore[attr-defined]
            interval = min(1.0, max(0.05, min(self.header_timeout, self.body_timeout) / 4))
            self.loop.call_later(interval, _sweep, self.loop, state.connections, interval)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:
            # The next request on a kept-alive connection: its headers have the same time.
            self.deadline = self.loop.time() + self.header_timeout

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.deadline = self.loop.time() + self.body_timeout

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The application has the request now: how long it takes is not the client's doing.
        self.deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = None
        super().connection_lost(exc)

    def timed_out(self) -> None:
        """Answer 408 if no response has started, and close the connection."""
        self.deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()
