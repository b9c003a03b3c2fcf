"""Alembic migrations: an empty database reaches the head revision, whose schema is `Base.metadata`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from skinscreen.db import migrate
from skinscreen.db.session import make_engine
from skinscreen.db.tables import Base


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file not yet created, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new' / 'skinscreen.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_an_empty_database_has_no_revision(empty_url: str) -> None:
    assert migrate.current(empty_url) is None


def test_upgrade_creates_the_tables_and_reaches_the_head(empty_url: str) -> None:
    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == head_revision(empty_url) is not None
    assert set(Base.metadata.tables) <= table_names(empty_url)


def test_upgrading_twice_is_harmless(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    migrate.upgrade(empty_url)

    assert migrate.current(empty_url) == head_revision(empty_url)
    assert table_names(empty_url) == set(Base.metadata.tables) | {"alembic_version"}


def test_the_head_schema_matches_the_table_classes(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert diff == []
