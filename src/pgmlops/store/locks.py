"""Named locks that die with their holder.

PostgreSQL: a session-level ``pg_try_advisory_lock`` held on a dedicated connection, so the
server frees it the moment the holding process dies. SQLite: a row in ``leases`` with an
expiry that a background thread renews; a lease whose holder process is gone (same host) or
whose expiry has passed can be taken over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import delete, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from pgmlops.errors import ConflictError, StoreError
from pgmlops.store.db import Database
from pgmlops.store.tables import LeaseRow, utcnow

log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """True when a process with this pid runs on this host (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def holder_gone(holder: str) -> bool:
    """Whether the process named by ``host:pid[:token]`` is known to be dead.

    Only a process on this host can be checked; elsewhere the answer is False (unknown).
    """
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not process_alive(int(pid_text))


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class HeldLock:
    """A lock this process holds; `check()` raises if it was lost meanwhile."""

    def __init__(self, name: str, holder: str, backend: str) -> None:
        self.name = name
        self.holder = holder
        self.backend = backend
        self.lost = threading.Event()
        self._conn: Connection | None = None

    def check(self) -> None:
        if self._conn is not None:
            try:
                held = self._conn.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND granted"
                    )
                ).scalar()
                self._conn.commit()
            except SQLAlchemyError:
                held = 0
            if not held:
                self.lost.set()
        if self.lost.is_set():
            raise ConflictError(f"lock {self.name!r} was lost while held; nothing was changed")


@contextmanager
def named_lock(db: Database, name: str, *, lease_seconds: float = 600.0) -> Iterator[HeldLock]:
    """Hold lock `name` for the block, or raise ConflictError at once if someone else has it."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if db.is_postgres:
        with _advisory(db, name, holder) as held:
            yield held
    else:
        with _lease(db, name, holder, lease_seconds) as held:
            yield held


@contextmanager
def _advisory(db: Database, name: str, holder: str) -> Iterator[HeldLock]:
    db.ensure_schema()
    key = advisory_key(name)
    try:
        conn = db.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot take lock {name!r}: {exc}") from exc
    if not got:
        conn.close()
        raise ConflictError(f"lock {name!r} is held by another process")
    held = HeldLock(name, holder, "advisory")
    held._conn = conn
    try:
        yield held
    finally:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
            conn.close()
        except SQLAlchemyError:
            # The server frees a session lock when its connection goes; make sure it goes.
            conn.invalidate()


@contextmanager
def _lease(db: Database, name: str, holder: str, lease_seconds: float) -> Iterator[HeldLock]:
    lease = timedelta(seconds=lease_seconds)
    with db.session() as s:
        row = s.get(LeaseRow, name)
        now = utcnow()
        if row is not None and row.expires_at > now and not holder_gone(row.holder):
            left = (row.expires_at - now).total_seconds()
            raise ConflictError(
                f"lock {name!r} is held by {row.holder.rsplit(':', 1)[0]} "
                f"(lease expires in {left:.0f}s)"
            )
        if row is None:
            s.add(LeaseRow(name=name, holder=holder, expires_at=now + lease))
        else:
            row.holder, row.expires_at = holder, now + lease
    held = HeldLock(name, holder, "lease")
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(db, held, lease, stop), name=f"lease-{name}", daemon=True
    )
    renewer.start()
    try:
        yield held
    finally:
        stop.set()
        renewer.join(timeout=5)
        try:
            with db.session() as s:
                s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))
        except StoreError as exc:
            log.warning("could not release lease %s (it expires by itself): %s", name, exc)


def _renew(db: Database, held: HeldLock, lease: timedelta, stop: threading.Event) -> None:
    interval = max(lease.total_seconds() / 3.0, 0.2)
    while not stop.wait(interval):
        try:
            with db.session() as s:
                row = s.get(LeaseRow, held.name)
                if row is None or row.holder != held.holder:
                    held.lost.set()
                    log.error("lease %s was taken over by another process", held.name)
                    return
                row.expires_at = utcnow() + lease
        except StoreError as exc:
            log.warning("could not renew lease %s: %s", held.name, exc)
