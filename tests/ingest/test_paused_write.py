"""A file whose writer pauses longer than the settle time: read too early, failed, then taken again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import DATA, dataset_images
from tests.review.conftest import draw_lesion


def rows(db: Path) -> list[tuple[str, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT state, reason FROM image ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []


def has_tables(db: Path) -> bool:
    if not db.exists():
        return False
    with sqlite3.connect(db) as conn:
        return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchall())


def wait_for(check: Callable[[], bool], *, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_file_paused_mid_write_for_8_s_leaves_no_extra_failed_case(
    tmp_path: Path, tiny_model: Path
) -> None:
    if DATA.is_dir():
        content = dataset_images("malignant", 1)[0].read_bytes()
    else:
        content = draw_lesion(tmp_path / "src.jpg", seed=3).read_bytes()
    inbox = tmp_path / "inbox"
    folder = inbox / "siteA" / "2026-12-01"
    folder.mkdir(parents=True)
    db = tmp_path / "skinscreen.db"
    env = {
        **os.environ,
        "SKINSCREEN_DATABASE_URL": f"sqlite:///{db}",
        "SKINSCREEN_MODEL": str(tiny_model),
        "SKINSCREEN_SETTLE_SECONDS": "1",
        "SKINSCREEN_BATCH_WAIT": "0",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-m", "skinscreen", "-q", "run", str(inbox)], env=env, stdout=out, stderr=out
        )
    try:
        wait_for(lambda: has_tables(db), what="the runner to create its database")
        time.sleep(3)  # the model is loaded, the first scan done and the watcher on
        target = folder / "paused.jpg"
        with target.open("wb") as fh:
            fh.write(content[: len(content) // 2])
            fh.flush()
            wait_for(lambda: [s for s, _ in rows(db)] == ["failed"], what="the half file to fail")
            time.sleep(8 - 1)  # the writer's pause: 8 s in all
            fh.write(content[len(content) // 2 :])
        wait_for(lambda: "scored" in [s for s, _ in rows(db)], what="the whole file to be scored")
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(30)

    states = [s for s, _ in rows(db)]
    assert states == ["superseded", "scored"], (states, log.read_text()[-2000:])
    assert rows(db)[0][1] is not None and "changed after it was read" in rows(db)[0][1]
