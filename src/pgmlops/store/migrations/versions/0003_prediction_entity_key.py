"""predictions.entity_key: the row's identifier, so labels can be joined by it

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEYED = sa.text("entity_key IS NOT NULL")


def upgrade() -> None:
    # Nullable with no default: PostgreSQL adds it without rewriting the table.
    op.add_column("predictions", sa.Column("entity_key", sa.String(length=200), nullable=True))
    # Partial: existing rows have no key, so the index starts empty.
    op.create_index(
        "ix_predictions_model_entity",
        "predictions",
        ["model_name", "entity_key", "created_at"],
        unique=False,
        postgresql_where=_KEYED,
        sqlite_where=_KEYED,
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_model_entity", table_name="predictions")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("entity_key")
