"""What every service needs: settings, the database, the registry and the artifact store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgmlops.config import Settings
from pgmlops.store.artifacts import ArtifactStore
from pgmlops.store.db import Database
from pgmlops.store.keys import SigningKey, default_key_file
from pgmlops.store.registry.versions import RegistryStore

if TYPE_CHECKING:
    from pgmlops.services.mlflow_sync import MlflowMirror


@dataclass
class Context:
    """Built once per process (CLI command, API worker) and passed to services."""

    settings: Settings
    db: Database = field(init=False)
    artifacts: ArtifactStore = field(init=False)
    registry: RegistryStore = field(init=False)
    # Set when mlflow_tracking_uri is: mirrors every alias move made through this context.
    mlflow_mirror: MlflowMirror | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.db = Database(self.settings.database_url)
        configured = self.settings.signing_key
        key = SigningKey(
            configured.get_secret_value().encode() if configured else None,
            default_key_file(self.settings.artifact_root),
        )
        self.artifacts = ArtifactStore(
            self.settings.artifact_root, key, trust_unsigned=self.settings.trust_unsigned
        )
        self.registry = RegistryStore(self.db, self.artifacts)
        if self.settings.mlflow_tracking_uri:
            from pgmlops.services.mlflow_sync import MlflowMirror

            self.mlflow_mirror = MlflowMirror(
                self.settings.mlflow_tracking_uri, self.registry, self.artifacts
            )
            self.registry.alias_listeners.append(self.mlflow_mirror)

    def close(self) -> None:
        self.db.dispose()
