"""log_summaries: closed hours of the prediction log, summarised for monitoring

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

Monitoring a window on PostgreSQL sums each closed hour's stored cells instead of scanning its
rows again (store/monitoring/log_summaries.py). A new, empty table: nothing to move. SQLite gets it
too (unused there: SQLite reads rows).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# The hour expression of store/monitoring/window_cells.py's HOUR_OF (without the alias).
_HOUR = "((floor(date_part('epoch', created_at) / 3600))::bigint)"


def upgrade() -> None:
    op.create_table(
        "log_summaries",
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("cells", sa.LargeBinary(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "version", "spec", "hour"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.dialect.server_version_info >= (14,):
        op.execute(f"CREATE STATISTICS IF NOT EXISTS predictions_hour ON {_HOUR} FROM predictions")
        # Filled by the next ANALYZE; a sample, so seconds even on a large log. An empty log
        # is left never analysed, as monitoring's own statistics refresh expects.
        if bind.execute(sa.text("SELECT EXISTS (SELECT 1 FROM predictions)")).scalar():
            op.execute("ANALYZE predictions")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS predictions_hour")
    op.drop_table("log_summaries")
