"""Plain records the store hands out: no ORM object ever leaves the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgmlops.domain.registry.card import ModelCard

PRODUCTION = "production"


@dataclass(frozen=True)
class StoredFile:
    """Where an artifact lives, the digest it must have, and its signature (if signed)."""

    uri: str
    sha256: str
    size: int
    signature: str | None = None

    def to_dict(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"uri": self.uri, "sha256": self.sha256, "size": self.size}
        if self.signature:
            out["signature"] = self.signature
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredFile:
        sig = data.get("signature")
        return cls(
            uri=str(data["uri"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            signature=str(sig) if sig else None,
        )


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its files, its card and the aliases that point at it."""

    model_name: str
    version: int
    status: str
    files: dict[str, StoredFile]
    card: ModelCard
    created_by: str
    created_at: datetime
    source: dict[str, Any] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def artifact(self) -> StoredFile:
        return self.files["model"]


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias: append-only history."""

    id: int
    model_name: str
    alias: str
    action: str
    previous_version: int | None
    new_version: int | None
    actor: str
    reason: str | None
    created_at: datetime
    promotion_event_id: int | None = None
    # A challenger's mode at this move ({"mode": "canary", "share": 0.1, ...}), else None.
    deployment: dict[str, Any] | None = None


@dataclass(frozen=True)
class AliasState:
    """Where an alias points now and how it serves live traffic (challenger only)."""

    version: int
    deployment: dict[str, Any] | None = None


@dataclass(frozen=True)
class PromotionEvent:
    """A promotion decision with every gate's numbers."""

    id: int
    model_name: str
    candidate_version: int
    champion_version: int | None
    decision: str
    primary_metric: str
    details: dict[str, Any]
    actor: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class ModelSummary:
    """A registered model with its versions, newest first."""

    name: str
    created_at: datetime
    versions: list[ModelVersion] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelOverview:
    """One registered model at a glance (`pgmlops models`, `pgmlops.models()`)."""

    name: str
    production_version: int | None
    versions: int
    latest_version: int | None
    last_trained: datetime | None
    primary_metric: str | None
    primary_value: float | None


@dataclass(slots=True)
class PredictionRecord:
    """One logged prediction, as the background writer stores it (built per request: slots)."""

    id: str
    model_name: str
    version: int
    created_at: datetime
    features: dict[str, Any]
    prediction: str
    probability: float | None
    confidence: float | None
    output: dict[str, Any] | None
    latency_ms: float
    request_id: str | None
    # The row's identifier (e.g. a customer id), so labels can come back by it.
    entity_key: str | None = None
    # Who answered: None for production, "canary" or "shadow"; a shadow row's production id.
    role: str | None = None
    paired_id: str | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    """A true label for a logged prediction; a newer one supersedes, both are kept."""

    prediction_id: str
    label: str
    created_at: datetime
    superseded_at: datetime | None = None
