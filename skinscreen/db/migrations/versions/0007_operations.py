"""operations: promoted model versions and the retention policy's purge date on images

Revision ID: 0007
Revises: 0003
Create Date: 2026-11-30 09:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_promotion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=100), nullable=False),
        sa.Column("previous_version", sa.String(length=100), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_promotion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_promotion_created_at"), ["created_at"], unique=False)
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("model_promotion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_promotion_created_at"))
    op.drop_table("model_promotion")
