"""What the slow-client deadlines cost per request, in process: uvicorn's httptools protocol
against pgmlops' TimedHttpToolsProtocol, parsing and answering the same keep-alive requests.

Run: ``.venv/bin/python bench/slow_clients_overhead.py [--requests 20000] [--rounds 7]``.
One event loop, an in-memory transport, a trivial ASGI app that answers 200 at once; the two
classes alternate round by round so that background load hits both alike; the median
per-request CPU time of each is printed, and their difference is the price of the deadlines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from pgmlops.api.slow_clients import TimedHttpToolsProtocol

REQUEST = (
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 20\r\n\r\n" + b'{"CreditScore": 600}'
)


async def app(scope: dict, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class Transport(asyncio.Transport):
    """Swallows what the server writes; never closes."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def per_request(cls: type, n: int) -> float:
    config = Config(app=app, log_config=None, access_log=False, lifespan="off")
    config.load()
    proto = cls(config=config, server_state=ServerState(), app_state={})
    proto.connection_made(Transport())
    # CPU time of this process: on a shared machine, wall time mostly measures the neighbours.
    started = time.process_time()
    for _ in range(n):
        proto.data_received(REQUEST)
        await asyncio.sleep(0)  # let the request's task run and answer
        await asyncio.sleep(0)
    elapsed = time.process_time() - started
    proto.transport.close()
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"uvicorn": [], "pgmlops": []}
    for _ in range(args.rounds):
        for name, cls in (("uvicorn", HttpToolsProtocol), ("pgmlops", TimedHttpToolsProtocol)):
            times[name].append(asyncio.run(per_request(cls, args.requests)))
    base, ours = (statistics.median(times[k]) * 1e6 for k in ("uvicorn", "pgmlops"))
    print(f"uvicorn HttpToolsProtocol:      {base:.2f} µs per request (median of {args.rounds})")
    print(f"pgmlops TimedHttpToolsProtocol: {ours:.2f} µs per request")
    print(f"difference:                     {ours - base:+.2f} µs per request")


if __name__ == "__main__":
    main()
