"""Content-addressed artifact store on a local folder or any fsspec URL.

Nothing a registry row says is taken on trust: a URI must name a blob inside this store's
`objects/` folder (no other scheme, no path outside the root), the bytes must match the
row's sha256, and a version's files must carry a valid HMAC signature (domain/registry/signing.py)
under a key the database never holds before anything deserialises them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import uuid
from dataclasses import replace

from fsspec.core import url_to_fs

from pgmlops.domain.registry import signing
from pgmlops.domain.registry.records import ModelVersion, StoredFile
from pgmlops.errors import ArtifactError, ConfigError, SigningKeyError
from pgmlops.store.keys import SigningKey

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Writes each blob once under its sha256; every read is checked against that digest."""

    def __init__(
        self, root: str, key: SigningKey | None = None, *, trust_unsigned: bool = False
    ) -> None:
        self.root = root.rstrip("/") or "/"
        try:
            self._fs, self._base = url_to_fs(self.root)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"PGMLOPS_ARTIFACT_ROOT {root!r} is not usable: {exc}") from exc
        self._protocol = (
            self._fs.protocol if isinstance(self._fs.protocol, str) else self._fs.protocol[0]
        )
        self._local = self._protocol in ("file", "local")
        self.key = key or SigningKey(None, None)
        self.trust_unsigned = trust_unsigned

    def _uri(self, path: str) -> str:
        return path if self._local else f"{self._protocol}://{path}"

    def _objects(self) -> str:
        if self._local:
            return os.path.realpath(self._base) + os.sep + "objects" + os.sep
        return self._base.rstrip("/") + "/objects/"

    def _path(self, uri: str, what: str) -> str:
        """The filesystem path a registry URI names, refused unless it is inside objects/."""
        refusal = ArtifactError(
            f"{what} points outside the artifact root {self.root} ({uri[:80]!r}); refusing it"
        )
        if self._local:
            # A local store writes plain absolute paths: any scheme (data:, file:, http:) is
            # something this store never wrote.
            if _SCHEME.match(uri) or not os.path.isabs(uri):
                raise refusal
            path = os.path.realpath(uri)  # symlinks and '..' resolved before the check
        else:
            prefix = f"{self._protocol}://"
            if not uri.startswith(prefix):
                raise refusal
            path = uri[len(prefix) :]
            if posixpath.normpath(path) != path:
                raise refusal
        if not path.startswith(self._objects()):
            raise refusal
        return path

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
        path = self._path(stored.uri, what)
        try:
            with self._fs.open(path, "rb") as fh:
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

    # -- signatures ----------------------------------------------------------------------

    def sign(self, stored: StoredFile, model_name: str, version: int, role: str) -> StoredFile:
        """The same file with this key's signature for (model, version, role)."""
        self._path(stored.uri, f"{role} artifact of {model_name} v{version}")
        sig = signing.sign(self.key.get(), model_name, version, role, stored.sha256, stored.size)
        return replace(stored, signature=sig)

    def sign_files(
        self, model_name: str, version: int, files: dict[str, StoredFile]
    ) -> dict[str, StoredFile]:
        """Every file of a version, signed for its role."""
        return {role: self.sign(f, model_name, version, role) for role, f in files.items()}

    def check_signature(self, version: ModelVersion, role: str) -> signing.Verdict:
        """Whether a version's file carries this key's signature (reads no bytes)."""
        f = version.files[role]
        if not f.signature:
            return "unsigned"  # no key needed to say so (trust_unsigned loads without one)
        key = self.key.get(expected=signing.signature_key_id(f.signature))
        name, number = version.model_name, version.version
        return signing.verify(key, f.signature, name, number, role, f.sha256, f.size)

    def read(self, version: ModelVersion, role: str) -> bytes:
        """A version's file, refused unless inside the root, intact and signed by our key."""
        what = f"{role} artifact of {version.model_name} v{version.version}"
        if role not in version.files:
            raise ArtifactError(f"{what} is not in the registry")
        stored = version.files[role]
        self._path(stored.uri, what)
        verdict = self.check_signature(version, role)
        if verdict == "unsigned":
            if not self.trust_unsigned:
                raise ArtifactError(
                    f"{what} is unsigned; refusing to load it (sign existing versions with "
                    "`pgmlops artifacts sign`, or set trust_unsigned: true meanwhile)"
                )
            log.warning("loading %s unsigned because trust_unsigned is set", what)
        elif verdict == "other-key":
            theirs = signing.signature_key_id(stored.signature or "")
            raise SigningKeyError(
                f"{what} is signed with another key (key id {theirs}; this host's key "
                f"{signing.key_id(self.key.get())} from {self.key.source}); refusing to load it: "
                f"restore the key with id {theirs}, or if it was replaced on purpose, re-sign with "
                "`pgmlops artifacts rotate-key --old-key-file OLD_KEY_FILE`"
            )
        elif verdict == "mismatch":
            raise ArtifactError(
                f"{what} fails its signature check: the file or its registry row changed "
                "after signing; refusing to load it"
            )
        return self.get(stored, what)

    def delete(self, stored: StoredFile) -> None:
        """Remove a blob (retention); a blob already gone is fine."""
        path = self._path(stored.uri, "artifact to delete")
        try:
            if self._fs.exists(path):
                self._fs.rm(path)
        except OSError as exc:
            raise ArtifactError(f"cannot delete {stored.uri}: {exc}") from exc
