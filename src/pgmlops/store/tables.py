"""SQLAlchemy tables. Rows never leave the store: repositories return domain records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JsonType = JSON().with_variant(JSONB(), "postgresql")
# SQLite has no 64-bit autoincrement through BigInteger; Integer is its rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps in UTC on every dialect (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JsonType,
        datetime: UTCDateTime(),
    }


class RegisteredModelRow(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="candidate")
    artifact_uri: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    files: Mapped[dict[str, Any]] = mapped_column(JsonType)
    card: Mapped[dict[str, Any]] = mapped_column(JsonType)
    source: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (
        # The alias points at (model, version): it can never name another model's version.
        ForeignKeyConstraint(
            ["model_id", "version"],
            ["model_versions.model_id", "model_versions.version"],
            name="fk_model_aliases_version",
        ),
    )

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # How the alias serves live traffic (challenger: shadow or canary), read with the version.
    deployment: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class PromotionEventRow(Base):
    __tablename__ = "promotion_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    candidate_version: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    primary_metric: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasEventRow(Base):
    __tablename__ = "alias_events"
    __table_args__ = (Index("ix_alias_events_model_alias", "model_id", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    previous_version: Mapped[int | None] = mapped_column(Integer)
    new_version: Mapped[int | None] = mapped_column(Integer)
    promotion_event_id: Mapped[int | None] = mapped_column(ForeignKey("promotion_events.id"))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deployment: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


# Feedback by key looks up the latest prediction per key; only keyed rows enter the index,
# so a log written without keys pays nothing for it.
_KEYED = text("entity_key IS NOT NULL")
_PAIRED = text("paired_id IS NOT NULL")


class PredictionRow(Base):
    """The prediction log.

    On PostgreSQL the table is range-partitioned on created_at (migration 0002; partitions in
    store/prediction_log/partitions.py) and its primary key is (id, created_at), since a partitioned
    table's unique keys must hold the partition key; `id` alone stays unique in practice (UUIDs).
    """

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_model_time", "model_name", "created_at"),
        Index(
            "ix_predictions_model_entity",
            "model_name",
            "entity_key",
            "created_at",
            postgresql_where=_KEYED,
            sqlite_where=_KEYED,
        ),
        Index(
            "ix_predictions_paired",
            "paired_id",
            postgresql_where=_PAIRED,
            sqlite_where=_PAIRED,
        ),
    )

    # No foreign key to model_versions: retention may delete a version whose old logs remain.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column()
    features: Mapped[dict[str, Any]] = mapped_column(JsonType)
    prediction: Mapped[str] = mapped_column(Text)
    probability: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    output: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    latency_ms: Mapped[float] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(String(64))
    entity_key: Mapped[str | None] = mapped_column(String(200))
    # Who answered: NULL for production, "canary" or "shadow" (migration 0005_live).
    role: Mapped[str | None] = mapped_column(String(16))
    # A shadow row's production prediction: the same record, scored by both.
    paired_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        # The join to predictions (monitoring, labels for retraining) looks labels up by id.
        Index("ix_feedback_prediction", "prediction_id", "superseded_at"),
        # Retention deletes labels by age (`pgmlops gc --predictions-older-than`).
        Index("ix_feedback_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    prediction_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    label: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A newer label replaces this one but the row stays, so both times are kept.
    superseded_at: Mapped[datetime | None] = mapped_column()


class LogSummaryRow(Base):
    """One closed hour of one version's prediction log, summarised
    (store/monitoring/log_summaries.py).

    ``spec`` names the points and categories the cells were counted on, so a change of the
    monitoring spec never mixes counts; ``rows`` is checked against the log before use.
    """

    __tablename__ = "log_summaries"

    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Whole hours since 1970 (UTC).
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    # numpy arrays in an .npz (store/monitoring/log_summaries.py pack): PostgreSQL never looks
    # inside.
    cells: Mapped[bytes] = mapped_column(LargeBinary)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitoringRunRow(Base):
    __tablename__ = "monitoring_runs"
    __table_args__ = (Index("ix_monitoring_runs_model", "model_name", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    window: Mapped[dict[str, Any]] = mapped_column(JsonType)
    report: Mapped[dict[str, Any]] = mapped_column(JsonType)
    dataset_drift: Mapped[bool] = mapped_column(Boolean)


class RetrainingRunRow(Base):
    __tablename__ = "retraining_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    triggers: Mapped[dict[str, Any]] = mapped_column(JsonType)
    data: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    candidate_version: Mapped[int | None] = mapped_column(Integer)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonType)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class LeaseRow(Base):
    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()


class WatermarkRow(Base):
    __tablename__ = "watermarks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServingCountRow(Base):
    """/predict requests per version, hour and outcome, summed over every serving process."""

    __tablename__ = "serving_counts"

    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Whole hours since 1970 (UTC).
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # answered, refused (4xx by the version's schema) or failed (5xx).
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)


class RollbackVerdictRow(Base):
    """One verdict of the watch after a promotion: rolled back, or refused (target broken)."""

    __tablename__ = "rollback_verdicts"
    __table_args__ = (
        UniqueConstraint("promotion_event_id", name="uq_rollback_verdicts_promotion"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    # The alias event that made `version` production: judged once.
    promotion_event_id: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    target_version: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    signal: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, Any]] = mapped_column(JsonType)
    actor: Mapped[str] = mapped_column(String(128))
    rollback_event_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
