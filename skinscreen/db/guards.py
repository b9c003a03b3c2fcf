"""The database's own guards: append-only triggers, server-stamped times, admins made by the owner only.

Migrations 0002 and 0004 first created the append-only triggers; this module holds every guard in
one place, so that `skinscreen db upgrade` (and every migration run) puts back any that went missing,
and `skinscreen db restore` can refuse a backup that lacks them and check them after a restore.

- `audit_event` and `review` refuse UPDATE, DELETE and (PostgreSQL) TRUNCATE.
- PostgreSQL: a role that does not own the tables (the app role of docs/app-role.sql) cannot choose
  `created_at` of an audit row or a verdict (the database's clock stamps it), and cannot make an
  admin: not by adding one, promoting a reviewer, or reactivating a deactivated admin. Admins are
  made with `skinscreen users add --role admin` run as the owner. The owner can drop any trigger, so
  these guard against the services' role, not against the owner.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, text

logger = logging.getLogger(__name__)

# The owner test: the table owner's members (and superusers) pass; the services' role does not.
_OWNER = "pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'MEMBER')"

PG_FUNCTIONS = [
    """CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$""",
    """CREATE OR REPLACE FUNCTION review_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'review is append-only'; END $$""",
    f"""CREATE OR REPLACE FUNCTION stamp_created_at() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT {_OWNER} THEN NEW.created_at := now(); END IF;
        RETURN NEW;
    END $$""",
    f"""CREATE OR REPLACE FUNCTION account_admin_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.role = 'admin' AND NEW.active
           AND (TG_OP = 'INSERT' OR NOT (OLD.role = 'admin' AND OLD.active))
           AND NOT {_OWNER} THEN
            RAISE EXCEPTION 'only the owner of the tables makes admins (skinscreen users add --role admin)'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END $$""",
]
# (trigger, table, what it does): created when missing.
PG_TRIGGERS = {
    "audit_event_append_only": (
        "audit_event",
        "BEFORE UPDATE OR DELETE ON audit_event FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    ),
    "audit_event_no_truncate": (
        "audit_event",
        "BEFORE TRUNCATE ON audit_event FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
    ),
    "audit_event_stamp": (
        "audit_event",
        "BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION stamp_created_at()",
    ),
    "review_append_only": (
        "review",
        "BEFORE UPDATE OR DELETE ON review FOR EACH ROW EXECUTE FUNCTION review_append_only()",
    ),
    "review_no_truncate": (
        "review",
        "BEFORE TRUNCATE ON review FOR EACH STATEMENT EXECUTE FUNCTION review_append_only()",
    ),
    "review_stamp": ("review", "BEFORE INSERT ON review FOR EACH ROW EXECUTE FUNCTION stamp_created_at()"),
    "account_admin_guard": (
        "account",
        "BEFORE INSERT OR UPDATE ON account FOR EACH ROW EXECUTE FUNCTION account_admin_guard()",
    ),
}
SQLITE_TRIGGERS = {
    f"{table}_no_{verb.lower()}": (
        table,
        f"BEFORE {verb} ON {table} BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END",
    )
    for table in ("audit_event", "review")
    for verb in ("UPDATE", "DELETE")
}


def _expected(dialect: str) -> dict[str, tuple[str, str]]:
    if dialect == "postgresql":
        return PG_TRIGGERS
    if dialect == "sqlite":
        return SQLITE_TRIGGERS
    return {}


def present(conn: Connection) -> set[str]:
    """Names of the guard triggers the connected database has (in its search path, on PostgreSQL)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        rows = conn.execute(
            text(
                "SELECT t.tgname FROM pg_trigger t WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' "
                "AND t.tgrelid IN (to_regclass('audit_event'), to_regclass('review'), to_regclass('account'))"
            )
        )
    elif dialect == "sqlite":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    else:
        return set()
    return {str(name) for (name,) in rows} & set(_expected(dialect))


def missing(conn: Connection) -> list[str]:
    """The guard triggers the connected database lacks (or has disabled), by name."""
    have = present(conn)
    return sorted(name for name in _expected(conn.dialect.name) if name not in have)


def install(conn: Connection, *, functions: bool = False) -> list[str]:
    """Create the guard triggers that are missing (and, on PostgreSQL, their functions); returns their names.

    Needs the tables' owner when anything is missing; with every guard in place it changes nothing,
    so the services' role may call it too. `functions`: (re)write the PostgreSQL trigger functions
    even when every trigger is there (after a restore, whose functions came from the backup).
    """
    lacking = missing(conn)
    postgresql = conn.dialect.name == "postgresql"
    if postgresql and (lacking or functions):
        # Two processes starting on a new database must not both create the same trigger.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('skinscreen.db.guards'))"))
        lacking = missing(conn)
        for statement in PG_FUNCTIONS:
            conn.execute(text(statement))
    if not lacking:
        return []
    expected = _expected(conn.dialect.name)
    if postgresql:
        for name in lacking:  # present but disabled: dropped and made again
            conn.execute(text(f'DROP TRIGGER IF EXISTS "{name}" ON {expected[name][0]}'))
    for name in lacking:
        conn.execute(text(f'CREATE TRIGGER "{name}" {expected[name][1]}'))
    logger.info("database guards installed: %s", ", ".join(lacking))
    return lacking
