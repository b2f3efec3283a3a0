"""The prediction log's spill folder: JSON-lines files holding rows while the database is away.

Each serving process appends to its own `predictions-<pid>.jsonl` (fsynced). Files of a
process that is gone (crash, kill -9, restart) are claimed by the next one that starts, by a
rename, so no bytes are copied on a disk that may be full. Reading tolerates a torn last line
(what a full disk or a crash mid-write leaves) and any corrupt line: those bytes go to
`quarantine-<pid>.jsonl` for a human to look at, and the rest is replayed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import orjson

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.errors import ValidationError


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """A record already encoded as a spill line (no newline): what the logging process gets.

    Written to PostgreSQL and to the spill file as the bytes it is; decoded only where a
    field is needed (SQLite, a refused row's id, a missing partition's period).
    """

    line: bytes


def encode(r: PredictionRecord | EncodedRecord) -> bytes:
    """One spill line."""
    if type(r) is EncodedRecord:
        return r.line + b"\n"
    return orjson.dumps(asdict(r)) + b"\n"  # type: ignore[arg-type]


def decode(line: bytes) -> PredictionRecord:
    """A record from a spill line; ValueError, TypeError or KeyError when it is not one."""
    data = orjson.loads(line)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return PredictionRecord(**data)


def as_record(r: PredictionRecord | EncodedRecord) -> PredictionRecord:
    """The record itself, decoding an encoded one; ValidationError if it cannot be read."""
    if type(r) is not EncodedRecord:
        return r  # type: ignore[return-value]
    try:
        return decode(r.line)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError(f"prediction log row unreadable: {exc}") from None


def json_array(records: Sequence[PredictionRecord | EncodedRecord]) -> bytes:
    """The records as one JSON array; encoded ones are copied in as they are."""
    if records and all(type(r) is EncodedRecord for r in records):
        return b"[" + b",".join(r.line for r in records) + b"]"  # type: ignore[union-attr]
    return orjson.dumps(
        [orjson.Fragment(r.line) if type(r) is EncodedRecord else r for r in records]  # type: ignore[union-attr]
    )


@dataclass
class Chunk:
    """Up to n records read from a spill file, and where the next chunk starts."""

    records: list[PredictionRecord]
    end: int
    bad_lines: int
    quarantine_error: str | None = None


class SpillFolder:
    """The spill files of one process, and the orphans it adopts."""

    def __init__(self, directory: str | Path, pid: int | None = None) -> None:
        self.dir = Path(directory)
        self.pid = pid or os.getpid()
        self.path = self.dir / f"predictions-{self.pid}.jsonl"
        self.quarantine = self.dir / f"quarantine-{self.pid}.jsonl"

    def prepare(self) -> None:
        """Create the folder; OSError when it cannot be."""
        self.dir.mkdir(parents=True, exist_ok=True)

    def append(self, records: Sequence[PredictionRecord]) -> int:
        """Append records and fsync; returns how many could not be encoded (left out).

        On OSError (full disk, read-only folder) the file is cut back to its previous size
        before the error propagates, so a torn batch never glues onto the next one.
        """
        parts: list[bytes] = []
        unencodable = 0
        for r in records:
            try:
                parts.append(encode(r))
            except TypeError:  # orjson.JSONEncodeError: a value JSON cannot hold
                unencodable += 1
        data = b"".join(parts)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            # The folder could not be made at start-up (or was removed since): try again.
            self.prepare()
            fd = os.open(self.path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # feature values: a file an older version made 0644 too
            size = os.fstat(fd).st_size
            # An earlier failure that could not be cut back left a torn tail: start afresh.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        return unencodable

    def pending_bytes(self) -> int:
        """Bytes of this process's spill and replay files (rows not yet in the database)."""
        total = 0
        for path in self._own_files():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def _own_files(self) -> list[Path]:
        try:
            return sorted(self.dir.glob(f"predictions-{self.pid}.*"))
        except OSError:
            return []

    def claim_orphans(self) -> list[Path]:
        """Files of processes that are gone, renamed to this process's replay files."""
        claimed: list[Path] = []
        try:
            candidates = sorted(self.dir.glob("predictions-*"))
        except OSError:
            return claimed
        for path in candidates:
            if _owner_alive(path, self.pid):
                continue
            target = self.dir / f"predictions-{self.pid}.replay-{time.time_ns()}"
            try:
                os.replace(path, target)
            except FileNotFoundError:
                continue  # another worker claimed it first
            except OSError:
                target = path  # a read-only folder: replay it where it is
            claimed.append(target)
        return claimed

    def replay_files(self) -> list[Path]:
        """This process's files with rows to replay: claimed orphans first, then its own."""
        files = [p for p in self._own_files() if p != self.path]
        with contextlib.suppress(OSError):
            if self.path.stat().st_size:
                files.append(self.path)
        return files

    def read(self, path: Path, n: int, start: int = 0) -> Iterator[Chunk]:
        """Chunks of up to n records from byte offset start; bad lines go to quarantine."""
        with open(path, "rb") as fh:
            fh.seek(start)
            offset = start
            records: list[PredictionRecord] = []
            bad: list[bytes] = []
            for line in fh:
                offset += len(line)
                if line.strip():
                    try:
                        records.append(decode(line))
                    except (ValueError, TypeError, KeyError):
                        bad.append(line if line.endswith(b"\n") else line + b"\n")
                if len(records) >= n:
                    yield Chunk(records, offset, len(bad), self._quarantine(bad))
                    records, bad = [], []
            if records or bad:
                yield Chunk(records, offset, len(bad), self._quarantine(bad))

    def _quarantine(self, lines: list[bytes]) -> str | None:
        """Keep unreadable lines aside; the error when the folder refuses them."""
        if lines:
            try:
                # Feature values are inside: for the service's user only, like the spill files.
                fd = os.open(self.quarantine, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                with open(fd, "ab") as fh:
                    os.fchmod(fd, 0o600)  # a file an older version made 0644
                    fh.write(b"".join(lines))
                    fh.flush()
                    os.fsync(fd)
            except OSError as exc:
                return exc.strerror or str(exc)
        return None

    def probe(self) -> None:
        """Write, fsync and remove a small file: OSError while the folder takes no rows."""
        self.prepare()
        probe = self.dir / f".probe-{self.pid}"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                probe.unlink()

    def discard(self, path: Path) -> bool:
        """Remove a replayed file (or empty it where the folder is read-only)."""
        try:
            path.unlink(missing_ok=True)
            return True
        except OSError:
            pass
        try:
            os.truncate(path, 0)
            return True
        except OSError:
            return False


def _owner_alive(path: Path, me: int) -> bool:
    """True when the process named in the file (`predictions-<pid>.…`) is running."""
    try:
        pid = int(path.name.split("-")[1].split(".")[0])
    except (IndexError, ValueError):
        return False
    if pid == me:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
