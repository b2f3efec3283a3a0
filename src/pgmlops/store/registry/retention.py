"""What retention needs from the database: versions, recent use, references, deletion."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from pgmlops.domain.registry.records import StoredFile
from pgmlops.errors import NotFoundError
from pgmlops.store.db import Database
from pgmlops.store.tables import (
    ModelAliasRow,
    ModelVersionRow,
    PredictionRow,
    RegisteredModelRow,
    WatermarkRow,
)


@dataclass(frozen=True)
class VersionFiles:
    """A version's number, aliases, age and stored files (the card is not read)."""

    version: int
    aliases: tuple[str, ...]
    created_at: datetime
    files: dict[str, StoredFile]


class RetentionStore:
    """Reads are plain records; `delete_versions` is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def versions(self, model_name: str) -> list[VersionFiles]:
        """Newest first."""
        with self.db.session() as s:
            model_id = s.scalars(
                select(RegisteredModelRow.id).where(RegisteredModelRow.name == model_name)
            ).one_or_none()
            if model_id is None:
                raise NotFoundError(f"model {model_name!r} is not registered")
            aliases: dict[int, list[str]] = {}
            for alias, version in s.execute(
                select(ModelAliasRow.alias, ModelAliasRow.version).where(
                    ModelAliasRow.model_id == model_id
                )
            ):
                aliases.setdefault(version, []).append(alias)
            rows = s.execute(
                select(ModelVersionRow.version, ModelVersionRow.created_at, ModelVersionRow.files)
                .where(ModelVersionRow.model_id == model_id)
                .order_by(ModelVersionRow.version.desc())
            )
            return [
                VersionFiles(
                    version=r.version,
                    aliases=tuple(sorted(aliases.get(r.version, []))),
                    created_at=r.created_at,
                    files={k: StoredFile.from_dict(v) for k, v in (r.files or {}).items()},
                )
                for r in rows
            ]

    def served_since(self, model_name: str, since: datetime) -> set[int]:
        """Versions that logged a prediction at or after `since`."""
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(PredictionRow.version)
                    .where(
                        PredictionRow.model_name == model_name, PredictionRow.created_at >= since
                    )
                    .distinct()
                )
            )

    def referenced_digests(self, exclude: Collection[tuple[str, int]] = ()) -> set[str]:
        """sha256 of every blob used by a version (not in `exclude`) or a watermark."""
        digests: set[str] = set()
        skip = set(exclude)
        with self.db.session() as s:
            rows = s.execute(
                select(
                    RegisteredModelRow.name, ModelVersionRow.version, ModelVersionRow.files
                ).join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
            )
            for name, version, files in rows:
                if (name, version) not in skip:
                    digests.update(str(f["sha256"]) for f in (files or {}).values())
            for value in s.scalars(select(WatermarkRow.value)):
                try:
                    rows_file = json.loads(value).get("rows")
                except (ValueError, AttributeError):
                    continue
                if isinstance(rows_file, dict) and "sha256" in rows_file:
                    digests.add(str(rows_file["sha256"]))
        return digests

    def delete_versions(self, model_name: str, versions: list[int]) -> list[VersionFiles]:
        """Delete these versions unless an alias points at one by now; returns those deleted."""
        if not versions:
            return []
        with self.db.session() as s:
            stmt = select(RegisteredModelRow).where(RegisteredModelRow.name == model_name)
            if self.db.is_postgres:
                # Same row lock as alias moves: no alias can land on a version being deleted.
                stmt = stmt.with_for_update()
            model = s.scalars(stmt).one_or_none()
            if model is None:
                raise NotFoundError(f"model {model_name!r} is not registered")
            aliased = set(
                s.scalars(select(ModelAliasRow.version).where(ModelAliasRow.model_id == model.id))
            )
            doomed = [v for v in versions if v not in aliased]
            rows = s.execute(
                select(ModelVersionRow.version, ModelVersionRow.created_at, ModelVersionRow.files)
                .where(ModelVersionRow.model_id == model.id, ModelVersionRow.version.in_(doomed))
                .order_by(ModelVersionRow.version.desc())
            ).all()
            s.execute(
                delete(ModelVersionRow).where(
                    ModelVersionRow.model_id == model.id, ModelVersionRow.version.in_(doomed)
                )
            )
            return [
                VersionFiles(
                    r.version,
                    (),
                    r.created_at,
                    {k: StoredFile.from_dict(v) for k, v in (r.files or {}).items()},
                )
                for r in rows
            ]
