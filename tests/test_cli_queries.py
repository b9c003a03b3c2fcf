"""The query commands (`cases`, `status`) and `db upgrade`, run through click on a filled SQLite file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from skinscreen.cli import cli
from skinscreen.db import migrate, queries
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Image
from tests.conftest import result

MODEL = "tiny-v1"
CASE_KEYS = {"path", "sha256", "state", "probability", "flagged", "model_version", "reason"}


@pytest.fixture
def database(tmp_path: Path) -> str:
    """low 0.2 and high 0.8 (flagged) scored, broken failed, waiting queued and registered in 2020."""
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        ids = {}
        for name in ("waiting", "low", "broken", "high"):
            ids[name], _ = queries.register_file(
                session,
                path=f"/inbox/siteA/2026-11-27/{name}.jpg",
                size=10,
                mtime_ns=1,
                sha256=hashlib.sha256(name.encode()).hexdigest(),
                site="siteA",
                folder="/inbox/siteA/2026-11-27",
            )
        queries.save_scores(
            session,
            {
                ids["low"]: result(0.2),
                ids["high"]: result(0.8),
                ids["broken"]: result(reason="not an image: cannot identify image file"),
            },
            model_version=MODEL,
        )
        old = datetime(2020, 1, 1, tzinfo=UTC)
        session.execute(update(Image).where(Image.id == ids["waiting"]).values(created_at=old))
    engine.dispose()
    return url


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def cases(database: str, *options: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        invoke("--database-url", database, "cases", "--format", "json", *options)
    )
    assert all(set(row) >= CASE_KEYS for row in rows)
    return rows


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [Path(row["path"]).stem for row in rows]


def test_cases_as_json_come_highest_probability_first(database: str) -> None:
    rows = cases(database)

    assert names(rows) == ["high", "low", "broken", "waiting"]  # unscored ones newest first
    high, low, broken, waiting = rows
    assert {k: high[k] for k in ("state", "probability", "flagged", "model_version", "reason")} == {
        "state": "scored",
        "probability": 0.8,
        "flagged": True,
        "model_version": MODEL,
        "reason": None,
    }
    assert (low["flagged"], waiting["state"], waiting["probability"]) == (False, "queued", None)
    assert (broken["state"], broken["reason"]) == ("failed", "not an image: cannot identify image file")
    assert high["sha256"] == hashlib.sha256(b"high").hexdigest()


def test_cases_filter_by_flag_state_and_date(database: str) -> None:
    assert names(cases(database, "--flagged")) == ["high"]
    assert names(cases(database, "--not-flagged")) == ["low"]
    assert names(cases(database, "--state", "failed")) == ["broken"]
    assert names(cases(database, "--since", "2025-01-01")) == ["high", "low", "broken"]
    assert cases(database, "--since", "2999-01-01") == []
    assert names(cases(database, "--limit", "1")) == ["high"]


def test_cases_as_csv_have_a_header_and_one_line_per_case(database: str) -> None:
    out = invoke("--database-url", database, "cases", "--format", "csv")

    lines = out.splitlines()
    assert lines[0] == "id,path,sha256,state,probability,flagged,model_version,reason"
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(Path(r["path"]).stem, r["probability"]) for r in rows] == [
        ("high", "0.8"),
        ("low", "0.2"),
        ("broken", ""),
        ("waiting", ""),
    ]


def test_cases_as_a_table_show_every_case(database: str) -> None:
    out = invoke("--database-url", database, "cases")

    assert out.splitlines()[0].split() == ["id", "state", "probability", "flagged", "reason", "path"]
    assert len(out.splitlines()) == 5


def test_the_database_url_can_come_from_the_environment(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINSCREEN_DATABASE_URL", database)

    rows = json.loads(invoke("cases", "--format", "json", "--flagged"))

    assert names(rows) == ["high"]


def test_status_without_a_broker_reports_an_unknown_queue_depth(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINSCREEN_BROKER_URL", "redis://127.0.0.1:1/0")

    report = json.loads(invoke("--database-url", database, "status", "--format", "json"))

    assert report["by_state"] == {"queued": 1, "scored": 2, "failed": 1, "superseded": 0}
    assert report["images"] == 4
    assert report["flagged"] == 1
    assert report["failures_by_reason"] == {"not an image: cannot identify image file": 1}
    assert report["refused_files"] == {}
    assert report["queue_depth"] is None


@pytest.mark.integration
def test_status_reports_the_queue_depth_when_the_broker_is_up(
    database: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINSCREEN_BROKER_URL", redis_url)

    report = json.loads(invoke("--database-url", database, "status", "--format", "json"))

    assert report["queue_depth"] == 0


def test_status_as_text_says_when_the_broker_is_unreachable(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINSCREEN_BROKER_URL", "redis://127.0.0.1:1/0")

    out = invoke("--database-url", database, "status")

    assert "unknown (broker unreachable)" in out
    assert "failed: 1 x not an image: cannot identify image file" in out


def test_db_upgrade_creates_the_tables_and_prints_the_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    out = invoke("--database-url", url, "db", "upgrade")

    assert out.strip() == f"database at revision {migrate.current(url)}"
    assert migrate.current(url) is not None


@pytest.mark.parametrize("command", ["status", "cases"])
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_a_read_only_command_on_an_uninitialised_sqlite_path_says_so_and_creates_nothing(
    tmp_path: Path, command: str, kind: str
) -> None:
    path = tmp_path / "mistyped" / "skinscreen.db"
    if kind == "empty":  # left by an earlier version, or touched by hand: a file without tables
        path.parent.mkdir()
        path.touch()
    result = CliRunner().invoke(cli, ["--database-url", f"sqlite:///{path}", command])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "not initialised" in message and "skinscreen db upgrade" in message and "skinscreen run" in message
    if kind == "missing":
        assert not path.parent.exists()
    else:
        assert path.stat().st_size == 0


def test_quiet_hides_the_progress_bar(tmp_path: Path, tiny_model: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    url = f"sqlite:///{tmp_path / 'q.db'}"
    args = ["--database-url", url, "run", "--once", "--model", str(tiny_model), str(inbox)]
    loud = CliRunner().invoke(cli, args, catch_exceptions=False)
    quiet = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    assert "scoring" in loud.stderr  # the bar's label
    assert "scoring" not in quiet.stderr and "img" not in quiet.stderr
    assert "files seen" in quiet.stdout
