"""Several uvicorn servers on one port, each listening on its own SO_REUSEPORT socket.

The pool's process makes and keeps the sockets; a worker inherits its slot's, and so does
the worker that replaces it, so a connection arriving meanwhile waits instead of being refused.

uvicorn's own ``--workers`` shares one listening socket between processes, and whichever
worker wakes first accepts every connection that is waiting: a client that opens its
keep-alive connections in a burst (a load balancer, a load generator) can land all of them
on one worker while the others idle. With a socket per worker the kernel spreads new
connections over the workers by a hash of the client's address and port.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from pgmlops.errors import ConfigError

log = logging.getLogger(__name__)
# uvicorn's exit code for "the application failed to start": restarting would only spin.
STARTUP_FAILURE = 3
# A worker that died sooner than this after its start is restarted no faster than this.
_RESTART_GAP_S = 1.0
# How often a worker checks that the pool's process is still its parent.
_ORPHAN_CHECK_S = 1.0


def reuse_port_supported() -> bool:
    """True where the kernel balances connections over SO_REUSEPORT sockets (Linux)."""
    return sys.platform.startswith("linux")


def bind_reuse_port(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A TCP socket bound to host:port; with `shared`, other processes of this user may too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _forget_metrics_of(pid: int) -> None:
    """Drop a dead worker's live gauges (model info) from the summed /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def uvicorn_config(config_kwargs: dict[str, Any]) -> Any:
    """A uvicorn Config; our own keys (the slow-client timeouts) ride along as attributes."""
    import uvicorn

    kwargs = dict(config_kwargs)
    ours = {key: kwargs.pop(key) for key in ("header_timeout", "body_timeout") if key in kwargs}
    config = uvicorn.Config(**kwargs)
    for key, value in ours.items():
        setattr(config, key, value)
    return config


def serve_on(config: Any, sock: socket.socket) -> None:
    """Run one uvicorn server on a bound socket; exit STARTUP_FAILURE if the app did not start."""
    import uvicorn

    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def _stop_when_orphaned(parent: int) -> None:
    """SIGTERM ourselves once the pool's process is gone (killed -9, say), so we drain and exit."""
    # Without this a worker outlives a killed pool and serves on forever from a socket no one
    # supervises: the port stays taken and its rows keep a dead deployment's settings.
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_S)
    log.warning("the serving pool's process %d is gone; this worker stops", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(config_kwargs: dict[str, Any], sock: socket.socket) -> None:
    """One worker process: one uvicorn server on its slot's listening socket."""
    threading.Thread(
        target=_stop_when_orphaned, args=(os.getppid(),), name="orphan-watch", daemon=True
    ).start()
    serve_on(uvicorn_config(config_kwargs), sock)


class WorkerPool:
    """Starts the workers, restarts one that dies, stops them all on SIGINT or SIGTERM."""

    def __init__(
        self, config_kwargs: dict[str, Any], workers: int, drain_seconds: float = 10.0
    ) -> None:
        self.config_kwargs = config_kwargs
        self.workers = workers
        self.drain_seconds = drain_seconds
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[tuple[Any, float]] = []
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self.exit_code = 0

    def run(self) -> int:
        host, port = self.config_kwargs["host"], self.config_kwargs["port"]
        # Held, never listened on: a port in use fails here, once, with a clear message,
        # and no connection is ever routed to this socket.
        guard = bind_reuse_port(host, port)
        # One listening socket per worker slot, made and kept here: a worker that dies
        # leaves its socket listening, so the connections the kernel routes to it wait in
        # its backlog for the replacement (which inherits it) instead of being refused.
        self._socks = []
        for _ in range(self.workers):
            sock = bind_reuse_port(host, port)
            sock.listen(int(self.config_kwargs.get("backlog") or 2048))
            self._socks.append(sock)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        try:
            self._procs = [self._spawn(i) for i in range(self.workers)]
            log.info(
                "serving on http://%s:%d with %d workers (one SO_REUSEPORT socket each)",
                host,
                port,
                self.workers,
            )
            while not self._stop.wait(0.5):
                self._replace_dead()
        finally:
            self._shutdown()
            for sock in self._socks:
                sock.close()
            guard.close()
        return self.exit_code

    def _spawn(self, slot: int) -> tuple[Any, float]:
        proc = self._ctx.Process(
            target=_worker, args=(self.config_kwargs, self._socks[slot]), name="pgmlops-worker"
        )
        proc.start()
        return proc, time.monotonic()

    def _replace_dead(self) -> None:
        for i, (proc, started) in enumerate(self._procs):
            if proc.is_alive():
                continue
            if proc.exitcode == STARTUP_FAILURE:
                log.error("worker %d failed to start; stopping", proc.pid)
                self.exit_code = STARTUP_FAILURE
                self._stop.set()
                return
            if time.monotonic() - started < _RESTART_GAP_S:
                continue
            log.warning("worker %d exited with code %s; starting another", proc.pid, proc.exitcode)
            _forget_metrics_of(proc.pid)
            self._procs[i] = self._spawn(i)

    def _shutdown(self) -> None:
        graceful = float(self.config_kwargs.get("timeout_graceful_shutdown") or 10)
        # A worker drains its prediction log after its connections close: give it that time.
        graceful += self.drain_seconds
        for proc, _ in self._procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + graceful + 5
        for proc, _ in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("worker %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join(5)
