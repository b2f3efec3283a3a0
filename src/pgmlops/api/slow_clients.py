"""Close connections that send their request too slowly (slowloris, 408) or too big a head (431).

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but a connection
that never finishes its request line, headers or body is kept open for ever: a few thousand
of them hold a file descriptor and a protocol object each, and can exhaust the process.

Nothing is added to the per-request path: one sweep per server, a few times a second, reads
each connection's state (uvicorn's own attributes), notes when it entered its current phase,
and closes the ones that stayed in a client-side phase too long. A timeout is therefore
enforced within one sweep interval (at most 1 s, a quarter of the shortest timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
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
# httptools (llhttp) puts no bound on a request's head: a 1 MB header or 10,000 headers were
# parsed and handed to the app. These bounds are far above any client of this API (curl sends
# 3 headers, browsers ~20, proxies add a few) and near what nginx and Node allow.
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024


def _too_large(reason: str) -> bytes:
    body = f'{{"error": "request header fields too large: {reason} (431)"}}\n'.encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def _phase(conn: Any) -> tuple[str, Any] | None:
    """What the connection waits for from its client, or None when it waits for nobody (the
    application is working, or the connection idles under uvicorn's keep-alive timer)."""
    cycle = conn.cycle
    if cycle is None:
        return ("headers", None)  # the first request's line and headers are not complete
    if not cycle.response_complete:
        # Headers are in; while the body is not, the client owes it. Then the app works.
        return ("body", cycle) if cycle.more_body and not cycle.response_started else None
    # Answered. uvicorn's keep-alive timer is disarmed by the first byte of a next request:
    # without it the client has started a request whose headers are not complete.
    return ("headers", cycle) if conn.timeout_keep_alive_task is None else None


def sweep(conns: set[Any], now: float, header_timeout: float, body_timeout: float) -> int:
    """Time out overdue connections; returns how many were closed."""
    closed = 0
    for conn in list(conns):
        if conn.transport is None or conn.transport.is_closing():
            continue
        phase = _phase(conn)
        if phase != conn.phase:
            conn.phase, conn.phase_since = phase, now
            continue
        if phase is None:
            continue
        limit = header_timeout if phase[0] == "headers" else body_timeout
        if now - conn.phase_since > limit:
            conn.timed_out()
            closed += 1
    return closed


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a header timeout and a body timeout."""

    phase: tuple[str, Any] | None = ("headers", None)
    phase_since: float = 0.0
    head_bytes: int = 0
    refused: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.phase_since = self.loop.time()
        state = self.server_state
        if not getattr(state, "pgmlops_sweeping", False):
            state.pgmlops_sweeping = True  # type: ignore[attr-defined]
            config = self.config
            header = getattr(config, "header_timeout", DEFAULT_HEADER_TIMEOUT)
            body = getattr(config, "body_timeout", DEFAULT_BODY_TIMEOUT)
            interval = min(1.0, max(0.05, min(header, body) / 4))
            loop = self.loop

            def tick() -> None:
                sweep(state.connections, loop.time(), header, body)
                loop.call_later(interval, tick)

            loop.call_later(interval, tick)

    def timed_out(self) -> None:
        """Answer 408 if no response has started, and close the connection."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.head_bytes += len(url)
        self._bound_head()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        self._bound_head(extra_header=True)
        super().on_header(name, value)

    def _bound_head(self, *, extra_header: bool = False) -> None:
        """Refuse a head over the bounds with 431 and stop parsing this connection."""
        if extra_header and len(self.headers) >= MAX_HEADERS:
            reason = f"more than {MAX_HEADERS} headers"
        elif self.head_bytes > MAX_HEAD_BYTES:
            reason = f"more than {MAX_HEAD_BYTES} bytes of request line and headers"
        else:
            return
        self.refused = True
        self.transport.write(_too_large(reason))
        self.transport.close()
        # Stops llhttp; data_received's parser-error branch then answers nothing more.
        raise httptools.HttpParserCallbackError(reason)

    def send_400_response(self, msg: str) -> None:
        if not self.refused:  # a refused head has had its 431
            super().send_400_response(msg)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)
