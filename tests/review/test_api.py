"""The review API on SQLite and PostgreSQL: auth, roles, filters, verdicts, exports, audit, bad input."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from skinscreen.db.session import make_engine
from tests.review.conftest import PASSWORDS, Seeded, token_for

Shared = tuple[TestClient, Seeded, dict[str, dict[str, str]]]
PATIENT_IDENTIFIERS = ("Doe", "Jane", "PID-12345")  # in the sample DICOM's header


def rows_of(url: str, sql: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


# -- authentication and roles ------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/me"),
    ("DELETE", "/api/token"),
    ("GET", "/api/cases"),
    ("GET", "/api/cases.csv"),
    ("GET", "/api/cases/1"),
    ("GET", "/api/cases/1/image.png"),
    ("GET", "/api/cases/1/heatmap.png"),
    ("POST", "/api/cases/1/reviews"),
    ("GET", "/api/batches"),
    ("GET", "/api/batches/1"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("PATCH", "/api/users/1"),
    ("POST", "/api/requeue"),
    ("GET", "/api/audit"),
]
ADMIN_ONLY = [
    ("GET", "/api/users", None),
    ("POST", "/api/users", {"name": "mallory", "role": "admin", "password": "0123456789ab"}),
    ("PATCH", "/api/users/1", {"role": "admin"}),
    ("POST", "/api/requeue", {}),
    ("GET", "/api/audit", None),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_requests_without_credentials_get_401(shared: Shared, method: str, path: str) -> None:
    client, _, _ = shared
    response = client.request(method, path, json={"verdict": "benign"} if method != "GET" else None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header", ["Bearer not-a-token", "Bearer ", "Basic YWxpY2U6eA==", "Bearer " + "x" * 5000]
)
def test_unknown_or_malformed_tokens_get_401(shared: Shared, header: str) -> None:
    client, _, _ = shared
    assert client.get("/api/cases", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY)
def test_reviewers_get_403_on_admin_routes(shared: Shared, method: str, path: str, body: Any) -> None:
    client, _, tokens = shared
    assert client.request(method, path, headers=tokens["alice"], json=body).status_code == 403


def test_a_wrong_password_gets_no_token_and_is_audited(client: TestClient, seeded: Seeded) -> None:
    response = client.post("/api/token", data={"username": "alice", "password": "wrong-password"})
    unknown = client.post("/api/token", data={"username": "nobody", "password": "wrong-password"})

    assert response.status_code == unknown.status_code == 401
    events = rows_of(seeded.url, "SELECT account_id, action FROM audit_event ORDER BY id")
    assert events == [(seeded.accounts["alice"], "login_failed"), (None, "login_failed")]


def test_only_the_hash_of_a_token_is_stored_and_it_opens_the_api(client: TestClient, seeded: Seeded) -> None:
    headers = token_for(client, "alice")
    token = headers["Authorization"].removeprefix("Bearer ")

    assert client.get("/api/me", headers=headers).json() == {"name": "alice", "role": "reviewer"}
    stored = rows_of(seeded.url, "SELECT token_hash FROM api_token")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]


def test_a_revoked_token_no_longer_opens_the_api(client: TestClient, seeded: Seeded) -> None:
    first, second = token_for(client, "alice"), token_for(client, "alice")

    revoked = client.delete("/api/token", headers=first)

    assert revoked.status_code == 204
    assert client.get("/api/me", headers=first).status_code == 401
    assert client.delete("/api/token", headers=first).status_code == 401
    assert client.get("/api/me", headers=second).status_code == 200  # only the token sent is revoked
    assert rows_of(seeded.url, "SELECT count(*) FROM api_token") == [(1,)]
    events = rows_of(seeded.url, "SELECT action FROM audit_event WHERE action LIKE 'token%' ORDER BY id")
    assert events == [("token_issued",), ("token_issued",), ("token_revoked",)]


def test_a_deactivated_account_loses_its_token(client: TestClient) -> None:
    alice, root = token_for(client, "alice"), token_for(client, "root")
    users = {u["name"]: u["id"] for u in client.get("/api/users", headers=root).json()}

    changed = client.patch(f"/api/users/{users['alice']}", headers=root, json={"active": False})

    assert changed.status_code == 200 and changed.json()["active"] is False
    assert client.get("/api/me", headers=alice).status_code == 401
    assert (
        client.post("/api/token", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code
        == 401
    )


def test_admins_add_accounts_that_can_then_sign_in(client: TestClient) -> None:
    root = token_for(client, "root")
    body = {"name": "carol", "role": "reviewer", "password": "carol-password"}

    created = client.post("/api/users", headers=root, json=body)
    again = client.post("/api/users", headers=root, json=body)
    signed_in = client.post("/api/token", data={"username": "carol", "password": "carol-password"})

    assert created.status_code == 201 and created.json()["role"] == "reviewer"
    assert again.status_code == 409
    assert signed_in.status_code == 200


# -- cases ---------------------------------------------------------------------------------------------


def test_unknown_cases_are_404(shared: Shared) -> None:
    client, _, tokens = shared
    h = tokens["alice"]
    for path in ("/api/cases/999999", "/api/cases/999999/image.png", "/api/cases/999999/heatmap.png"):
        assert client.get(path, headers=h).status_code == 404, path
    assert client.post("/api/cases/999999/reviews", headers=h, json={"verdict": "benign"}).status_code == 404
    assert client.get("/api/batches/999999", headers=h).status_code == 404


def test_cases_come_highest_probability_first_and_filter(shared: Shared) -> None:
    client, seeded, tokens = shared

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/cases", headers=tokens["alice"], params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    n = seeded.ids
    assert ids(flagged=True) == seeded.queue
    assert ids(flagged=False) == [n["b2"], n["a4"]]
    assert ids(site="siteB") == [n["b1"], n["b2"]]
    assert ids(min_probability=0.6, max_probability=0.9) == [n["b1"], n["a3"]]
    assert ids(state="failed") == [n["a5"]]
    assert ids(flagged=True, sort="probability", order="asc") == seeded.queue[::-1]
    assert ids(since="2000-01-01", until="2001-01-01") == []
    batch = client.get("/api/cases", headers=tokens["alice"], params={"site": "siteB"}).json()["items"][0][
        "batch_id"
    ]
    assert ids(batch=batch) == [n["b1"], n["b2"]]


def test_cases_are_paginated(shared: Shared) -> None:
    client, seeded, tokens = shared
    pages = [
        client.get(
            "/api/cases", headers=tokens["alice"], params={"flagged": True, "per_page": 3, "page": p}
        ).json()
        for p in (1, 2, 3)
    ]

    assert [[i["id"] for i in page["items"]] for page in pages] == [seeded.queue[:3], seeded.queue[3:], []]
    assert {page["total"] for page in pages} == {4}


def test_a_case_has_its_score_model_and_dicom_uids_but_no_patient_identifiers(shared: Shared) -> None:
    client, seeded, tokens = shared
    response = client.get(f"/api/cases/{seeded.ids['b1']}", headers=tokens["alice"])

    case = response.json()
    assert response.status_code == 200
    assert (case["probability"], case["threshold"], case["flagged"]) == (0.85, 0.5, True)
    assert case["model_version"] == "tiny-test"
    assert case["format"] == "dicom" and case["study_uid"] and case["sop_uid"] and case["series_uid"]
    assert case["verdicts"] == []
    assert not any(word in response.text for word in PATIENT_IDENTIFIERS)


def test_image_and_heatmap_are_png_and_the_heatmap_is_cached(shared: Shared, tmp_path: Path) -> None:
    client, seeded, tokens = shared
    base = f"/api/cases/{seeded.ids['a2']}"

    image = client.get(f"{base}/image.png", headers=tokens["alice"], params={"size": 64})
    heatmap = client.get(f"{base}/heatmap.png", headers=tokens["alice"], params={"size": 64})

    for response in (image, heatmap):
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (64, 64)
    store = client.app.state.review.images.heatmaps  # type: ignore[attr-defined]
    assert len(list((store.folder / "tiny-test").glob("*.png"))) == 1
    assert heatmap.headers["x-model-version"] == "tiny-test"


def test_a_verdict_takes_the_case_out_of_the_queue_and_is_audited(client: TestClient, seeded: Seeded) -> None:
    h = token_for(client, "alice")
    first = seeded.queue[0]

    viewed = client.get(f"/api/cases/{first}", headers=h)
    posted = client.post(
        f"/api/cases/{first}/reviews", headers=h, json={"verdict": "malignant", "note": "biopsy"}
    )
    queue = client.get("/api/cases", headers=h, params={"flagged": True, "reviewed": False}).json()
    reviewed = client.get("/api/cases", headers=h, params={"reviewed": True}).json()

    assert viewed.status_code == 200 and posted.status_code == 201
    assert posted.json()["reviewer"] == "alice" and posted.json()["verdict"] == "malignant"
    assert [i["id"] for i in queue["items"]] == seeded.queue[1:]
    assert [i["id"] for i in reviewed["items"]] == [first]
    verdicts = client.get(f"/api/cases/{first}", headers=h).json()["verdicts"]
    assert [(v["verdict"], v["note"], v["reviewer"]) for v in verdicts] == [("malignant", "biopsy", "alice")]
    audit = client.get("/api/audit", headers=token_for(client, "root"), params={"case": first}).json()[
        "items"
    ]
    assert [(e["account"], e["action"]) for e in reversed(audit)] == [
        ("alice", "case_view"),
        ("alice", "verdict"),
        ("alice", "case_view"),
    ]


def test_the_audit_trail_refuses_updates_and_deletes(client: TestClient, seeded: Seeded) -> None:
    token_for(client, "alice")
    engine = make_engine(seeded.url)
    try:
        for statement in ("UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_the_csv_export_follows_the_filter(shared: Shared) -> None:
    client, seeded, tokens = shared
    response = client.get("/api/cases.csv", headers=tokens["alice"], params={"flagged": True})

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["id"]) for r in rows] == seeded.queue
    assert {r["flagged"] for r in rows} == {"True"}


def test_the_batch_summary_counts_files_scores_failures_and_reviews(shared: Shared) -> None:
    client, _, tokens = shared
    batches = {b["site"]: b for b in client.get("/api/batches", headers=tokens["alice"]).json()}

    a = batches["siteA"]
    assert (a["files"], a["queued"], a["scored"], a["flagged"], a["failed"]) == (6, 1, 4, 3, 1)
    assert a["failed_by_reason"] == {"not an image: unrecognised file content": 1}
    assert client.get(f"/api/batches/{a['id']}", headers=tokens["alice"]).json() == a


def test_admins_requeue_failed_images(client: TestClient, seeded: Seeded) -> None:
    root = token_for(client, "root")

    assert client.post("/api/requeue", headers=root, json={"reason": "no such reason"}).json() == {
        "requeued": 0
    }
    assert client.post("/api/requeue", headers=root, json={}).json() == {"requeued": 1}
    assert rows_of(seeded.url, f"SELECT state FROM image WHERE id = {seeded.ids['a5']}") == [("queued",)]


# -- the page's session: cookies and CSRF ----------------------------------------------------------------


def page_login(client: TestClient, name: str) -> str:
    """Sign in through the login form; return the session's CSRF token."""
    form = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert csrf is not None
    response = client.post(
        "/login",
        data={"username": name, "password": PASSWORDS[name], "csrf_token": csrf.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page = client.get("/").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None and token.group(1) != csrf.group(1)  # a new session, a new token
    return token.group(1)


def test_the_session_cookie_is_signed_httponly_and_samesite_lax(client: TestClient) -> None:
    cookie = client.get("/login").headers["set-cookie"].lower()

    assert "httponly" in cookie and "samesite=lax" in cookie


def test_signing_in_without_the_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})

    assert response.status_code == 403


def test_a_cookie_session_needs_the_csrf_token_to_record_a_verdict(
    client: TestClient, seeded: Seeded
) -> None:
    csrf = page_login(client, "alice")
    case = seeded.queue[0]

    without = client.post(f"/api/cases/{case}/reviews", json={"verdict": "benign"})
    wrong = client.post(
        f"/api/cases/{case}/reviews", json={"verdict": "benign"}, headers={"X-CSRF-Token": "x"}
    )
    form = client.post(f"/cases/{case}/verdict", data={"verdict": "benign"}, follow_redirects=False)
    right = client.post(
        f"/api/cases/{case}/reviews", json={"verdict": "benign"}, headers={"X-CSRF-Token": csrf}
    )

    assert (without.status_code, wrong.status_code, form.status_code, right.status_code) == (
        403,
        403,
        403,
        201,
    )
    assert client.get("/api/me").json()["name"] == "alice"  # reading needs no token
    # A cookie session has no bearer token to revoke; it signs out through the page.
    assert client.delete("/api/token", headers={"X-CSRF-Token": csrf}).status_code == 400


def test_the_page_form_records_a_verdict_and_opens_the_next_case(client: TestClient, seeded: Seeded) -> None:
    csrf = page_login(client, "alice")
    first, second = seeded.queue[:2]

    response = client.post(
        f"/cases/{first}/verdict",
        data={"verdict": "uncertain", "note": "", "csrf_token": csrf},
        follow_redirects=False,
    )

    assert response.status_code == 303 and response.headers["location"] == f"/cases/{second}"
    assert f'data-case="{first}"' not in client.get("/").text


def test_pages_send_signed_out_visitors_to_the_login_page(client: TestClient) -> None:
    for path in ("/", "/cases/1", "/batches", "/audit"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", path


def test_reviewers_cannot_open_the_audit_page(client: TestClient) -> None:
    page_login(client, "alice")

    assert client.get("/audit").status_code == 403


def test_logs_and_urls_carry_no_patient_identifiers(
    client: TestClient, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    page_login(client, "root")
    case = seeded.ids["b1"]
    page = client.get(f"/cases/{case}").text
    client.get(f"/api/cases/{case}/image.png")
    client.get("/audit")

    assert not any(word in caplog.text for word in PATIENT_IDENTIFIERS)
    links = [link for link in re.findall(r'(?:href|src)="([^"]+)"', page) if link != "data:,"]
    assert links and all(re.fullmatch(r"/[a-z/._-]*(\d+)?[a-z/._-]*(\?size=\d+)?", link) for link in links), (
        links
    )


# -- bad and malformed input ---------------------------------------------------------------------------

BAD_FILTERS = [
    {"flagged": "maybe"},
    {"reviewed": "2"},
    {"state": "lost"},
    {"sort": "path"},
    {"order": "sideways"},
    {"page": "0"},
    {"page": "-1"},
    {"per_page": "100000"},
    {"min_probability": "1.5"},
    {"max_probability": "-0.1"},
    {"min_probability": "nan"},
    {"min_probability": "0.9", "max_probability": "0.1"},
    {"since": "yesterday"},
    {"since": "2026-02-01", "until": "2026-01-01"},
    {"batch": "0"},
    {"batch": "2147483648"},
    {"site": ""},
    {"site": "a\x00b"},
    {"colour": "red"},
]


@pytest.mark.parametrize("params", BAD_FILTERS, ids=lambda p: "&".join(f"{k}={v!r}" for k, v in p.items()))
def test_bad_filters_are_422(shared: Shared, params: dict[str, str]) -> None:
    client, _, tokens = shared
    for path in ("/api/cases", "/api/cases.csv"):
        if path.endswith(".csv") and set(params) & {"page", "per_page"}:
            continue
        assert client.get(path, headers=tokens["alice"], params=params).status_code == 422, path


MALFORMED: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/cases?page=99999999999999999999999999", {}),
    ("GET", "/api/cases?page=1e3&per_page=1.5", {}),
    ("GET", "/api/cases?per_page=-5&page=abc", {}),
    ("GET", "/api/cases?min_probability=inf&max_probability=1e309", {}),
    ("GET", "/api/cases?since=99999-01-01", {}),
    ("GET", "/api/cases?since=0001-01-01T00:00:00%2B05:00", {}),
    ("GET", "/api/cases?until=9999-12-31T23:59:59-05:00", {}),
    ("GET", "/api/cases?since=1e20", {}),
    ("GET", "/api/cases?batch=-1&batch=1.5", {}),
    ("GET", "/api/cases?site=%00", {}),
    ("GET", "/api/cases?site=%ED%A0%80%FF%FE", {}),
    ("GET", "/api/cases?site=%E2%80%AE%F0%9F%92%A9%3Cscript%3E", {}),
    ("GET", "/api/cases?site=" + "x" * 10_000, {}),
    ("GET", "/api/cases?%FF%FE=1", {}),
    ("GET", "/api/cases?flagged&&&=&page=", {}),
    ("GET", "/api/cases?page=1&page=2", {}),
    ("GET", "/api/cases.csv?min_probability=-inf", {}),
    ("GET", "/api/cases/0", {}),
    ("GET", "/api/cases/-1", {}),
    ("GET", "/api/cases/99999999999999999999", {}),
    ("GET", "/api/cases/abc", {}),
    ("GET", "/api/cases/1.5", {}),
    ("GET", "/api/cases/%00", {}),
    ("GET", "/api/cases/%F0%9F%92%A9", {}),
    ("GET", "/api/cases/2147483648/image.png", {}),
    ("GET", "/api/cases/1/image.png?size=0", {}),
    ("GET", "/api/cases/1/image.png?size=99999999999", {}),
    ("GET", "/api/cases/1/heatmap.png?size=abc", {}),
    ("GET", "/api/batches/99999999999999", {}),
    ("GET", "/api/audit?case=-1&per_page=100000", {}),
    ("GET", "/api/audit?account=%00&action=DROP%20TABLE", {}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": "maybe"}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": None}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": 1}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": []}),
    ("POST", "/api/cases/{a4}/reviews", {"json": "benign"}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": "benign", "note": "\x00"}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": "benign", "note": "x" * 5000}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": "benign", "note": 12}}),
    ("POST", "/api/cases/{a4}/reviews", {"json": {"verdict": "benign", "extra": 1}}),
    ("POST", "/api/cases/{a4}/reviews", {"content": b'{"verdict": "benign", "note": "\\ud800"}'}),
    ("POST", "/api/cases/{a4}/reviews", {"content": b'{"verdict": '}),
    ("POST", "/api/cases/{a4}/reviews", {"content": b"\xff\xfe\x00garbage"}),
    ("POST", "/api/cases/{a4}/reviews", {"content": b"[" * 100_000}),
    (
        "POST",
        "/api/cases/{a4}/reviews",
        {"content": b"verdict=benign", "headers": {"content-type": "text/plain"}},
    ),
    ("POST", "/api/cases/99999999999999999999/reviews", {"json": {"verdict": "benign"}}),
    ("POST", "/api/token", {}),
    ("POST", "/api/token", {"data": {"username": "alice"}}),
    ("POST", "/api/token", {"data": {"username": "al\x00ice", "password": "x"}}),
    ("POST", "/api/token", {"data": {"username": "a" * 5000, "password": "x" * 5000}}),
    ("POST", "/api/token", {"json": {"username": "alice", "password": PASSWORDS["alice"]}}),
    (
        "POST",
        "/api/token",
        {
            "content": b"username=%ED%A0%80&password=%00",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    ),
    ("POST", "/api/users", {"json": {"name": "", "password": "0123456789"}}),
    ("POST", "/api/users", {"json": {"name": "a\x00", "password": "0123456789"}}),
    ("POST", "/api/users", {"json": {"name": "eve", "role": "god", "password": "0123456789"}}),
    ("POST", "/api/users", {"json": {"name": "eve", "password": "short"}}),
    ("POST", "/api/users", {"json": {"name": "eve", "password": "0123456789\x00"}}),
    ("PATCH", "/api/users/1", {"json": {"active": "perhaps"}}),
    ("PATCH", "/api/users/1", {"json": {"role": 1}}),
    ("PATCH", "/api/users/0", {"json": []}),
    ("POST", "/api/requeue", {"json": {"reason": "\x00"}}),
    ("POST", "/api/requeue", {"json": {"reason": 5}}),
    ("POST", "/api/requeue", {"json": []}),
    ("GET", "/cases/abc", {}),
    ("GET", "/cases/99999999999999999999", {}),
    ("GET", "/?page=-1", {}),
    ("GET", "/audit?page=abc", {}),
    ("POST", "/login", {"data": {"username": "\x00", "password": "\x00", "csrf_token": "\x00"}}),
    ("POST", "/cases/{a4}/verdict", {"data": {"verdict": "maybe"}}),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), MALFORMED, ids=[f"{m} {p[:60]}" for m, p, _ in MALFORMED]
)
def test_malformed_requests_never_get_a_5xx(
    shared: Shared, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    client, seeded, tokens = shared
    kwargs = dict(kwargs)
    headers = {**(tokens["root"] if path.startswith("/api/") else {}), **kwargs.pop("headers", {})}
    response = client.request(
        method, path.format(**seeded.ids), headers=headers, follow_redirects=False, **kwargs
    )

    assert response.status_code < 500, response.text[:500]
    if method != "GET":  # none of these bodies is acceptable (pages send signed-out visitors to /login)
        assert not 200 <= response.status_code < 300, response.text[:500]


def test_a_page_view_is_one_audit_row_however_many_images_it_shows(
    client: TestClient, seeded: Seeded
) -> None:
    """The queue page names its cases in one row and its thumbnails add none; a case page is one row
    with its image; an image fetched without a page showing it still gets its own row."""
    page_login(client, "alice")
    alice = seeded.accounts["alice"]
    before = rows_of(seeded.url, "SELECT max(id) FROM audit_event")[0][0]
    page = client.get("/").text
    thumbs = re.findall(r'src="(/api/cases/(\d+)/image\.png\?size=96)"', page)
    assert len(thumbs) >= 2
    for url, _ in thumbs:
        assert client.get(url).status_code == 200
    case = seeded.queue[0]
    assert client.get(f"/cases/{case}").status_code == 200
    assert client.get(f"/api/cases/{case}/image.png", params={"size": 768}).status_code == 200
    unseen = seeded.ids["a4"]  # scored, not flagged: on no page this account opened
    assert str(unseen) not in {c for _, c in thumbs}
    assert client.get(f"/api/cases/{unseen}/image.png", params={"size": 96}).status_code == 200

    events = rows_of(
        seeded.url,
        f"SELECT action, image_id, detail FROM audit_event WHERE id > {before} AND account_id = {alice} "
        "ORDER BY id",
    )
    assert [(a, i) for a, i, _ in events] == [
        ("queue_view", None),
        ("case_view", case),
        ("image_view", unseen),
    ]
    assert json.loads(events[0][2])["cases"] == [int(c) for _, c in thumbs]
