"""A serving process's prediction-log ledger: rows taken versus rows settled, in a file.

A serving process killed with kill -9 (or by the OOM killer) takes the rows in its memory
with it, and nothing in it lives to count them. So each process keeps, in a small file in
the spill folder, how many rows it took for the log and how many its writer has settled
(written, spilled, rejected or counted lost). The file is locked (flock) by the process and,
through the inherited descriptor, by its logging process; when both are gone the lock is
free, and the next process of the server that looks (the other worker, the replacement, the
next start) counts `taken - settled` as lost and removes the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import uuid
from pathlib import Path

TAKEN, SETTLED, SETTLED_BY_CHILD = 0, 1, 2
_SLOTS = 3
_SIZE = 8 * _SLOTS
_PREFIX = "ledger-"


class Ledger:
    """This process's counts, in a locked, memory-mapped file (one writer per slot)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.bin"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, _SIZE)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._map = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        self._fd = fd

    def add(self, slot: int, n: int) -> None:
        """Add n to a slot; each slot has one writer, so no lock is needed."""
        if n and not self._map.closed:
            offset = 8 * slot
            (value,) = struct.unpack_from("q", self._map, offset)
            struct.pack_into("q", self._map, offset, value + n)

    def get(self, slot: int) -> int:
        return 0 if self._map.closed else struct.unpack_from("q", self._map, 8 * slot)[0]

    def close(self) -> None:
        """A clean stop: every row is settled or already counted, so the file goes."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)


def claim_dead(folder: str | Path) -> list[tuple[str, int]]:
    """Ledgers whose processes are all gone: (their file name, rows unsettled); files removed."""
    found: list[tuple[str, int]] = []
    try:
        paths = sorted(Path(folder).glob(f"{_PREFIX}*.bin"))
    except OSError:
        return found
    for path in paths:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its process (or its logging process) still runs
            # Another claimer may have read and removed it while we waited for the lock.
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                continue
            taken, settled, by_child = struct.unpack(
                "3q", os.pread(fd, _SIZE, 0).ljust(_SIZE, b"\0")
            )
            path.unlink()
            found.append((path.name, max(0, taken - settled - by_child)))
        except OSError:
            continue
        finally:
            os.close(fd)
    return found
