"""dicom_export: DICOM result objects (SR, Secondary Capture) and their delivery state

Revision ID: 0006
Revises: 0007
Create Date: 2026-11-30 09:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dicom_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column(
            "state",
            sa.Enum("pending", "sent", "failed", name="export_state", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("destination", sa.String(length=300), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["image.id"]),
        sa.ForeignKeyConstraint(["prediction_id"], ["prediction.id"]),
        sa.ForeignKeyConstraint(["review_id"], ["review.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("sop_instance_uid"),
    )
    with op.batch_alter_table("dicom_export", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dicom_export_image_id"), ["image_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dicom_export_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_dicom_export_next_attempt_at"), ["next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dicom_export", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dicom_export_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_dicom_export_state"))
        batch_op.drop_index(batch_op.f("ix_dicom_export_image_id"))
    op.drop_table("dicom_export")
