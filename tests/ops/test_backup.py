"""`skinscreen db backup` and `db restore`: back up, break, restore, and every row is back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from skinscreen.db import migrate
from skinscreen.db.audit import Action, record
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from tests.ops.conftest import invoke
from tests.review.conftest import seed_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'skinscreen.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def snapshot(url: str) -> dict[str, Any]:
    """Row counts of every table and the audit trail, row by row."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = sorted(sa.inspect(conn).get_table_names())
            counts = {t: conn.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}
            audit = conn.execute(
                sa.text(
                    "SELECT id, account_id, action, image_id, detail, created_at FROM audit_event ORDER BY id"
                )
            ).all()
            reviews = conn.execute(
                sa.text("SELECT id, image_id, verdict, note FROM review ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    return {"counts": counts, "audit": [tuple(r) for r in audit], "reviews": [tuple(r) for r in reviews]}


def fill(url: str, tmp_path: Path) -> None:
    seeded = seed_database(url, tmp_path)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        for name in ("a1", "a2", "b1"):
            session.execute(
                sa.text(
                    "INSERT INTO review (image_id, account_id, verdict, note, created_at) "
                    "VALUES (:i, :a, 'malignant', 'n', CURRENT_TIMESTAMP)"
                ),
                {"i": seeded.ids[name], "a": seeded.accounts["alice"]},
            )
            record(
                session, account_id=seeded.accounts["alice"], action=Action.verdict, image_id=seeded.ids[name]
            )
    engine.dispose()


def test_backup_break_restore_brings_every_row_back(database: str, tmp_path: Path) -> None:
    fill(database, tmp_path)
    env = {"SKINSCREEN_DATABASE_URL": database}
    backup = tmp_path / "backups" / "nightly.dump"

    assert "backed up to" in invoke(env, "db", "backup", str(backup)).stdout
    saved = snapshot(database)  # the backup's own audit row included
    assert saved["audit"][-1][2:5] == ("backup", None, "to nightly.dump")
    assert saved["counts"]["review"] == 3 and saved["counts"]["image"] == 8

    # Break it: a lost verdict table and audit rows written after the backup.
    engine = make_engine(database)
    with engine.begin() as conn:
        # CASCADE: on PostgreSQL the DICOM export rows' foreign key (migration 0006) goes with it.
        conn.execute(sa.text("DROP TABLE review" + ("" if database.startswith("sqlite") else " CASCADE")))
        late = "INSERT INTO audit_event (action, detail, created_at) VALUES ('login', 'x', CURRENT_TIMESTAMP)"
        conn.execute(sa.text(late))
    engine.dispose()
    if database.startswith("sqlite"):  # a lost disk, rather
        for leftover in (tmp_path / "db").iterdir():
            leftover.unlink()

    assert invoke(env, "db", "restore", str(backup), code=1).exit_code == 1  # asks, and stdin says no
    invoke(env, "db", "restore", "--yes", str(backup))

    restored = snapshot(database)
    assert restored["audit"][-1][2] == "restore" and restored["audit"][-1][4].startswith("from nightly.dump")
    restored["audit"].pop()
    restored["counts"]["audit_event"] -= 1
    assert restored == saved
    assert (
        migrate.current(database)
        == ScriptDirectory.from_config(migrate.alembic_config(database)).get_current_head()
    )
    engine = make_engine(database)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event"))  # the trigger came back too
    engine.dispose()
    listed = json.loads(invoke(env, "cases", "--format", "json").stdout)
    assert len(listed) == 8


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    env = {"SKINSCREEN_DATABASE_URL": f"sqlite:///{tmp_path / 'skinscreen.db'}"}
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"not a database" * 100)

    result = invoke(env, "db", "restore", "--yes", str(bogus), code=1)
    assert "not a SQLite database" in str(result.exception)
    assert not (tmp_path / "skinscreen.db").exists()
