"""pgmlops: the whole life of a tabular model, with PostgreSQL as the source of truth.

Everything a user may call from Python is listed in ``__all__`` below; nothing is imported
until first used, so ``import pgmlops`` stays cheap (PEP 562 module ``__getattr__``)::

    import pgmlops

    version = pgmlops.train(frame, target="Exited", model_name="churn")
    pgmlops.promote("churn")
    model = pgmlops.load("churn@production")   # or "churn/7", or "churn"
    model.predict(frame.drop(columns="Exited"))

The module functions use a default ``Client`` built from ``get_settings()`` (pgmlops.yaml and
PGMLOPS_* variables); ``Client("postgresql://...")`` works with another registry.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # the facade
    "Client": "pgmlops.client",
    "train": "pgmlops.client",
    "promote": "pgmlops.client",
    "rollback": "pgmlops.client",
    "deploy": "pgmlops.client",
    "compare": "pgmlops.client",
    "models": "pgmlops.client",
    "versions": "pgmlops.client",
    "load": "pgmlops.client",
    "monitor": "pgmlops.client",
    # what it returns
    "Model": "pgmlops.model",
    "MonitoringResult": "pgmlops.model",
    "ModelVersion": "pgmlops.domain.registry.records",
    "ModelOverview": "pgmlops.domain.registry.records",
    "AliasEvent": "pgmlops.domain.registry.records",
    "ModelCard": "pgmlops.domain.registry.card",
    "FeatureSchema": "pgmlops.domain.schema",
    "PromotionResult": "pgmlops.services.promotion",
    "TrainResult": "pgmlops.services.training",
    "RetrainOutcome": "pgmlops.services.retraining.runs",
    # settings and errors
    "Settings": "pgmlops.config",
    "get_settings": "pgmlops.config",
    "PgmlopsError": "pgmlops.errors",
    "ConfigError": "pgmlops.errors",
    "DataError": "pgmlops.errors",
    "NotFoundError": "pgmlops.errors",
    "ArtifactError": "pgmlops.errors",
    "ValidationError": "pgmlops.errors",
    "PromotionRefused": "pgmlops.errors",
    "TrainingError": "pgmlops.errors",
    "StoreError": "pgmlops.errors",
    "SchemaOutdatedError": "pgmlops.errors",
    "ConflictError": "pgmlops.errors",
    "SigningKeyError": "pgmlops.errors",
    # a warning that is no error (TrainResult.warnings)
    "Note": "pgmlops.errors",
}

# Equal to the export table; tests/unit/test_public_surface.py keeps the three lists in step.
__all__ = [
    "AliasEvent",
    "ArtifactError",
    "Client",
    "ConfigError",
    "ConflictError",
    "DataError",
    "FeatureSchema",
    "Model",
    "ModelCard",
    "ModelOverview",
    "ModelVersion",
    "MonitoringResult",
    "NotFoundError",
    "Note",
    "PgmlopsError",
    "PromotionRefused",
    "PromotionResult",
    "RetrainOutcome",
    "SchemaOutdatedError",
    "Settings",
    "SigningKeyError",
    "StoreError",
    "TrainResult",
    "TrainingError",
    "ValidationError",
    "__version__",
    "compare",
    "deploy",
    "get_settings",
    "load",
    "models",
    "monitor",
    "promote",
    "rollback",
    "train",
    "versions",
]

if TYPE_CHECKING:
    from pgmlops.client import (
        Client,
        compare,
        deploy,
        load,
        models,
        monitor,
        promote,
        rollback,
        train,
        versions,
    )
    from pgmlops.config import Settings, get_settings
    from pgmlops.domain.registry.card import ModelCard
    from pgmlops.domain.registry.records import AliasEvent, ModelOverview, ModelVersion
    from pgmlops.domain.schema import FeatureSchema
    from pgmlops.errors import (
        ArtifactError,
        ConfigError,
        ConflictError,
        DataError,
        Note,
        NotFoundError,
        PgmlopsError,
        PromotionRefused,
        SchemaOutdatedError,
        SigningKeyError,
        StoreError,
        TrainingError,
        ValidationError,
    )
    from pgmlops.model import Model, MonitoringResult
    from pgmlops.services.promotion import PromotionResult
    from pgmlops.services.retraining.runs import RetrainOutcome
    from pgmlops.services.training import TrainResult


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pgmlops' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
