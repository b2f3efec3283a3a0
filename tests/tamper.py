"""What someone who can write the database (but holds no signing key) can do to a version."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from pgmlops.store.tables import ModelVersionRow, RegisteredModelRow


def rewrite_files(
    ctx, name: str, version: int, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """Edit a version's `files` JSON (and its artifact columns) in place, as raw SQL would."""
    with ctx.db.session() as s:
        row = s.scalars(
            select(ModelVersionRow)
            .join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
            .where(RegisteredModelRow.name == name, ModelVersionRow.version == version)
        ).one()
        files = change({k: dict(v) for k, v in row.files.items()})
        row.files = files
        row.artifact_uri = files["model"]["uri"]
        row.artifact_sha256 = files["model"]["sha256"]


def set_file(ctx, name: str, version: int, role: str, **fields: Any) -> None:
    """Point one role at other bytes; a field set to None is removed (e.g. signature=None)."""

    def change(files: dict[str, Any]) -> dict[str, Any]:
        entry = {**files[role], **fields}
        files[role] = {k: v for k, v in entry.items() if v is not None}
        return files

    rewrite_files(ctx, name, version, change)


def strip_signatures(ctx, name: str, version: int) -> None:
    """The registry as it was before signing existed."""
    rewrite_files(
        ctx,
        name,
        version,
        lambda files: {
            k: {f: v for f, v in entry.items() if f != "signature"} for k, entry in files.items()
        },
    )


def rewrite_row(
    ctx,
    name: str,
    version: int,
    card: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    source: Callable[[Any], Any] | None = None,
) -> None:
    """Edit a version's `card` and/or `source` JSON in place, as raw SQL would."""
    with ctx.db.session() as s:
        row = s.scalars(
            select(ModelVersionRow)
            .join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
            .where(RegisteredModelRow.name == name, ModelVersionRow.version == version)
        ).one()
        if card is not None:
            row.card = card(copy.deepcopy(row.card))
        if source is not None:
            row.source = source(copy.deepcopy(row.source))
