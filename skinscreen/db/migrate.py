"""Schema migrations with Alembic, driven from code (`skinscreen db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, *, revision: str = "head") -> list[str]:
    """Bring the database at `url` up to `revision` (creates the tables on a new database).

    At the head, puts back any of the database's guards (skinscreen.db.guards) that went missing, and
    returns their names.
    """
    command.upgrade(alembic_config(url), revision)
    if revision != "head":
        return []
    from skinscreen.db import guards
    from skinscreen.db.session import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return guards.install(conn)
    finally:
        engine.dispose()


def head(url: str) -> str | None:
    """The newest revision this package's migrations know."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current(url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    from skinscreen.db.session import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return rev
