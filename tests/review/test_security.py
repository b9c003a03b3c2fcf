"""Issue 24 on the review server: metrics behind a token, admins, sign-in lock-out, exports, renditions."""

from __future__ import annotations

import csv
import io
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from skinscreen.db import accounts
from skinscreen.db.session import make_engine, make_session_factory
from skinscreen.db.tables import Account, Role
from skinscreen.review import create_app
from tests.conftest import PG_URL, REPO, service_unavailable
from tests.review.conftest import PASSWORDS, Seeded, review_settings, seed_database, token_for


def test_metrics_without_a_configured_token_answer_401_to_everyone(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 401


@pytest.mark.integration
def test_two_admins_deactivating_each_other_at_once_leave_one_active_admin(
    pg_url: str, tmp_path: Path
) -> None:
    seeded = seed_database(pg_url, tmp_path)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    first, second = sessions(), sessions()
    with sessions() as setup:
        other = accounts.add_account(setup, name="root2", role=Role.admin, password_hash="x")
        setup.commit()
        root2, root = other.id, seeded.accounts["root"]
    seen: list[int] = []
    try:
        # root deactivates root2 (not yet committed) while root2 deactivates root.
        assert accounts.other_active_admins(first, root2) == 1
        first.execute(update(Account).where(Account.id == root2).values(active=False))
        worker = threading.Thread(target=lambda: seen.append(accounts.other_active_admins(second, root)))
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), "the second admin's check must wait for the first change"
        first.commit()
        worker.join(10)
        assert seen == [0]  # root2 is no longer an admin: root is the last one, and stays
    finally:
        first.close()
        second.close()
        engine.dispose()


@pytest.fixture
def owner_without_createrole() -> Iterator[tuple[str, str, str]]:
    """A role with CREATEDB only that owns a fresh schema: (its URL, the schema, a free app role name)."""
    suffix = uuid.uuid4().hex[:10]
    owner, schema, app_role = f"own_{suffix}", f"s_{suffix}", f"app_{suffix}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{owner}" LOGIN CREATEDB')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{owner}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    url = PG_URL.replace("//postgres@", f"//{owner}@") + f"?options=-csearch_path%3D{schema}"
    try:
        yield url, schema, app_role
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            for role in (app_role, owner):
                if conn.exec_driver_sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").first():
                    conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
                    conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


def run_as(url: str, sql: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


@pytest.mark.integration
def test_the_app_role_can_neither_back_date_audit_rows_nor_make_admins_and_the_script_needs_no_createrole(
    owner_without_createrole: tuple[str, str, str], tmp_path: Path, tiny_model: Path
) -> None:
    owner_url, schema, app_role = owner_without_createrole
    seeded = seed_database(owner_url, tmp_path)
    script = (REPO / "docs" / "app-role.sql").read_text()
    script = script.replace("skinscreen_app", app_role).replace("SCHEMA public", f'SCHEMA "{schema}"')

    # The owner may not create roles: the script says what a database administrator runs first.
    with pytest.raises(sa.exc.DBAPIError) as refused:
        run_as(owner_url, script)
    assert "may not create roles" in str(refused.value.orig)
    assert "CREATE ROLE" in str(refused.value.orig.diag.message_hint)  # type: ignore[union-attr]
    run_as(PG_URL, f'CREATE ROLE "{app_role}" LOGIN')
    run_as(owner_url, script)  # then it only grants, as the owner

    app_url = owner_url.replace(owner_url.split("//")[1].split("@")[0], app_role, 1)
    engine = make_engine(app_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO audit_event (action, detail, created_at) VALUES ('login', 'old', '2001-01-01')"
            )
            conn.exec_driver_sql(
                "INSERT INTO review (image_id, account_id, verdict, created_at) "
                f"VALUES ({seeded.ids['a1']}, {seeded.accounts['alice']}, 'benign', '2001-01-01')"
            )
            conn.exec_driver_sql(
                "INSERT INTO account (name, role, password_hash, active, created_at, session_generation) "
                "VALUES ('bob', 'reviewer', 'x', true, now(), 0)"
            )
            conn.exec_driver_sql("UPDATE account SET active = false WHERE name = 'bob'")
            years = (
                conn.exec_driver_sql(
                    "SELECT extract(year FROM created_at) FROM audit_event WHERE detail = 'old' "
                    "UNION ALL SELECT extract(year FROM created_at) FROM review"
                )
                .scalars()
                .all()
            )
        assert years and min(years) >= 2025, years  # stamped by the database's clock
        refused_statements = [
            "INSERT INTO account (name, role, password_hash, active, created_at, session_generation) "
            "VALUES ('mallory', 'admin', 'x', true, now(), 0)",
            "UPDATE account SET role = 'admin' WHERE name = 'alice'",
            "UPDATE account SET role = 'admin', active = true WHERE name = 'bob'",
            "UPDATE account SET name = 'renamed' WHERE name = 'alice'",
        ]
        for statement in refused_statements:
            refused = pytest.raises(sa.exc.DBAPIError, match="permission denied|only the owner")
            with refused, engine.begin() as conn:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()

    # The review server running as the app role answers 403, not 500, to an admin it may not make.
    settings = review_settings(app_url, tmp=tmp_path, model=tiny_model)
    with TestClient(create_app(settings)) as client:
        root = token_for(client, "root")
        made = client.post(
            "/api/users", headers=root, json={"name": "eve", "password": "eve-password-123", "role": "admin"}
        )
        promoted = client.patch(
            f"/api/users/{seeded.accounts['alice']}", headers=root, json={"role": "admin"}
        )
        reviewer = client.post(
            "/api/users", headers=root, json={"name": "carol", "password": "carol-password-1"}
        )
    assert (made.status_code, promoted.status_code, reviewer.status_code) == (403, 403, 201)


def test_the_csv_export_gives_reviewers_paths_from_the_site_folder_not_the_servers(
    client: TestClient, seeded: Seeded, tmp_path: Path
) -> None:
    response = client.get("/api/cases.csv", headers=token_for(client, "alice"))

    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(seeded.ids)
    assert str(tmp_path) not in response.text
    by_id = {int(r["id"]): r["path"] for r in rows}
    assert by_id[seeded.ids["a1"]] == "siteA/2026-11-27/case0.jpg"
    assert by_id[seeded.ids["b1"]] == "siteB/2026-11-27/b1.dcm"


def test_throttled_sign_ins_are_audited_and_the_right_password_from_another_address_gets_in(
    app: FastAPI, seeded: Seeded
) -> None:
    attacker = TestClient(app, client=("198.51.100.7", 40000))
    owner = TestClient(app, client=("10.1.2.3", 40001))
    with attacker, owner:
        codes = [
            attacker.post("/api/token", data={"username": "alice", "password": f"guess-{n}"}).status_code
            for n in range(8)
        ]
        from_owner = owner.post("/api/token", data={"username": "alice", "password": PASSWORDS["alice"]})
        again = attacker.post("/api/token", data={"username": "alice", "password": PASSWORDS["alice"]})

    assert codes == [401] * 5 + [429] * 3
    assert from_owner.status_code == 200  # the owner is not locked out by someone else's guesses
    assert again.status_code == 429  # the guessing address stays throttled
    engine = make_engine(seeded.url)
    with engine.connect() as conn:
        throttled = conn.execute(
            sa.text("SELECT account_id, client FROM audit_event WHERE action = 'login_throttled'")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in throttled] == [(seeded.accounts["alice"], "198.51.100.7")] * 4
