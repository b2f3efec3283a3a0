"""rollback watch: requests per version and hour, and the verdicts of automatic rollback

Revision ID: 0006_rollback
Revises: 0005_live
Create Date: 2026-12-06

`serving_counts` holds, per model, version, hour and outcome (answered, refused, failed), how
many /predict requests every serving process on every host handled: the prediction log
holds answered rows only, so a version's error rate is known from here. `rollback_verdicts`
keeps each verdict of the watch after a promotion (rolled back, or refused because the
target failed artifact verification): one per promotion move, so it is never judged twice,
and serve's /metrics counts them. New, empty tables: nothing to move.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006_rollback"
down_revision = "0005_live"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "serving_counts",
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "version", "hour", "outcome"),
    )
    op.create_table(
        "rollback_verdicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("promotion_event_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("target_version", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("signal", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("figures", _JSON, nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("rollback_event_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("promotion_event_id", name="uq_rollback_verdicts_promotion"),
    )


def downgrade() -> None:
    op.drop_table("rollback_verdicts")
    op.drop_table("serving_counts")
