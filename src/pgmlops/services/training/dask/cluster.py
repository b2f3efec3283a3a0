"""The Dask client a run trains through: a configured scheduler, or a LocalCluster for the run."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pgmlops.errors import ConfigError

# A scheduler that does not answer within this many seconds is reported, not waited for.
CONNECT_TIMEOUT_SECONDS = 5


def require_dask() -> None:
    """ConfigError naming the extra to install when dask.distributed is missing."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"training.engine dask needs Dask ({exc}); install it with pip install 'pgmlops[dask]'"
        ) from exc


def _prepare_worker(library: str) -> None:
    """In a worker: the library imports, and LightGBM's native log lines go to logging."""
    module = importlib.import_module(library)
    if library == "lightgbm":
        module.register_logger(logging.getLogger("lightgbm"))


def _refuse_fast(address: str) -> None:
    """OSError at once when a tcp:// scheduler refuses the connection.

    Dask's client retries a refused connection until its timeout runs out.
    """
    scheme, sep, rest = address.rpartition("://")
    if sep and scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return
    with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_SECONDS):
        pass


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Worker processes started inside inherit stderr as their stdout.

    LightGBM's network set-up prints to the C stdout of the worker thread that trains (its
    log callback is per thread), which would corrupt `pgmlops train --json`.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def dask_client(address: str, workers: int, library: str = "lightgbm") -> Iterator[Any]:
    """A connected client whose workers import `library`; a LocalCluster started here is
    closed when the block ends."""
    require_dask()
    from distributed import Client, LocalCluster

    cluster = None
    if address:
        try:
            _refuse_fast(address)
            client = Client(address, timeout=f"{CONNECT_TIMEOUT_SECONDS}s")
        except (OSError, TimeoutError, ValueError, MemoryError) as exc:
            # MemoryError: something answered that does not speak Dask's protocol, and its
            # first bytes were read as a frame length.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if isinstance(exc, MemoryError):
                first = "it answers, but not as a Dask scheduler"
            raise ConfigError(
                f"training.dask_address {address!r}: cannot reach the Dask scheduler ({first})"
            ) from exc
    else:
        with _stdout_to_stderr():
            # One thread a worker: the booster runs its own threads inside each worker.
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                dashboard_address=None,
                silence_logs=logging.WARNING,
            )
        client = Client(cluster)
    try:
        try:
            client.run(_prepare_worker, library)
        except ImportError as exc:
            raise ConfigError(
                f"the Dask workers cannot import {library} ({exc}): install "
                f"pgmlops[{'dask' if library == 'lightgbm' else 'dask,' + library}] on them"
            ) from exc
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
