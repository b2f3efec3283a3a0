"""Where the artifact signing key comes from: the setting, or a 0600 file beside the artifacts."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from pathlib import Path

from fsspec.core import url_to_fs

from pgmlops.domain.registry.signing import MIN_KEY_BYTES
from pgmlops.errors import ConfigError, SigningKeyError

log = logging.getLogger(__name__)

KEY_FILE_NAME = "signing.key"


def default_key_file(artifact_root: str) -> Path | None:
    """`signing.key` in the folder holding a local artifact root; None for a remote root."""
    try:
        fs, base = url_to_fs(artifact_root)
    except (ValueError, ImportError):
        return None
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" not in protocols and "local" not in protocols:
        return None
    return Path(base).resolve().parent / KEY_FILE_NAME


class SigningKey:
    """Resolved on first use and never created by a read.

    Only first-time setup (a registry with no signed file) and `pgmlops artifacts new-key`
    call `create()`: a key file recreated by a read would silently orphan every signature.
    """

    def __init__(self, configured: bytes | None, key_file: Path | None) -> None:
        self._configured = configured
        self.key_file = key_file
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        """Where the key comes from, for messages (never the key itself)."""
        if self._configured is not None:
            return "PGMLOPS_SIGNING_KEY"
        return f"key file {self.key_file}" if self.key_file else "nowhere"

    def present(self) -> bool:
        """Whether a key is configured or its file exists (reads nothing else)."""
        return self._configured is not None or bool(self.key_file and self.key_file.exists())

    def get(self, expected: str | None = None) -> bytes:
        """The key bytes; SigningKeyError naming `expected` (a key id) when there is none."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._resolve(expected)
        return self._key

    def create(self) -> bytes:
        """Make the key file if it does not exist yet (0600, race-free) and return the key."""
        if self._configured is None and self.key_file is not None and not self.key_file.exists():
            _create(self.key_file)
        return self.get()

    def _resolve(self, expected: str | None) -> bytes:
        if self._configured is not None:
            return self._configured
        if self.key_file is None:
            raise ConfigError(
                "no artifact signing key: the artifact root is not a local folder, so set "
                "PGMLOPS_SIGNING_KEY (the same value on every host that trains or serves)"
            )
        path = self.key_file
        if not path.exists():
            raise SigningKeyError(missing_key_message(path, expected))
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the signing key file {path}: {exc}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("signing key file %s is readable by others; chmod 600 it", path)
        key = text.encode()
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"signing key file {path} holds fewer than {MIN_KEY_BYTES} characters"
            )
        return key


def missing_key_message(path: Path, expected: str | None) -> str:
    """One line: which key is missing, which id it had, and how to get it back."""
    signed = f"; the registry's files are signed with key id {expected}" if expected else ""
    return (
        f"the artifact signing key file {path} is missing{signed}: restore that file from "
        "your backup (or set PGMLOPS_SIGNING_KEY to the same key); `pgmlops artifacts new-key` "
        "makes a new key, under which nothing signed before will load"
    )


def _create(path: Path) -> None:
    """Write a fresh random key aside, then link it into place: two processes never differ."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            try:
                os.link(tmp, path)  # fails if another process created it first: theirs wins
                log.warning("created artifact signing key %s (keep it; back it up)", path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the signing key file {path}: {exc.strerror or exc}; "
            "set PGMLOPS_SIGNING_KEY instead"
        ) from exc
