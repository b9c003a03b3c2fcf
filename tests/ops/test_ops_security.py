"""Issue 24 on the operations commands: restores that keep the audit trail's guards, private backups."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    execute(
        database, "DELETE FROM audit_event WHERE detail = 'first'"
    )  # what the missing trigger let through
    tampered = tmp_path / "tampered.dump"
    invoke(env, "db", "backup", str(tampered))
    invoke(env, "db", "upgrade")  # the live database gets its guard back
    before = audit_actions(database)

    result = invoke(env, "db", "restore", "--yes", str(tampered), code=1)

    assert "lacks the append-only triggers" in str(result.exception)
    assert audit_actions(database) == before  # nothing was replaced


def test_restore_refuses_a_backup_whose_append_only_trigger_was_emptied(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'db' / 'skinscreen.db'}"
    seed(database, tmp_path)
    env = {"SKINSCREEN_DATABASE_URL": database}
    execute(
        database,
        "DROP TRIGGER audit_event_no_delete",
        "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event BEGIN SELECT 1; END",
    )
    emptied = tmp_path / "emptied.db"
    invoke(env, "db", "backup", str(emptied))

    result = invoke(env, "db", "restore", "--yes", str(emptied), code=1)

    assert "lacks the append-only triggers audit_event_no_delete" in str(result.exception)


@pytest.mark.integration
def test_a_restore_rewrites_the_trigger_functions_a_backup_brought(pg_url: str, tmp_path: Path) -> None:
    seed(pg_url, tmp_path)
    env = {"SKINSCREEN_DATABASE_URL": pg_url}
    execute(
        pg_url,
        "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN OLD; END $$",
    )
    disarmed = tmp_path / "disarmed.dump"
    invoke(env, "db", "backup", str(disarmed))

    invoke(env, "db", "restore", "--yes", str(disarmed))

    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        execute(pg_url, "DELETE FROM audit_event")


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


def sqlite_seeded(tmp_path: Path) -> tuple[dict[str, str], dict[str, int], dict[str, Path]]:
    """The review tests' cases on a SQLite file: the purge environment, case ids and paths by name."""
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    seeded = seed_database(url, tmp_path)
    engine = make_engine(url)
    with engine.connect() as conn:
        paths = {
            n: Path(conn.execute(sa.text(f"SELECT path FROM image WHERE id = {i}")).scalar_one())
            for n, i in seeded.ids.items()
        }
    engine.dispose()
    env = {"SKINSCREEN_DATABASE_URL": url, "SKINSCREEN_RETENTION_DAYS": "0"}
    return env, seeded.ids, paths


def test_purge_does_not_follow_a_symlinked_folder_out_of_the_inbox(tmp_path: Path) -> None:
    env, _, paths = sqlite_seeded(tmp_path)
    batch = paths["a4"].parent  # inbox/siteA/<date>, a4 unflagged: purged at 0 days
    outside = tmp_path / "elsewhere" / batch.name
    outside.parent.mkdir()
    batch.rename(outside)
    batch.symlink_to(outside, target_is_directory=True)

    report = json.loads(invoke(env, "purge", "--format", "json").stdout)

    assert (outside / paths["a4"].name).is_file()  # the file outside the inbox is still there
    assert not paths["b2"].exists()  # siteB's unflagged case, inside the inbox, went
    assert report["kept_outside_inbox"] == 1


def test_purge_keeps_an_audit_sample_case_until_its_verdict(tmp_path: Path) -> None:
    env, ids, paths = sqlite_seeded(tmp_path)
    execute(env["SKINSCREEN_DATABASE_URL"], f"UPDATE prediction SET audit = 1 WHERE image_id = {ids['a4']}")

    report = json.loads(invoke(env, "purge", "--format", "json").stdout)
    assert paths["a4"].is_file() and not paths["b2"].exists()
    assert report["kept_audit_unreviewed"] == 1

    execute(
        env["SKINSCREEN_DATABASE_URL"],
        "INSERT INTO review (image_id, account_id, verdict, created_at) "
        f"SELECT {ids['a4']}, id, 'benign', CURRENT_TIMESTAMP FROM account WHERE name = 'alice'",
    )
    invoke(env, "purge")
    assert not paths["a4"].exists()  # reviewed: now it goes


def test_verdict_exports_are_written_readable_by_their_owner_only(tmp_path: Path) -> None:
    env, _, _ = sqlite_seeded(tmp_path)
    out = tmp_path / "verdicts.csv"
    out.write_text("an older export, once world-readable\n")
    out.chmod(0o644)

    invoke(env, "reviews", "export", "--output", str(out))

    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith("review_id,")


def model_copy(tiny_b: Path, where: Path, **card: object) -> Path:
    copy = Path(shutil.copytree(tiny_b, where))
    data = json.loads((copy / "card.json").read_text())
    (copy / "card.json").write_text(json.dumps({**data, **card}))
    return copy


def symlinked_card(tiny_b: Path, tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$hash:19000:0:99999:7:::\n")
    linked = model_copy(tiny_b, tmp_path / "linked")
    (linked / "MODEL_CARD.md").unlink(missing_ok=True)
    (linked / "MODEL_CARD.md").symlink_to(secret)
    return linked


def escape_coded_version(tiny_b: Path, tmp_path: Path) -> Path:
    return model_copy(tiny_b, tmp_path / "escaped", version="v1\x1b]0;pwned\x07\x1b[2J")


def huge_card(tiny_b: Path, tmp_path: Path) -> Path:
    huge = model_copy(tiny_b, tmp_path / "huge")
    with (huge / "MODEL_CARD.md").open("wb") as fh:
        fh.truncate(300 << 20)  # 300 MB, sparse
    return huge


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (symlinked_card, "is a symlink"),
        (escape_coded_version, "no control characters"),
        (huge_card, "bytes; not a model card"),
    ],
)
def test_models_add_refuses_a_symlinked_card_an_escape_coded_version_and_a_huge_card(
    tmp_path: Path, tiny_b: Path, make: Any, reason: str
) -> None:
    env = {
        "SKINSCREEN_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "SKINSCREEN_MODELS_DIR": str(tmp_path / "m"),
    }

    refused = invoke(env, "models", "add", str(make(tiny_b, tmp_path)), code=1)

    assert reason in str(refused.exception)
    assert "\x1b" not in refused.output + str(refused.exception)
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
