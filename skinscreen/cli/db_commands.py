"""`skinscreen db backup` and `db restore` (added to the `db` group of pipeline_commands)."""

from __future__ import annotations

from pathlib import Path

import click

from skinscreen.config import Settings


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def db_backup(settings: Settings, path: Path) -> None:
    """Write a consistent copy of the database to PATH (SQLite backup API, or pg_dump's custom format)."""
    from skinscreen.db import backup
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import make_engine, make_session_factory, session_scope

    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        # Recorded first, so that the backup itself holds the row.
        record(session, account_id=None, action=Action.backup, detail=f"to {path.name}")
    engine.dispose()
    backup.backup(settings.database_url, path)
    click.echo(f"backed up to {path} ({path.stat().st_size} bytes)")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def db_restore(settings: Settings, path: Path, yes: bool) -> None:
    """Replace the database's contents with the backup at PATH (stop ingest, workers and serve first).

    Refuses a backup without the audit trail's append-only triggers; records the restore (the backup's
    name and SHA-256) in the audit trail.
    """
    from skinscreen.checksum import sha256_file
    from skinscreen.db import backup
    from skinscreen.db.audit import Action, record
    from skinscreen.db.session import make_engine, make_session_factory, session_scope

    if not yes:
        click.confirm(f"replace everything in the database with {path}?", abort=True)
    digest = sha256_file(path)
    backup.restore(settings.database_url, path)
    engine = make_engine(settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        record(session, account_id=None, action=Action.restore, detail=f"from {path.name} sha256 {digest}")
    engine.dispose()
    click.echo(f"restored from {path}")


COMMANDS = [db_backup, db_restore]
