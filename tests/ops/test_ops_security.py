"""Issue 24 on the operations commands: restores that keep the audit trail's guards, private backups."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from skinscreen.db.session import make_engine
from tests.ops.conftest import invoke
from tests.review.conftest import seed_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'skinscreen.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def execute(url: str, *statements: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def audit_actions(url: str) -> list[tuple[str, str | None]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT action, detail FROM audit_event ORDER BY id")).all()
    finally:
        engine.dispose()
    return [(r[0], r[1]) for r in rows]


def seed(url: str, tmp_path: Path) -> None:
    """The review tests' cases and accounts, and two audit rows."""
    seed_database(url, tmp_path)
    row = "INSERT INTO audit_event (action, detail, created_at) VALUES ('login', :d, CURRENT_TIMESTAMP)"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(row), [{"d": "first"}, {"d": "second"}])
    engine.dispose()


def drop_audit_trigger(url: str) -> None:
    if url.startswith("sqlite"):
        execute(url, "DROP TRIGGER audit_event_no_delete")
    else:
        execute(url, "DROP TRIGGER audit_event_append_only ON audit_event")


def test_restore_refuses_a_backup_without_the_append_only_triggers(database: str, tmp_path: Path) -> None:
    seed(database, tmp_path)
    env = {"SKINSCREEN_DATABASE_URL": database}
    drop_audit_trigger(database)
    execute(database, "DELETE FROM audit_event WHERE detail = 'first'")  # what the missing trigger let through
    tampered = tmp_path / "tampered.dump"
    invoke(env, "db", "backup", str(tampered))
    invoke(env, "db", "upgrade")  # the live database gets its guard back
    before = audit_actions(database)

    result = invoke(env, "db", "restore", "--yes", str(tampered), code=1)

    assert "lacks the append-only triggers" in str(result.exception)
    assert audit_actions(database) == before  # nothing was replaced


def test_db_upgrade_brings_a_dropped_append_only_trigger_back(database: str, tmp_path: Path) -> None:
    seed(database, tmp_path)
    env = {"SKINSCREEN_DATABASE_URL": database}
    drop_audit_trigger(database)

    assert "guards installed" in invoke(env, "db", "upgrade").stdout

    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        execute(database, "DELETE FROM audit_event")


def test_a_restore_is_recorded_in_the_audit_trail(database: str, tmp_path: Path) -> None:
    seed(database, tmp_path)
    env = {"SKINSCREEN_DATABASE_URL": database}
    backup = tmp_path / "nightly.dump"
    invoke(env, "db", "backup", str(backup))

    invoke(env, "db", "restore", "--yes", str(backup))

    action, detail = audit_actions(database)[-1]
    assert action == "restore" and detail is not None and detail.startswith("from nightly.dump sha256 ")


def test_backups_are_written_readable_by_their_owner_only(database: str, tmp_path: Path) -> None:
    seed(database, tmp_path)
    backup = tmp_path / "backups" / "nightly.dump"

    invoke({"SKINSCREEN_DATABASE_URL": database}, "db", "backup", str(backup))

    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
