"""Content-addressed artifact store on a local folder or any fsspec URL."""

from __future__ import annotations

import hashlib
import uuid

import fsspec
from fsspec.core import url_to_fs

from pgmlops.domain.records import StoredFile
from pgmlops.errors import ArtifactError, ConfigError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Writes each blob once under its sha256; every read is checked against that digest."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        try:
            self._fs, self._base = url_to_fs(self.root)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"PGMLOPS_ARTIFACT_ROOT {root!r} is not usable: {exc}") from exc
        self._protocol = (
            self._fs.protocol if isinstance(self._fs.protocol, str) else self._fs.protocol[0]
        )

    def _uri(self, path: str) -> str:
        return path if self._protocol == "file" else f"{self._protocol}://{path}"

    def put(self, data: bytes) -> StoredFile:
        """Store bytes under their digest (idempotent) and say where."""
        digest = sha256_bytes(data)
        path = f"{self._base}/objects/{digest[:2]}/{digest}"
        try:
            if not self._fs.exists(path):
                self._fs.makedirs(f"{self._base}/objects/{digest[:2]}", exist_ok=True)
                # Write aside then move, so a crash never leaves a truncated blob at `path`.
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                with self._fs.open(tmp, "wb") as fh:
                    fh.write(data)
                self._fs.mv(tmp, path)
        except OSError as exc:
            raise ArtifactError(f"cannot write artifact to {self.root}: {exc}") from exc
        return StoredFile(uri=self._uri(path), sha256=digest, size=len(data))

    def get(self, stored: StoredFile, what: str = "artifact") -> bytes:
        """Read bytes back and refuse them unless their sha256 matches the registry's."""
        try:
            with fsspec.open(stored.uri, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise ArtifactError(f"{what} is missing: {stored.uri} does not exist") from exc
        except OSError as exc:
            raise ArtifactError(f"cannot read {what} at {stored.uri}: {exc}") from exc
        digest = sha256_bytes(data)
        if digest != stored.sha256:
            raise ArtifactError(
                f"{what} at {stored.uri} fails its integrity check: sha256 {digest[:12]}… "
                f"does not match the registry's {stored.sha256[:12]}…; refusing to load it"
            )
        return data

    def delete(self, stored: StoredFile) -> None:
        """Remove a blob (retention); a blob already gone is fine."""
        try:
            with_fs, path = url_to_fs(stored.uri)
            if with_fs.exists(path):
                with_fs.rm(path)
        except OSError as exc:
            raise ArtifactError(f"cannot delete {stored.uri}: {exc}") from exc
