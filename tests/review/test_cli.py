"""The review commands (users, reviews export, serve, cases) and the review settings, on SQLite."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError
from sqlalchemy import inspect

from skinscreen.cli import cli
from skinscreen.config import Settings
from skinscreen.db import accounts, verdicts
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Verdict
from skinscreen.review.passwords import verify_password
from tests.review.conftest import SECRET, seed_database
from tests.review.test_api import rows_of


def invoke(url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--database-url", url, *args], input=stdin)
    return result.exit_code, result.output


def test_users_add_reads_the_password_from_stdin_and_stores_an_argon2_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"

    code, output = invoke(
        url, "users", "add", "dana", "--role", "admin", "--password-stdin", stdin="dana-secret-1\n"
    )
    again, _ = invoke(url, "users", "add", "dana", "--password-stdin", stdin="dana-secret-1\n")

    assert code == 0, output
    assert again != 0
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        account = accounts.account_named(session, "dana")
        assert account is not None and account.role == "admin"
        assert account.password_hash.startswith("$argon2id$")
        assert verify_password(account.password_hash, "dana-secret-1")
    engine.dispose()
    code, listing = invoke(url, "users", "list")
    assert code == 0 and "dana" in listing and "admin" in listing


def test_users_add_asks_twice_and_refuses_short_passwords_and_odd_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'skinscreen.db'}"

    asked, output = invoke(url, "users", "add", "erin", stdin="erin-secret-1\nerin-secret-1\n")
    short, _ = invoke(url, "users", "add", "fred", "--password-stdin", stdin="short\n")
    odd, _ = invoke(url, "users", "add", "../x y", "--password-stdin", stdin="long-enough-1\n")

    assert asked == 0, output
    assert output.count("Password") == 1 and "Repeat for confirmation" in output
    assert short != 0 and odd != 0


def test_reviews_export_writes_every_verdict_as_csv(tmp_path: Path) -> None:
    seeded = seed_database(f"sqlite:///{tmp_path / 'skinscreen.db'}", tmp_path)
    engine = make_engine(seeded.url)
    with session_scope(make_session_factory(engine)) as session:
        for case, verdict, note in (
            (seeded.queue[0], Verdict.malignant, "=HYPERLINK()"),
            (seeded.queue[1], Verdict.benign, None),
        ):
            verdicts.add_review(
                session, image_id=case, account_id=seeded.accounts["alice"], verdict=verdict, note=note
            )
    engine.dispose()

    code, output = invoke(seeded.url, "reviews", "export")

    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert [(int(r["image_id"]), r["verdict"], r["reviewer"]) for r in rows] == [
        (seeded.queue[0], "malignant", "alice"),
        (seeded.queue[1], "benign", "alice"),
    ]
    assert rows[0]["note"] == "'=HYPERLINK()"  # a spreadsheet must not run it
    assert float(rows[0]["probability"]) == 0.97


def test_serve_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    code, output = invoke(f"sqlite:///{tmp_path / 'x.db'}", "serve")

    assert code != 0 and "SKINSCREEN_SECRET_KEY" in output


@pytest.mark.parametrize("key", ["changethis", "secret", "too-short-for-a-key"])
def test_placeholder_or_short_secret_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="SKINSCREEN_SECRET_KEY"):
        Settings(secret_key=SecretStr(key))


def test_heatmaps_default_to_a_folder_next_to_the_sqlite_file(tmp_path: Path) -> None:
    assert (
        Settings(database_url=f"sqlite:///{tmp_path}/db/s.db").heatmap_folder()
        == tmp_path / "db" / "heatmaps"
    )
    assert Settings(database_url="postgresql+psycopg://db/s").heatmap_folder() == Path("heatmaps")
    assert Settings(heatmap_dir=tmp_path, secret_key=SECRET).heatmap_folder() == tmp_path


def test_serve_does_not_migrate_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    url = f"sqlite:///{tmp_path / 'new.db'}"
    env = {"SKINSCREEN_SECRET_KEY": SECRET.get_secret_value()}

    refused = CliRunner().invoke(cli, ["--database-url", url, "serve"], env=env)
    tables_after_refusal, served_after_refusal = inspect(make_engine(url)).get_table_names(), len(served)
    migrated = CliRunner().invoke(cli, ["--database-url", url, "serve", "--migrate"], env=env)

    assert refused.exit_code != 0 and "skinscreen db upgrade" in refused.output
    assert tables_after_refusal == [] and served_after_refusal == 0
    assert migrated.exit_code == 0, migrated.output
    assert len(served) == 1
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"  # no TensorFlow start-up noise from `serve`


def test_users_add_reviews_export_and_requeue_write_audit_rows(tmp_path: Path) -> None:
    seeded = seed_database(f"sqlite:///{tmp_path / 'skinscreen.db'}", tmp_path)

    added, _ = invoke(seeded.url, "users", "add", "gina", "--password-stdin", stdin="gina-secret-12\n")
    exported, _ = invoke(seeded.url, "reviews", "export", "-o", str(tmp_path / "out.csv"))
    requeued, output = invoke(seeded.url, "requeue", "--no-enqueue")

    assert (added, exported, requeued) == (0, 0, 0), output
    events = rows_of(
        seeded.url, "SELECT action, detail FROM audit_event WHERE detail LIKE 'cli:%' ORDER BY id"
    )
    assert [action for action, _ in events] == ["account_added", "export", "requeue"]
    assert events[2][1] == "cli: 1 images"


def test_cases_as_csv_and_table_carry_the_case_id(tmp_path: Path) -> None:
    seeded = seed_database(f"sqlite:///{tmp_path / 'skinscreen.db'}", tmp_path)

    code, output = invoke(seeded.url, "cases", "--flagged", "--format", "csv")
    table_code, table = invoke(seeded.url, "cases", "--flagged")

    assert code == table_code == 0, output
    assert [int(r["id"]) for r in csv.DictReader(io.StringIO(output))] == seeded.queue
    lines = table.splitlines()
    assert lines[0].split()[0] == "id"
    assert [int(line.split()[0]) for line in lines[1:]] == seeded.queue
