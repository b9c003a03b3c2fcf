"""Audit cases through the review API and pages: blinded until the verdict; admins' site pages and drift."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from skinscreen.db.session import make_engine
from skinscreen.review import create_app
from tests.review.conftest import MODEL_VERSION, Seeded, review_settings, seed_database, token_for
from tests.review.test_api import page_login
from tests.sites.test_site_cli import card_only_model

pytestmark = pytest.mark.integration


def mark_audit(url: str, image_id: int) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE prediction SET audit = true WHERE image_id = :i"), {"i": image_id})
    engine.dispose()


@pytest.fixture
def audited(pg_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Seeded, int]]:
    """The review app over the seeded cases, with a4 (unflagged, 0.12) drawn into the audit sample."""
    seeded = seed_database(pg_url, tmp_path)
    case = seeded.ids["a4"]
    mark_audit(pg_url, case)
    model = card_only_model(tmp_path / "model", reference=None)
    (model / "card.json").write_text(
        (model / "card.json").read_text().replace('"tiny-v1"', f'"{MODEL_VERSION}"')
    )
    with TestClient(create_app(review_settings(pg_url, tmp=tmp_path, model=model))) as client:
        yield client, seeded, case


def case_of(items: list[dict[str, Any]], case: int) -> dict[str, Any]:
    return next(item for item in items if item["id"] == case)


def test_an_audit_case_shows_no_probability_or_heatmap_before_its_verdict(
    audited: tuple[TestClient, Seeded, int],
) -> None:
    client, seeded, case = audited
    alice = token_for(client, "alice")

    listed = case_of(client.get("/api/cases", headers=alice).json()["items"], case)
    detail = client.get(f"/api/cases/{case}", headers=alice).json()
    heatmap = client.get(f"/api/cases/{case}/heatmap.png", headers=alice)
    export = client.get("/api/cases.csv", headers=alice).text

    assert listed["audit"] and listed["blinded"] and listed["probability"] is None
    assert detail["blinded"] and detail["probability"] is None
    assert heatmap.status_code == 403 and "after the verdict" in heatmap.json()["detail"]
    assert "0.12" not in export
    # Filters and sorting on the probability cannot find it either.
    assert case not in [
        c["id"] for c in client.get("/api/cases?max_probability=0.2", headers=alice).json()["items"]
    ]
    by_score = [
        c["id"] for c in client.get("/api/cases?sort=probability&order=asc", headers=alice).json()["items"]
    ]
    assert by_score.index(case) > by_score.index(seeded.ids["a1"])  # with the unscored, at the end

    response = client.post(f"/api/cases/{case}/reviews", json={"verdict": "benign"}, headers=alice)
    assert response.status_code == 201
    after = client.get(f"/api/cases/{case}", headers=alice).json()
    assert after["audit"] and not after["blinded"] and after["probability"] == pytest.approx(0.12)


def test_the_queue_page_lists_audit_cases_and_the_case_page_hides_the_score(
    audited: tuple[TestClient, Seeded, int],
) -> None:
    client, _, case = audited
    csrf = page_login(client, "alice")

    queue = client.get("/").text
    page = client.get(f"/cases/{case}").text

    assert re.search(rf'<tr data-case="{case}" data-audit="true">', queue)
    assert "hidden until your verdict" in page and 'id="heatmap"' not in page and "0.120" not in page
    client.post(f"/cases/{case}/verdict", data={"verdict": "benign", "csrf_token": csrf})
    revealed = client.get(f"/cases/{case}").text
    assert "0.120" in revealed and 'id="heatmap"' in revealed


def test_the_first_case_after_the_flagged_queue_is_an_audit_case(
    audited: tuple[TestClient, Seeded, int],
) -> None:
    client, seeded, case = audited
    alice = token_for(client, "alice")
    for flagged in seeded.queue:
        client.post(f"/api/cases/{flagged}/reviews", json={"verdict": "benign"}, headers=alice)
    csrf = page_login(client, "alice")

    response = client.post(
        f"/cases/{seeded.queue[-1]}/verdict",
        data={"verdict": "benign", "csrf_token": csrf},
        follow_redirects=False,
    )

    assert response.headers["location"] == f"/cases/{case}"


def test_admins_see_sites_with_estimates_and_a_score_plot(audited: tuple[TestClient, Seeded, int]) -> None:
    client, _, _ = audited
    assert client.get("/api/sites", headers=token_for(client, "alice")).status_code == 403
    root = token_for(client, "root")

    sites = {s["site"]: s for s in client.get("/api/sites", headers=root).json()}
    drift = client.get("/api/drift", headers=root).json()
    page_login(client, "root")
    listing = client.get("/sites").text
    page = client.get("/sites/view", params={"name": "siteA"}).text

    assert set(sites) == {"siteA", "siteB"}
    assert sites["siteA"]["audit"] == 1 and sites["siteA"]["flagged"] == 3
    assert {d["site"] for d in drift} == {"siteA", "siteB"}  # too few cases, no reference: not judged
    assert 'href="/sites/view?name=siteA"' in listing
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page and 'data-series="not reviewed"' in page
    assert client.get("/sites/view", params={"name": "nowhere"}).status_code == 404


def test_the_site_plot_leaves_out_an_audit_case_until_its_verdict(
    audited: tuple[TestClient, Seeded, int],
) -> None:
    # siteA: a1, a2 and a3 are flagged (their scores are shown anyway); a4 (0.12) is the blinded audit
    # case, the only unflagged one: in the plot its bin alone would give its score away.
    client, _, case = audited
    csrf = page_login(client, "root")

    before = client.get("/sites/view", params={"name": "siteA"}).text
    client.post(f"/cases/{case}/verdict", data={"verdict": "benign", "csrf_token": csrf})
    after = client.get("/sites/view", params={"name": "siteA"}).text

    assert "not reviewed (3)" in before and 'data-series="benign"' not in before
    assert "not reviewed (3)" in after and "benign (1)" in after
