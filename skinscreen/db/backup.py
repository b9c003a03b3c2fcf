"""`skinscreen db backup PATH` and `skinscreen db restore PATH`.

Both refuse a backup that lacks the append-only triggers of the audit trail and the verdicts (its
rows could have been rewritten before it was made), put back any other guard (skinscreen.db.guards)
after the restore, and check that every guard is in place. Backups are written 0600: they hold
password hashes and every verdict.

SQLite: the online backup API (a consistent copy while the scorer writes), restored the same way
into the live file. PostgreSQL: `pg_dump --format=custom` and `pg_restore --clean --if-exists
--single-transaction`, run with the URL's parts in PG* environment variables (the password never
appears on a command line). A schema chosen with `options=-csearch_path=NAME` is dumped alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url

from skinscreen.errors import SkinScreenError

logger = logging.getLogger(__name__)


class BackupError(SkinScreenError):
    """Raised when a backup or a restore cannot be made (a missing tool, a bad file, a failed dump)."""


def _sqlite_file(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _copy_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


# Present in every backup of a database at or after migration 0004; a backup without them is refused.
APPEND_ONLY = {
    "sqlite": {"audit_event_no_update", "audit_event_no_delete", "review_no_update", "review_no_delete"},
    "postgresql": {
        "audit_event_append_only",
        "audit_event_no_truncate",
        "review_append_only",
        "review_no_truncate",
    },
}


def _refuse_unguarded(path: Path, triggers: set[str], backend: str) -> None:
    lacking = sorted(APPEND_ONLY[backend] - triggers)
    if lacking:
        raise BackupError(
            f"{path.name} lacks the append-only triggers {', '.join(lacking)}: the audit trail or the "
            "verdicts in it may have been changed before it was made; not restored"
        )


def _sqlite_triggers(path: Path) -> set[str]:
    """Names of the backup's triggers that still refuse (a trigger of the right name that does not
    RAISE guards nothing)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'").fetchall()
    finally:
        conn.close()
    return {name for name, sql in rows if "RAISE(ABORT" in (sql or "").upper().replace(" ", "")}


def _dump_triggers(path: Path, env: dict[str, str]) -> set[str]:
    """Trigger names in a pg_dump archive's table of contents (`pg_restore --list`)."""
    done = subprocess.run(
        [_tool("pg_restore"), "--list", str(path)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"{path.name} is not a pg_dump archive: {done.stderr.strip()[-500:]}")
    # "216; 2620 16500 TRIGGER <schema> <table> <trigger> <owner>"
    return set(re.findall(r"^\d+; \d+ \d+ TRIGGER \S+ \S+ (\S+)", done.stdout, flags=re.MULTILINE))


def _create_private(path: Path) -> None:
    """An empty file only its owner can read, for the backup to be written into."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    os.chmod(path, 0o600)


def _check_sqlite(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database: {exc}") from exc
    if ok != ("ok",) or "alembic_version" not in tables:
        raise BackupError(
            f"{path} is not a skinscreen database backup (integrity: {ok}, tables: {len(tables)})"
        )


def pg_environment(url: URL) -> tuple[dict[str, str], str | None]:
    """PG* variables for libpq tools from a SQLAlchemy URL, and the schema its search_path names."""
    env = dict(os.environ)
    for key, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[key] = str(value)
    options = url.query.get("options")
    schema = None
    if isinstance(options, str):
        env["PGOPTIONS"] = unquote(options)
        found = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", env["PGOPTIONS"])
        schema = found.group(1) if found else None
    sslmode = url.query.get("sslmode")
    if isinstance(sslmode, str):
        env["PGSSLMODE"] = sslmode
    return env, schema


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed; install the PostgreSQL client of the server's major version or newer "
            "(Debian: apt-get install postgresql-client), or run it yourself (docs/operations.md)"
        )
    return found


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(
            f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )


def pg_dump_command(path: Path, schema: str | None) -> list[str]:
    return [_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={path}"] + (
        [f"--schema={schema}"] if schema else []
    )


def pg_restore_command(path: Path, database: str) -> list[str]:
    return [
        _tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={database}",
        str(path),
    ]


def backup(database_url: str, path: Path) -> Path:
    """Write a consistent copy of the database to `path` (written to a temporary name, then renamed)."""
    url = make_url(database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    _create_private(partial)
    backend = url.get_backend_name()
    if backend == "sqlite":
        _copy_sqlite(_sqlite_file(url), partial)
        _check_sqlite(partial)
    elif backend == "postgresql":
        env, schema = pg_environment(url)
        _run(pg_dump_command(partial, schema), env)
    else:
        raise BackupError(f"no backup method for {backend} databases")
    os.replace(partial, path)
    logger.info("backed up the %s database to %s (%d bytes)", backend, path.name, path.stat().st_size)
    return path


def restore(database_url: str, path: Path) -> None:
    """Replace the database's contents with the backup at `path` (stop the services first)."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        _check_sqlite(path)
        _refuse_unguarded(path, _sqlite_triggers(path), backend)
        target = _sqlite_file(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_sqlite(path, target)
    elif backend == "postgresql":
        env, _ = pg_environment(url)
        _refuse_unguarded(path, _dump_triggers(path, env), backend)
        _run(pg_restore_command(path, env.get("PGDATABASE", "")), env)
    else:
        raise BackupError(f"no restore method for {backend} databases")
    _check_guards(database_url)
    logger.info("restored the %s database from %s", backend, path.name)


def _check_guards(database_url: str) -> None:
    """Put back guards the backup predates, then check that every one is in place."""
    from skinscreen.db import guards
    from skinscreen.db.session import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            guards.install(conn, functions=True)  # a backup's trigger functions are not trusted
            lacking = guards.missing(conn)
    finally:
        engine.dispose()
    if lacking:
        raise BackupError(f"after the restore the database still lacks {', '.join(lacking)}")
