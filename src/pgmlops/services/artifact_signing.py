"""Signing keys and signatures: first-time setup, signing old versions, new keys, rotation.

The sign rule (docs/security.md): a version is signed whole when it is registered, so
`pgmlops artifacts sign` never signs an unsigned file of a version whose other files are
signed (that file was added or swapped later, by someone without the key). A version with no
signature at all (registered before signing existed), or one without its signed card
(registered before cards existed), is signed only when the operator names it and the digest
of exactly what will be signed, as listed: the command is never a signing oracle for files
the project did not produce, and never signs what it has not shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pgmlops.domain.registry import signing
from pgmlops.domain.registry.card_document import CARD_ROLE
from pgmlops.domain.registry.records import ModelVersion, StoredFile
from pgmlops.domain.registry.signing import MIN_KEY_BYTES, key_id
from pgmlops.errors import ArtifactError, ConfigError
from pgmlops.services.context import Context
from pgmlops.store.registry.cards import card_bytes, store_card

log = logging.getLogger(__name__)

_BAD_SIGNATURE = {
    "other-key": "signed with another key",
    "mismatch": "signature does not match (file or row changed after signing)",
}


def signing_key_for_writing(ctx: Context) -> bytes:
    """The key new artifacts are signed with (see RegistryStore.signing_key_for_writing)."""
    return ctx.registry.signing_key_for_writing()


def _digest(name: str, number: int, files: dict[str, StoredFile], card: bytes | None) -> str:
    """What the operator confirms: the files and the card document about to be signed."""
    body = {
        "model": name,
        "version": number,
        "files": {r: [f.uri, f.sha256, f.size] for r, f in sorted(files.items())},
        "card": hashlib.sha256(card).hexdigest() if card is not None else None,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _what_runs(v: ModelVersion) -> dict[str, Any]:
    """The card fields that decide code, shown before the operator vouches for them."""
    training = v.card.training
    source = v.source or {}
    return {
        "estimator": v.card.estimator,
        "training.estimator": training.get("estimator"),
        "training.features": training.get("features"),
        "source": source.get("query") or source.get("path"),
    }


def _plan(ctx: Context, v: ModelVersion) -> tuple[dict[str, Any] | None, list[str], int]:
    """(what confirming this version would sign, or None; refusals; files already signed)."""
    name, number = v.model_name, v.version
    verdicts = {role: ctx.artifacts.check_signature(v, role) for role in v.files}
    refused = [
        f"{name} v{number} {role}: {_BAD_SIGNATURE[verdict]}"
        for role, verdict in verdicts.items()
        if verdict in _BAD_SIGNATURE
    ]
    ok = [role for role, verdict in verdicts.items() if verdict == "ok"]
    unsigned = [role for role, verdict in verdicts.items() if verdict == "unsigned"]
    if ok and unsigned:
        refused += [
            f"{name} v{number} {role}: unsigned while {len(ok)} of the version's files are "
            "already signed (a version is signed whole at registration, so this file was "
            "added or changed since); not signing it: restore the row from a backup"
            for role in unsigned
        ]
    if refused or (ok and CARD_ROLE in v.files):
        return None, refused, len(ok)
    files = {r: v.files[r] for r in unsigned if r != CARD_ROLE}
    for role, stored in files.items():
        try:
            ctx.artifacts.get(stored, f"{role} artifact of {name} v{number}")
        except ArtifactError as exc:
            refused.append(f"{name} v{number} {role}: {exc}")
    if refused:
        return None, refused, len(ok)
    card = card_bytes(v.card, v.source)
    plan = {
        "model_name": name,
        "version": number,
        "files": {r: {"sha256": f.sha256, "size": f.size} for r, f in files.items()},
        "card": _what_runs(v),
        "digest": _digest(name, number, files, card),
    }
    return plan, [], len(ok)


def sign_artifacts_command(
    ctx: Context,
    *,
    model_name: str | None,
    version: int | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """List what waits for a confirmed signature; sign the one version named with its digest."""
    if (version is None) != (digest is None) or (version is not None and not model_name):
        raise ConfigError(
            "model_name, version and digest go together: give all three, as the listing of "
            "unsigned versions shows them",
            params=("model_name", "version", "digest"),
        )
    key = signing_key_for_writing(ctx)
    names = [model_name] if model_name else ctx.registry.model_names()
    to_confirm: list[dict[str, Any]] = []
    refused: list[str] = []
    already = 0
    signed: list[dict[str, Any]] = []
    for name in names:
        versions = (
            [ctx.registry.recorded_version(name, version)]
            if version is not None
            else ctx.registry.list_models(name)[0].versions
        )
        for v in versions:
            plan, problems, ok = _plan(ctx, v)
            refused += problems
            already += ok
            if plan is None:
                continue
            if version is None:
                to_confirm.append(plan)
            elif plan["digest"] != digest:
                raise ArtifactError(
                    f"{name} v{version}'s digest is {plan['digest']}, not {digest}: what would be "
                    "signed changed since it was listed (or the digest is mistyped); nothing signed"
                )
            else:
                signed.append(_sign_version(ctx, v, list(plan["files"])))
    return {
        "key": ctx.artifacts.key.source,
        "key_id": key_id(key),
        "signed": signed,
        "files_signed": sum(len(s["roles"]) for s in signed),
        "already_signed": already,
        "to_confirm": to_confirm,
        "refused": refused,
    }


def _sign_version(ctx: Context, v: ModelVersion, roles: list[str]) -> dict[str, Any]:
    """Sign a confirmed version's unsigned files and write its signed card from its row."""
    files = dict(v.files)
    name, number = v.model_name, v.version
    files[CARD_ROLE] = store_card(ctx.artifacts, v.card, v.source)
    for role in [*roles, CARD_ROLE]:
        files[role] = ctx.artifacts.sign(files[role], name, number, role)
    ctx.registry.set_files(name, number, files)
    return {"model_name": name, "version": number, "roles": [*roles, CARD_ROLE]}


def new_key_command(ctx: Context) -> dict[str, Any]:
    """Create the key file; never overwrite one, never when the key comes from the setting."""
    key = ctx.artifacts.key
    if key.key_file is None or key.source == "PGMLOPS_SIGNING_KEY":
        raise ConfigError(
            f"the signing key comes from {key.source}, not a key file: generate a new value "
            "with `python -c 'import secrets; print(secrets.token_hex(32))'` instead"
        )
    if key.key_file.exists():
        raise ConfigError(
            f"{key.key_file} already exists (key id {key_id(key.get())}); it is never "
            "overwritten: move it aside first and keep it for `pgmlops artifacts rotate-key`"
        )
    made = key.create()
    others = {k: n for k, n in ctx.registry.signature_key_ids().items() if k != key_id(made)}
    return {"key": key.source, "key_id": key_id(made), "files_signed_by_other_keys": others}


def read_key_file(path: Path) -> bytes:
    """A key file given on the command line (rotation's old key)."""
    try:
        key = path.read_text(encoding="ascii").strip().encode()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the key file {path}: {exc}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"key file {path} holds fewer than {MIN_KEY_BYTES} characters")
    return key


def rotate_key_command(ctx: Context, old_key_file: Path) -> dict[str, Any]:
    """Re-sign with this host's key exactly the files whose signature verifies under the old one."""
    old = read_key_file(old_key_file)
    new = ctx.artifacts.key.get()
    if old == new:
        raise ConfigError(f"{old_key_file} holds the current key (key id {key_id(new)})")
    resigned = already = 0
    left: list[str] = []
    for summary in ctx.registry.list_models():
        for v in summary.versions:
            files = dict(v.files)
            changed = False
            for role, f in v.files.items():
                args = (v.model_name, v.version, role, f.sha256, f.size)
                if signing.verify(new, f.signature, *args) == "ok":
                    already += 1
                elif signing.verify(old, f.signature, *args) == "ok":
                    files[role] = ctx.artifacts.sign(f, v.model_name, v.version, role)
                    resigned += 1
                    changed = True
                else:
                    why = "unsigned" if not f.signature else "signed by neither key"
                    left.append(f"{v.model_name} v{v.version} {role}: {why}")
            if changed:
                ctx.registry.set_files(v.model_name, v.version, files)
    return {
        "old_key_id": key_id(old),
        "key_id": key_id(new),
        "files_resigned": resigned,
        "already_signed": already,
        "left": left,
    }
