"""review hardening: session generations, changed files, client addresses, audit that cannot be emptied

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:50:00

- `account.session_generation`: raised to end every session and token of an account.
- `image.file_changed_at`: when the review server found the file no longer has the scored sha256.
- `audit_event.client`: the caller's address for web actions.
- Append-only in the database itself: PostgreSQL refuses TRUNCATE of `audit_event` (0002 covered
  UPDATE and DELETE only), and `review` refuses UPDATE, DELETE (and TRUNCATE on PostgreSQL) on both
  databases. A role that does not own the tables cannot drop these triggers (docs/review.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER review_no_{verb.lower()} BEFORE {verb} ON review
    BEGIN SELECT RAISE(ABORT, 'review is append-only'); END"""
    for verb in ("UPDATE", "DELETE")
]
_PG = [
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
    """CREATE FUNCTION review_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'review is append-only'; END $$""",
    "CREATE TRIGGER review_append_only BEFORE UPDATE OR DELETE ON review "
    "FOR EACH ROW EXECUTE FUNCTION review_append_only()",
    "CREATE TRIGGER review_no_truncate BEFORE TRUNCATE ON review "
    "FOR EACH STATEMENT EXECUTE FUNCTION review_append_only()",
]


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_generation", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_changed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client", sa.String(length=100), nullable=True))
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_TRIGGERS if dialect == "sqlite" else _PG if dialect == "postgresql" else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS review_no_update")
        op.execute("DROP TRIGGER IF EXISTS review_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS review_no_truncate ON review")
        op.execute("DROP TRIGGER IF EXISTS review_append_only ON review")
        op.execute("DROP FUNCTION IF EXISTS review_append_only()")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("client")
    with op.batch_alter_table("image", schema=None) as batch_op:
        batch_op.drop_column("file_changed_at")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_column("session_generation")
