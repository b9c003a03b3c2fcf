"""The review page in a real headless Chromium (Debian's, driven by Playwright): the reviewer's whole round.

Sign in, open the queue, open the first case, toggle the heatmap, record a verdict with the keyboard,
see the case leave the queue, then find the verdict in the audit trail as an admin. Screenshots of the
queue and the case view land in artifacts/screenshots/ (git-ignored), and in docs/screenshots/ when
missing there or when UPDATE_DOC_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skinscreen.config import Settings
from skinscreen.models.registry import read_card, resolve_model_dir
from skinscreen.review import create_app
from tests.conftest import IN_CI, REPO
from tests.review.conftest import PASSWORDS, SECRET, Seeded, seed_database

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "artifacts" / "screenshots"
DOCS = REPO / "docs" / "screenshots"
TIMEOUT_MS = 90_000  # the first heatmap loads TensorFlow and the shipped model on a busy 2-core machine


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Seeded]]:
    """The review app with the shipped model over a filled SQLite file, served by uvicorn in a thread."""
    import uvicorn

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'skinscreen.db'}", secret_key=SECRET)
    card = read_card(resolve_model_dir(settings.model))
    seeded = seed_database(
        settings.database_url, tmp_path, model_version=card.version, threshold=card.threshold
    )
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws="none", log_level="warning", log_config=None)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seeded
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if IN_CI:  # CI installs both (.ci/install-extra, the dev group): a missing one is a failure there
        import playwright.sync_api as sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        (pytest.fail if IN_CI else pytest.skip)(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def screenshot(page: Any, name: str) -> None:
    """Save to artifacts/; copy to docs/ when missing or with UPDATE_DOC_SCREENSHOTS=1 (no churn per run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if os.environ.get("UPDATE_DOC_SCREENSHOTS") or not (DOCS / name).exists():
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / name, DOCS / name)


def sign_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def wait_until(page: Any, expression: str) -> None:
    """Poll from Python: the page's CSP forbids eval, which Playwright's wait_for_function relies on."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def queue_ids(page: Any) -> list[int]:
    return [
        int(i) for i in page.locator("#queue tbody tr").evaluate_all("rows => rows.map(r => r.dataset.case)")
    ]


def test_a_reviewer_works_through_the_queue_in_chromium(server: tuple[str, Seeded], browser: Any) -> None:
    base, seeded = server
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    sign_in(page, base, "alice")
    assert queue_ids(page) == seeded.queue
    wait_until(
        page, "[...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "queue.png")

    first, second = seeded.queue[:2]
    page.click(f"#queue tr[data-case='{first}'] a.case-link")
    page.wait_for_url(f"{base}/cases/{first}")
    heatmap = page.locator("#heatmap")
    page.locator("#heatmap[data-loaded='true']").wait_for(state="attached")
    assert heatmap.is_hidden()
    page.keyboard.press("h")
    assert heatmap.is_visible()
    assert page.get_attribute("#toggle-heatmap", "aria-pressed") == "true"
    screenshot(page, "case.png")
    page.click("#toggle-heatmap")
    assert heatmap.is_hidden()

    page.keyboard.press("m")
    page.wait_for_url(f"{base}/cases/{second}")
    page.goto(f"{base}/")
    assert queue_ids(page) == seeded.queue[1:]

    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{base}/login")
    sign_in(page, base, "root")
    page.goto(f"{base}/audit")
    verdicts = page.locator("#audit tbody tr[data-action='verdict']")
    assert verdicts.count() == 1
    assert verdicts.first.locator("td").all_inner_texts()[1:] == [
        "alice",
        "verdict",
        f"#{first}",
        "malignant",
        "127.0.0.1",
    ]
    page.goto(f"{base}/batches")
    assert page.locator("#batches tbody tr").count() == 2
    assert problems == []
    context.close()
