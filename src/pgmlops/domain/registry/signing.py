"""Artifact signatures: HMAC-SHA256 with a key that never enters the database.

A registry row names a file and its sha256; anyone who can write that row can change both.
The signature binds the file's sha256 to what the file is (model, version, role), under a key
the database never holds, so a row edited by someone without the key, or pointed at another
version's signed file, no longer verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

SCHEME = "v1"
MIN_KEY_BYTES = 32
Verdict = Literal["ok", "unsigned", "other-key", "mismatch"]


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key, so an error can say 'signed with another key'."""
    return hashlib.sha256(b"pgmlops-signing-key-id\x00" + key).hexdigest()[:12]


def message(model_name: str, version: int, role: str, sha256: str, size: int) -> bytes:
    """The canonical bytes signed for one artifact: its digest and what it is."""
    fields = ("pgmlops-artifact", SCHEME, model_name, str(version), role, sha256, str(size))
    # NUL cannot occur in any field (names are validated, the rest are digits and hex).
    return "\x00".join(fields).encode()


def sign(key: bytes, model_name: str, version: int, role: str, sha256: str, size: int) -> str:
    """`v1:<key id>:<hex HMAC-SHA256>` for one artifact."""
    mac = hmac.new(key, message(model_name, version, role, sha256, size), hashlib.sha256)
    return f"{SCHEME}:{key_id(key)}:{mac.hexdigest()}"


def verify(
    key: bytes,
    signature: str | None,
    model_name: str,
    version: int,
    role: str,
    sha256: str,
    size: int,
) -> Verdict:
    """Whether `signature` is this key's signature of this artifact (constant-time compare)."""
    if not signature:
        return "unsigned"
    expected = sign(key, model_name, version, role, sha256, size)
    if hmac.compare_digest(signature.encode(), expected.encode()):
        return "ok"
    parts = signature.split(":")
    if len(parts) == 3 and parts[1] != key_id(key):
        return "other-key"
    return "mismatch"


def signature_key_id(signature: str) -> str:
    """The key id a signature claims (for error messages only; never trusted)."""
    parts = signature.split(":")
    return parts[1] if len(parts) == 3 else "?"
