"""Where the artifact signing key comes from: the setting, or a 0600 file beside the artifacts."""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from pathlib import Path

from fsspec.core import url_to_fs

from pgmlops.domain.signing import MIN_KEY_BYTES
from pgmlops.errors import ConfigError

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
    """Resolved on first use, so commands that touch no artifact never create a key file."""

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

    def get(self) -> bytes:
        """The key bytes; a missing key file is created (0600) exactly once, even under races."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._resolve()
        return self._key

    def _resolve(self) -> bytes:
        if self._configured is not None:
            return self._configured
        if self.key_file is None:
            raise ConfigError(
                "no artifact signing key: the artifact root is not a local folder, so set "
                "PGMLOPS_SIGNING_KEY (the same value on every host that trains or serves)"
            )
        path = self.key_file
        if not path.exists():
            _create(path)
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
