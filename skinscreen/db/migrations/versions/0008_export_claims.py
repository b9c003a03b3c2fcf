"""dicom_export.claimed_until: a sender's claim on a row, apart from its retry time

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dicom_export", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dicom_export", schema=None) as batch_op:
        batch_op.drop_column("claimed_until")
