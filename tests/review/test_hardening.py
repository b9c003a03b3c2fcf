"""Issue 13 on the review server: sessions that end, throttled sign-in, the audit trail, the scored file."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from skinscreen.db.session import make_engine
from skinscreen.review import create_app, passwords
from skinscreen.review.app import SESSION_COOKIE
from tests.conftest import REPO
from tests.review.conftest import (
    MODEL_VERSION,
    PASSWORDS,
    Seeded,
    review_settings,
    seed_database,
    token_for,
)
from tests.review.test_api import page_login, rows_of


def image_path(seeded: Seeded, name: str) -> Path:
    return Path(rows_of(seeded.url, f"SELECT path FROM image WHERE id = {seeded.ids[name]}")[0][0])


# -- sessions that really end (item 4) -------------------------------------------------------------------


def test_a_cookie_replayed_after_logout_is_refused_and_the_accounts_tokens_end_too(
    client: TestClient,
) -> None:
    csrf = page_login(client, "alice")
    token = token_for(client, "alice")
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie is not None and client.get("/api/me").status_code == 200

    client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    client.cookies.set(SESSION_COOKIE, cookie)  # the old, still validly signed cookie

    assert client.get("/api/me").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/me", headers=token).status_code == 401


def test_a_new_password_and_a_deactivation_end_old_cookies_and_tokens(
    client: TestClient, seeded: Seeded
) -> None:
    root = token_for(client, "root")
    alice = seeded.accounts["alice"]
    page_login(client, "alice")
    old_token = token_for(client, "alice")

    changed = client.patch(f"/api/users/{alice}", headers=root, json={"password": "alice-password-2"})

    assert changed.status_code == 200
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers=old_token).status_code == 401
    fresh = client.post("/api/token", data={"username": "alice", "password": "alice-password-2"})
    headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    for active in (False, True):
        assert client.patch(f"/api/users/{alice}", headers=root, json={"active": active}).status_code == 200
    assert client.get("/api/me", headers=headers).status_code == 401  # reactivation revives nothing


def test_an_admin_ends_every_session_of_an_account(client: TestClient, seeded: Seeded) -> None:
    root = token_for(client, "root")
    page_login(client, "alice")
    alice_token = token_for(client, "alice")

    ended = client.delete(f"/api/users/{seeded.accounts['alice']}/sessions", headers=root)

    assert ended.status_code == 204
    assert client.get("/api/me").status_code == 401
    assert client.get("/api/me", headers=alice_token).status_code == 401
    assert client.delete("/api/users/999999/sessions", headers=root).status_code == 404
    assert rows_of(seeded.url, "SELECT count(*) FROM audit_event WHERE action = 'sessions_ended'") == [(1,)]


# -- throttled sign-in (item 5) ----------------------------------------------------------------------------


def test_thirty_wrong_passwords_get_429_while_other_users_are_answered_within_a_second(
    client: TestClient,
) -> None:
    root = token_for(client, "root")
    latencies: list[float] = []
    done = threading.Event()

    def other_user() -> None:
        while not done.is_set():
            start = time.monotonic()
            assert client.get("/api/cases", headers=root, params={"per_page": 5}).status_code == 200
            latencies.append(time.monotonic() - start)

    def guess(name: str, n: int) -> tuple[int, str | None]:
        response = client.post("/api/token", data={"username": name, "password": f"guess-{n}"})
        return response.status_code, response.headers.get("retry-after")

    watcher = threading.Thread(target=other_user)
    watcher.start()
    try:
        with ThreadPoolExecutor(10) as pool:
            known = list(pool.map(lambda n: guess("alice", n), range(30)))
    finally:
        done.set()
        watcher.join()
    unknown = [guess("nobody", n) for n in range(8)]
    right = client.post("/api/token", data={"username": "alice", "password": PASSWORDS["alice"]})

    codes = [code for code, _ in known]
    assert set(codes) <= {401, 429} and codes.count(429) >= 25  # at most 5 guesses cost argon2 work
    assert all(int(after) > 0 for code, after in known if code == 429 and after)
    assert all(after is not None for code, after in known if code == 429)
    assert [code for code, _ in unknown] == [401] * 5 + [429] * 3  # unknown names: the same answers
    assert right.status_code == 429  # the right password does not get through a throttled name
    assert latencies and max(latencies) < 1.0, latencies


# -- an audit trail that cannot be emptied; two database roles (item 6) -----------------------------------


@pytest.mark.integration
def test_postgresql_refuses_truncating_the_audit_trail_and_the_reviews(pg_url: str, tmp_path: Path) -> None:
    seed_database(pg_url, tmp_path)
    engine = make_engine(pg_url)
    try:
        for table in ("audit_event", "review"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {table} CASCADE"))
    finally:
        engine.dispose()


@pytest.mark.integration
def test_the_documented_app_role_does_the_apps_work_but_cannot_empty_the_audit_trail(
    pg_url: str, tmp_path: Path
) -> None:
    seed_database(pg_url, tmp_path)
    role, schema = f"app_{uuid.uuid4().hex[:10]}", unquote(pg_url).rsplit("search_path=", 1)[1]
    grants = (REPO / "docs" / "app-role.sql").read_text()
    grants = grants.replace("skinscreen_app", role).replace("SCHEMA public", f'SCHEMA "{schema}"')
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(grants)
    allowed = [
        "SELECT count(*) FROM image JOIN prediction ON prediction.image_id = image.id",
        "INSERT INTO audit_event (action, created_at) VALUES ('login', now())",
        "UPDATE image SET queued_at = now()",
        "UPDATE account SET session_generation = session_generation + 1",
        "DELETE FROM api_token",
    ]
    refused = [
        "TRUNCATE audit_event",
        "DELETE FROM audit_event",
        "UPDATE review SET note = 'x'",
        "DROP TRIGGER audit_event_append_only ON audit_event",
        "ALTER TABLE audit_event DISABLE TRIGGER ALL",
    ]
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'SET ROLE "{role}"')
            for statement in allowed:
                conn.exec_driver_sql(statement)
            conn.rollback()
            for statement in refused:
                conn.exec_driver_sql(f'SET ROLE "{role}"')
                with pytest.raises(sa.exc.DBAPIError, match="permission denied|must be owner"):
                    conn.exec_driver_sql(statement)
                conn.rollback()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        engine.dispose()


def test_reviews_are_append_only(client: TestClient, seeded: Seeded) -> None:
    h = token_for(client, "alice")
    assert client.post(
        f"/api/cases/{seeded.queue[0]}/reviews", headers=h, json={"verdict": "benign"}
    ).is_success
    engine = make_engine(seeded.url)
    try:
        for statement in ("UPDATE review SET verdict = 'malignant'", "DELETE FROM review"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


# -- the image that was scored (item 7) ------------------------------------------------------------------


def test_a_replaced_file_gets_409_no_pixels_and_the_case_is_marked(
    client: TestClient, seeded: Seeded
) -> None:
    h = token_for(client, "alice")
    case = seeded.ids["a2"]
    shutil.copy(image_path(seeded, "a4"), image_path(seeded, "a2"))  # another real image in its place

    image = client.get(f"/api/cases/{case}/image.png", headers=h)
    heatmap = client.get(f"/api/cases/{case}/heatmap.png", headers=h)

    for response in (image, heatmap):
        assert response.status_code == 409
        assert response.json() == {"detail": "file changed since it was scored"}
        assert b"\x89PNG" not in response.content
    assert client.get(f"/api/cases/{case}", headers=h).json()["file_changed_at"] is not None
    actions = rows_of(seeded.url, f"SELECT action FROM audit_event WHERE image_id = {case} ORDER BY id")
    assert ("file_changed",) in actions


def test_a_symlink_out_of_the_inbox_is_answered_as_a_missing_file_is(
    client: TestClient, seeded: Seeded, tmp_path: Path
) -> None:
    h = token_for(client, "alice")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    swapped, gone = image_path(seeded, "a3"), image_path(seeded, "a4")
    # Even with the very bytes that were scored, a file outside the inbox is not read.
    target = Path(shutil.copy(swapped, outside / "copy.jpg"))
    swapped.unlink()
    swapped.symlink_to(target)
    gone.unlink()

    via_link = client.get(f"/api/cases/{seeded.ids['a3']}/image.png", headers=h)
    missing = client.get(f"/api/cases/{seeded.ids['a4']}/image.png", headers=h)

    assert via_link.status_code == missing.status_code == 404
    assert via_link.json() == missing.json() == {"detail": "image unavailable"}


# -- smaller ones (item 8) -------------------------------------------------------------------------------


def test_a_lone_surrogate_in_a_note_is_422(client: TestClient, seeded: Seeded) -> None:
    h = {**token_for(client, "alice"), "content-type": "application/json"}
    body = b'{"verdict": "benign", "note": "\\ud800"}'

    response = client.post(f"/api/cases/{seeded.queue[0]}/reviews", headers=h, content=body)

    assert response.status_code == 422


def test_the_last_active_admin_can_be_neither_deactivated_nor_demoted(
    client: TestClient, seeded: Seeded
) -> None:
    root = token_for(client, "root")
    me = f"/api/users/{seeded.accounts['root']}"

    assert client.patch(me, headers=root, json={"active": False}).status_code == 409
    assert client.patch(me, headers=root, json={"role": "reviewer"}).status_code == 409
    body = {"name": "second", "role": "admin", "password": "second-password"}
    assert client.post("/api/users", headers=root, json=body).status_code == 201
    assert client.patch(me, headers=root, json={"role": "reviewer"}).status_code == 200


def test_image_and_heatmap_views_are_audited_with_the_client_address_and_never_cached(
    client: TestClient, seeded: Seeded
) -> None:
    h = token_for(client, "alice")
    case = seeded.ids["a1"]

    image = client.get(f"/api/cases/{case}/image.png", headers=h, params={"size": 64})
    heatmap = client.get(f"/api/cases/{case}/heatmap.png", headers=h, params={"size": 64})

    assert image.headers["cache-control"] == heatmap.headers["cache-control"] == "no-store"
    events = rows_of(
        seeded.url, f"SELECT action, client FROM audit_event WHERE image_id = {case} ORDER BY id"
    )
    assert events == [("image_view", "testclient"), ("heatmap_view", "testclient")]


def test_the_interactive_docs_are_off_and_the_openapi_schema_is_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/api/cases" in schema.json()["paths"]


@pytest.fixture
def card_only_client(tmp_path: Path) -> Iterator[tuple[TestClient, Seeded]]:
    """The app over the seeded cases (SQLite) with a model that is only a card: nothing is loaded."""
    seeded = seed_database(f"sqlite:///{tmp_path / 'review.db'}", tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "card.json").write_text(
        json.dumps({"version": MODEL_VERSION, "threshold": seeded.threshold, "input_size": 64})
    )
    with TestClient(create_app(review_settings(seeded.url, tmp=tmp_path, model=model))) as test_client:
        yield test_client, seeded


def test_a_busy_password_hasher_answers_503_to_account_changes_and_changes_nothing(
    card_only_client: tuple[TestClient, Seeded], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, seeded = card_only_client
    root = token_for(client, "root")
    monkeypatch.setattr(passwords, "HASH_WAIT", 0.01)
    assert passwords._slots.acquire(timeout=10)  # a sign-in flood holds the one argon2 slot
    try:
        added = client.post("/api/users", headers=root, json={"name": "eve", "password": "eve-password-1"})
        changed = client.patch(
            f"/api/users/{seeded.accounts['alice']}", headers=root, json={"password": "new-password-1"}
        )
    finally:
        passwords._slots.release()

    assert added.status_code == changed.status_code == 503
    assert added.headers["retry-after"] == changed.headers["retry-after"] == "1"
    assert rows_of(seeded.url, "SELECT count(*) FROM account WHERE name = 'eve'") == [(0,)]
    token_for(client, "alice")  # the old password still works


def test_a_model_that_went_away_after_start_up_is_a_503_on_the_site_views(
    card_only_client: tuple[TestClient, Seeded], tmp_path: Path
) -> None:
    client, _ = card_only_client
    root = token_for(client, "root")
    assert client.get("/api/sites", headers=root).status_code == 200
    (tmp_path / "model" / "card.json").unlink()  # the folder emptied while the server runs
    for path in ("/api/sites", "/api/drift"):
        answer = client.get(path, headers=root)
        assert answer.status_code == 503, (path, answer.text)
        assert "SKINSCREEN_MODEL" in answer.json()["detail"]
