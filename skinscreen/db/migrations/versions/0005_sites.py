"""sites: per-site thresholds for a model version, and audit-sample marking on predictions

Revision ID: 0005
Revises: 0006
Create Date: 2026-11-30 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_threshold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("target_sensitivity", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site", "model_version", name="uq_site_threshold"),
    )
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns("prediction")}
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        if "threshold" not in columns:  # every database made by 0001 has it; older hand-made ones may not
            batch_op.add_column(sa.Column("threshold", sa.Float(), nullable=False, server_default="0.5"))
        # Existing predictions were never drawn into an audit sample.
        batch_op.add_column(sa.Column("audit", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.alter_column("audit", server_default=None)
        if "threshold" not in columns:
            batch_op.alter_column("threshold", server_default=None)
        batch_op.create_index(batch_op.f("ix_prediction_audit"), ["audit"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prediction_audit"))
        batch_op.drop_column("audit")
    op.drop_table("site_threshold")
