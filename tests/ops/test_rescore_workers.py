"""`skinscreen rescore --through-workers`: a real Celery worker adds the shadow predictions and reports.

One worker and one run serve the module: six scored images, one of them overwritten with garbage
after its first score, re-scored with tiny-b through the worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skinscreen.errors import UnreadableImageError
from skinscreen.images import read_image
from tests.conftest import empty_redis_db, fresh_pg_schema
from tests.review.conftest import seed_database
from tests.worker.pipeline import Process, cli, env_for, image_rows, predict_by_sha, sha256

pytestmark = pytest.mark.integration

WAIT_IDLE = 90.0
"""The run must end when the worker has reported, long before this (the old CLI waited it out)."""


@dataclass
class Run:
    pg_url: str
    env: dict[str, str]
    summary: dict[str, Any]
    seconds: float
    broken: Path
    broken_sha: str
    worker_log: str


@pytest.fixture(scope="module")
def run(tiny_model: Path, tiny_b: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("rescore")
    with fresh_pg_schema() as pg_url, empty_redis_db() as redis_url:
        seed_database(pg_url, tmp)
        env = env_for(
            database_url=pg_url, broker_url=redis_url, model=tiny_model, models_dir=tmp / "models", threads=1
        )
        cli(["models", "add", str(tiny_b)], env=env)
        scored = sorted(
            (r for r in image_rows(pg_url).values() if r["state"] == "scored"), key=lambda r: r["id"]
        )
        broken = next(Path(r["path"]) for r in scored if not r["path"].endswith(".dcm"))
        broken_sha = sha256(broken)
        broken.write_bytes(b"\x00garbage, not an image\n" * 64)  # replaced after its first score
        worker = Process(["worker", "--pool", "solo"], env=env, log=tmp / "worker.log")
        try:
            started = time.monotonic()
            done = cli(
                ["rescore", "--model", "tiny-b", "--through-workers", "--wait-idle", f"{WAIT_IDLE:g}"]
                + ["--format", "json"],
                env=env,
                timeout=300,
            )
            seconds = time.monotonic() - started
        finally:
            worker.stop()
        yield Run(pg_url, env, json.loads(done.stdout), seconds, broken, broken_sha, worker.text()[-3000:])


def test_the_workers_rescore_with_an_installed_model(run: Run, tiny_b: Path) -> None:
    summary = run.summary
    assert (summary["targets"], summary["scored"], summary["failed"]) == (6, 5, 1), run.worker_log

    rows = image_rows(run.pg_url)
    files = [
        Path(r["path"]) for r in rows.values() if r["state"] == "scored" and Path(r["path"]) != run.broken
    ]
    expected = predict_by_sha(files, env=run.env, model=tiny_b)
    assert len(expected) == 5
    for sha, probability in expected.items():
        shadow = dict(rows[sha]["predictions"])
        assert shadow["tiny-b"] == pytest.approx(probability, abs=1e-5)
        assert shadow["tiny-test"] is not None  # the first score stays
    assert dict(rows[run.broken_sha]["predictions"]).keys() == {"tiny-test"}
    assert {r["state"] for r in rows.values()} == {"scored", "failed", "queued"}  # states untouched
    assert len(rows) == 8


def test_an_unreadable_image_is_reported_with_the_workers_reason_without_waiting(run: Run) -> None:
    with pytest.raises(UnreadableImageError) as caught:
        read_image(run.broken)
    assert run.summary["failed_by_reason"] == {caught.value.reason: 1}, run.worker_log
    assert run.seconds < WAIT_IDLE * 2 / 3, f"took {run.seconds:.0f} s"


def test_silent_workers_are_waited_for_wait_idle_then_reported(run: Run) -> None:
    # The module's worker has stopped: the broken image (the one target left) is sent and not answered.
    started = time.monotonic()
    done = cli(
        ["rescore", "--model", "tiny-b", "--through-workers", "--wait-idle", "2", "--format", "json"],
        env=run.env,
        timeout=120,
    )
    seconds = time.monotonic() - started
    summary = json.loads(done.stdout)
    assert (summary["targets"], summary["scored"], summary["failed"]) == (1, 0, 1)
    assert summary["failed_by_reason"] == {"no worker reported within 2 s": 1}
    assert seconds >= 2
