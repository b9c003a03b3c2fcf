"""`skinscreen rescore --through-workers`: a real Celery worker adds the shadow predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.review.conftest import seed_database
from tests.worker.pipeline import Process, cli, env_for, image_rows, predict_by_sha

pytestmark = pytest.mark.integration


def test_the_workers_rescore_with_an_installed_model(
    pg_url: str, redis_url: str, tiny_model: Path, tiny_b: Path, tmp_path: Path
) -> None:
    seeded = seed_database(pg_url, tmp_path)
    env = env_for(
        database_url=pg_url, broker_url=redis_url, model=tiny_model, models_dir=tmp_path / "models", threads=1
    )
    cli(["models", "add", str(tiny_b)], env=env)
    worker = Process(["worker", "--pool", "solo"], env=env, log=tmp_path / "worker.log")
    try:
        done = cli(
            ["rescore", "--model", "tiny-b", "--through-workers", "--format", "json"], env=env, timeout=300
        )
    finally:
        worker.stop()
    summary = json.loads(done.stdout)
    assert (summary["targets"], summary["scored"], summary["failed"]) == (6, 6, 0), worker.text()[-3000:]

    rows = image_rows(pg_url)
    files = [Path(r["path"]) for r in rows.values() if r["state"] == "scored"]
    expected = predict_by_sha(files, env=env, model=tiny_b)
    for sha, probability in expected.items():
        shadow = dict(rows[sha]["predictions"])
        assert shadow["tiny-b"] == pytest.approx(probability, abs=1e-5)
        assert shadow["tiny-test"] is not None  # the first score stays
    assert {r["state"] for r in rows.values()} == {"scored", "failed", "queued"}  # states untouched
    assert len(seeded.ids) == 8
