"""An audit case in a real headless Chromium: no probability, no heatmap or its request before the verdict."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Verdict
from skinscreen.db.verdicts import add_review
from tests.review.conftest import Seeded
from tests.review.test_browser import TIMEOUT_MS, browser, server, sign_in  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def make_audit_case_the_only_one_left(seeded: Seeded) -> int:
    """a4 (unflagged) becomes an audit case; the flagged cases get verdicts, so the queue is a4 alone."""
    case = seeded.ids["a4"]
    engine = make_engine(seeded.url)
    with session_scope(make_session_factory(engine)) as session:
        session.execute(sa.text("UPDATE prediction SET audit = 1 WHERE image_id = :i"), {"i": case})
        for flagged in seeded.queue:
            add_review(
                session,
                image_id=flagged,
                account_id=seeded.accounts["root"],
                verdict=Verdict.benign,
                note=None,
            )
    engine.dispose()
    return case


def test_an_audit_case_is_blinded_in_chromium_until_the_verdict(
    server: tuple[str, Seeded],  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    base, seeded = server
    case = make_audit_case_the_only_one_left(seeded)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    sign_in(page, base, "alice")
    assert page.locator(f"#audit-queue tr[data-case='{case}']").count() == 1
    page.click(f"#audit-queue tr[data-case='{case}'] a.case-link")
    page.wait_for_url(f"{base}/cases/{case}")

    assert page.locator("#heatmap").count() == 0 and page.locator("#toggle-heatmap").count() == 0
    assert page.inner_text(".prob") == "hidden until your verdict"
    assert "0.12" not in page.content()
    page.keyboard.press("h")  # nothing to show
    assert not [url for url in requests if "heatmap" in url]

    page.keyboard.press("b")
    page.wait_for_url(f"{base}/")
    revealed = page.request.get(f"{base}/api/cases/{case}").json()
    assert revealed["probability"] == pytest.approx(0.12) and not revealed["blinded"]
    assert revealed["verdicts"][0]["verdict"] == "benign"
    assert problems == []
    context.close()
