"""Model registry repository: registered models, their versions and where the aliases point.

Moving an alias, and its audit trail, is in store/registry/alias_moves.py (`AliasMoves`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.card_document import CARD_ROLE
from pgmlops.domain.registry.records import AliasState, ModelSummary, ModelVersion, StoredFile
from pgmlops.domain.registry.signing import signature_key_id
from pgmlops.errors import ConflictError, NotFoundError, SigningKeyError, StoreError
from pgmlops.store.artifacts import ArtifactStore
from pgmlops.store.db import Database
from pgmlops.store.keys import missing_key_message
from pgmlops.store.registry.alias_moves import AliasListener, AliasMoves
from pgmlops.store.registry.cards import store_card, verified_version
from pgmlops.store.tables import (
    ModelAliasRow,
    ModelVersionRow,
    RegisteredModelRow,
    utcnow,
)


def _version(row: ModelVersionRow, name: str, aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        model_name=name,
        version=row.version,
        status=row.status,
        files={k: StoredFile.from_dict(v) for k, v in row.files.items()},
        card=ModelCard.model_validate(row.card),
        created_by=row.created_by,
        created_at=row.created_at,
        source=row.source,
        aliases=aliases,
    )


class RegistryStore(AliasMoves):
    """Every method is one transaction; what it returns is plain records.

    `get_version` and `latest_version` hand out a version's card and source as signed at
    registration (store/registry/cards.py); `recorded_version` and `list_models` hand out what the
    rows say, for listing and for `pgmlops artifacts sign`, never to decide what code runs.
    """

    def __init__(self, db: Database, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts
        self.alias_listeners: list[AliasListener] = []

    # -- models and versions -------------------------------------------------------------

    def _model(self, s: Session, name: str, *, lock: bool = False) -> RegisteredModelRow:
        stmt = select(RegisteredModelRow).where(RegisteredModelRow.name == name)
        if lock and self.db.is_postgres:
            stmt = stmt.with_for_update()
        row = s.scalars(stmt).one_or_none()
        if row is None:
            raise NotFoundError(
                f"model {name!r} is not registered (train one with `pgmlops train`)"
            )
        return row

    def _aliases_of(self, s: Session, model_id: int) -> dict[int, tuple[str, ...]]:
        out: dict[int, list[str]] = {}
        for a in s.scalars(select(ModelAliasRow).where(ModelAliasRow.model_id == model_id)):
            out.setdefault(a.version, []).append(a.alias)
        return {k: tuple(sorted(v)) for k, v in out.items()}

    def create_version(
        self,
        name: str,
        files: dict[str, StoredFile],
        card: ModelCard,
        created_by: str,
        source: dict[str, Any] | None = None,
        sign: Callable[[int, dict[str, StoredFile]], dict[str, StoredFile]] | None = None,
    ) -> ModelVersion:
        """Register a new candidate version; its artifacts must already be stored.

        `sign(number, files)` signs the files once the version number is allocated, inside
        the same transaction: a version never exists with unsigned files. The card and the
        source are written as the version's `card` file first, so they are signed with it.
        """
        if "model" not in files:
            raise StoreError("a version needs its 'model' artifact before it can be registered")
        if sign is not None:
            self.signing_key_for_writing()
        card = card.model_copy(update={"model_name": name})
        files = {**files, CARD_ROLE: store_card(self.artifacts, card, source)}
        with self.db.session() as s:
            model = s.scalars(
                select(RegisteredModelRow).where(RegisteredModelRow.name == name)
            ).one_or_none()
            if model is None:
                model = RegisteredModelRow(name=name, created_at=utcnow())
                s.add(model)
                try:
                    s.flush()
                except IntegrityError:
                    raise ConflictError(f"model {name!r} was created concurrently; retry") from None
            model = self._model(s, name, lock=True)
            latest = s.scalars(
                select(ModelVersionRow.version)
                .where(ModelVersionRow.model_id == model.id)
                .order_by(ModelVersionRow.version.desc())
                .limit(1)
            ).first()
            number = (latest or 0) + 1
            if sign is not None:
                files = sign(number, files)
            row = ModelVersionRow(
                model_id=model.id,
                version=number,
                status="candidate",
                artifact_uri=files["model"].uri,
                artifact_sha256=files["model"].sha256,
                files={k: v.to_dict() for k, v in files.items()},
                card=card.model_dump(mode="json"),
                source=source,
                created_by=created_by,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return _version(row, name, ())

    def set_files(self, name: str, version: int, files: dict[str, StoredFile]) -> None:
        """Replace a version's file records (signing existing versions)."""
        if "model" not in files:
            raise StoreError("a version's files must include its 'model' artifact")
        with self.db.session() as s:
            row = self._version_row(s, self._model(s, name), name, version)
            row.files = {k: v.to_dict() for k, v in files.items()}
            row.artifact_uri = files["model"].uri
            row.artifact_sha256 = files["model"].sha256

    def signing_key_for_writing(self) -> bytes:
        """The key new files are signed with; created only on a registry with no signature.

        A registry whose files are signed but whose key file is gone has lost its key: a new
        one would orphan every version, so the error names the key id to restore instead.
        """
        key = self.artifacts.key
        if key.present():
            return key.get()
        used = self.signature_key_ids()
        if used:
            expected = used.most_common(1)[0][0]
            if key.key_file is None:
                return key.get(expected)  # the ConfigError says to set PGMLOPS_SIGNING_KEY
            raise SigningKeyError(missing_key_message(key.key_file, expected))
        return key.create()

    def signature_key_ids(self) -> Counter[str]:
        """How many registered files each key id signed (first-time setup has none)."""
        found: Counter[str] = Counter()
        with self.db.session() as s:
            for files in s.scalars(select(ModelVersionRow.files)):
                for entry in (files or {}).values():
                    sig = entry.get("signature") if isinstance(entry, dict) else None
                    if sig:
                        found[signature_key_id(str(sig))] += 1
        return found

    def get_version(self, name: str, version: int) -> ModelVersion:
        """A version whose card and source are the signed ones (ArtifactError otherwise)."""
        return verified_version(self.artifacts, self.recorded_version(name, version))

    def recorded_version(self, name: str, version: int) -> ModelVersion:
        """A version as its row says, unverified: for listing and signing only."""
        with self.db.session() as s:
            model = self._model(s, name)
            row = self._version_row(s, model, name, version)
            return _version(row, name, self._aliases_of(s, model.id).get(version, ()))

    @staticmethod
    def _version_row(
        s: Session, model: RegisteredModelRow, name: str, version: int
    ) -> ModelVersionRow:
        row = s.scalars(
            select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.version == version
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"model {name!r} has no version {version}")
        return row

    def latest_version(self, name: str) -> ModelVersion:
        """The newest version, its card and source the signed ones (ArtifactError otherwise)."""
        return verified_version(self.artifacts, self.latest_recorded(name))

    def latest_recorded(self, name: str) -> ModelVersion:
        """The newest version as its row says, unverified."""
        with self.db.session() as s:
            model = self._model(s, name)
            row = s.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_id == model.id)
                .order_by(ModelVersionRow.version.desc())
                .limit(1)
            ).first()
            if row is None:
                raise NotFoundError(f"model {name!r} has no versions")
            return _version(row, name, self._aliases_of(s, model.id).get(row.version, ()))

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version an alias points at now, or None."""
        with self.db.session() as s:
            return self._alias_version(s, name, alias)

    def _alias_version(self, s: Session, name: str, alias: str) -> int | None:
        return s.scalars(
            select(ModelAliasRow.version)
            .join(RegisteredModelRow, RegisteredModelRow.id == ModelAliasRow.model_id)
            .where(RegisteredModelRow.name == name, ModelAliasRow.alias == alias)
        ).one_or_none()

    def alias_states(self, name: str) -> dict[str, AliasState]:
        """Every alias of a model with its version and deployment, in one query ({} if none)."""
        with self.db.session() as s:
            rows = s.execute(
                select(ModelAliasRow.alias, ModelAliasRow.version, ModelAliasRow.deployment)
                .join(RegisteredModelRow, RegisteredModelRow.id == ModelAliasRow.model_id)
                .where(RegisteredModelRow.name == name)
            )
            return {r.alias: AliasState(r.version, r.deployment) for r in rows}

    def model_names(self) -> list[str]:
        with self.db.session() as s:
            return list(
                s.scalars(select(RegisteredModelRow.name).order_by(RegisteredModelRow.name))
            )

    def list_models(self, name: str | None = None) -> list[ModelSummary]:
        """Registered models with versions (newest first) and their aliases."""
        with self.db.session() as s:
            stmt = select(RegisteredModelRow).order_by(RegisteredModelRow.name)
            if name is not None:
                stmt = stmt.where(RegisteredModelRow.name == name)
            models = list(s.scalars(stmt))
            if name is not None and not models:
                raise NotFoundError(f"model {name!r} is not registered")
            out = []
            for m in models:
                aliases = self._aliases_of(s, m.id)
                rows = s.scalars(
                    select(ModelVersionRow)
                    .where(ModelVersionRow.model_id == m.id)
                    .order_by(ModelVersionRow.version.desc())
                )
                versions = [_version(r, m.name, aliases.get(r.version, ())) for r in rows]
                by_alias = {a: v for v, names in aliases.items() for a in names}
                out.append(ModelSummary(m.name, m.created_at, versions, by_alias))
            return out
