"""live deployments: the challenger's mode on its alias, roles and pairs in the prediction log

Revision ID: 0005_live
Revises: 0004
Create Date: 2026-12-06

`model_aliases.deployment` holds how the alias serves (shadow, or canary with its share and
sticky key) so every worker and host reads the same mode with the version; `alias_events`
keeps a copy for the history. `predictions.role` says who answered (NULL: production, as
every row written before this revision) and `paired_id` links a shadow row to the production
prediction it shadowed. All nullable with no default: PostgreSQL adds them without a rewrite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_live"
down_revision = "0004"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_PAIRED = sa.text("paired_id IS NOT NULL")


def upgrade() -> None:
    op.add_column("model_aliases", sa.Column("deployment", _JSON, nullable=True))
    op.add_column("alias_events", sa.Column("deployment", _JSON, nullable=True))
    op.add_column("predictions", sa.Column("role", sa.String(length=16), nullable=True))
    op.add_column("predictions", sa.Column("paired_id", sa.Uuid(), nullable=True))
    # Live comparison joins shadow rows to their production rows; only shadow rows enter.
    op.create_index(
        "ix_predictions_paired",
        "predictions",
        ["paired_id"],
        unique=False,
        postgresql_where=_PAIRED,
        sqlite_where=_PAIRED,
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_paired", table_name="predictions")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("paired_id")
        batch_op.drop_column("role")
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.drop_column("deployment")
    with op.batch_alter_table("model_aliases", schema=None) as batch_op:
        batch_op.drop_column("deployment")
