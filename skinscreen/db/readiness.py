"""Engines for the commands that only read (`status`, `cases`): they never create a database.

`make_engine` creates a SQLite file and its folders on first use, which is right for `run`, `ingest`
and `db upgrade` but not for a command that only reads: a mistyped path would leave an empty file
behind and answer "no such table". `reading_engine` refuses instead, naming the command that
creates the tables.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url

from skinscreen.db.session import make_engine
from skinscreen.errors import SkinScreenError

HOW_TO_CREATE = "create it with `skinscreen db upgrade` (or score a folder with `skinscreen run`)"


class DatabaseNotInitialisedError(SkinScreenError):
    """Raised when a read-only command finds no database, or one without skinscreen's tables."""


def reading_engine(url: str) -> Engine:
    """An engine on an existing, initialised database; nothing is created."""
    parsed = make_url(url)
    where = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_file():
            raise DatabaseNotInitialisedError(
                f"the database is not initialised: no file {path}; {HOW_TO_CREATE}"
            )
        if not _sqlite_has_tables(path):  # looked at read-only: an empty file stays as it is
            raise DatabaseNotInitialisedError(
                f"the database at {path} is not initialised (no tables); {HOW_TO_CREATE}"
            )
        where = str(path)
    engine = make_engine(url)
    try:
        initialised = inspect(engine).has_table("image")
    except BaseException:
        engine.dispose()
        raise
    if not initialised:
        engine.dispose()
        raise DatabaseNotInitialisedError(
            f"the database at {where} is not initialised (no tables); {HOW_TO_CREATE}"
        )
    return engine


def _sqlite_has_tables(path: Path) -> bool:
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'image'").fetchone()
        return found is not None
    except sqlite3.DatabaseError:  # not a SQLite file at all
        return False
    finally:
        conn.close()
