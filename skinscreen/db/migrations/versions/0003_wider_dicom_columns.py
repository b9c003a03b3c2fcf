"""wider DICOM columns: non-conformant UIDs longer than 64 characters are stored, not refused

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# column -> (old width, new width); skinscreen/db/dicom_values.py cuts what is longer still, visibly.
_WIDTHS = {
    "study_uid": (64, 256),
    "series_uid": (64, 256),
    "sop_uid": (64, 256),
    "sop_class_uid": (64, 256),
    "body_site": (200, 256),
    "acquisition_date": (32, 64),
}


def _alter(*, widen: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # The batch copy drops and renames the image table, which the other tables reference; SQLite
        # would refuse the drop with foreign keys on. Outside a transaction this takes effect.
        op.execute("PRAGMA foreign_keys=OFF")
    with op.batch_alter_table("image", schema=None) as batch_op:
        for column, (old, new) in _WIDTHS.items():
            if not widen:
                # Cut, visibly, what a narrower column cannot hold before narrowing it.
                op.execute(
                    sa.text(
                        f"UPDATE image SET {column} = substr({column}, 1, {old - 3}) || '...' "
                        f"WHERE length({column}) > {old}"
                    )
                )
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=old if widen else new),
                type_=sa.String(length=new if widen else old),
                existing_nullable=True,
            )
    if sqlite:
        op.execute("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    _alter(widen=True)


def downgrade() -> None:
    _alter(widen=False)
