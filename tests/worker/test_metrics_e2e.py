"""`/metrics` of ingest, a worker (multiprocess mode) and the review server: Prometheus text that
prometheus_client's own parser reads, with counters that match the database after a run."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from skinscreen.config import Settings
from skinscreen.review import create_app
from tests.dicomnet.test_dicom_network import free_port
from tests.worker.pipeline import Process, queued_count, wait_for

pytestmark = pytest.mark.integration
TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels); parsing fails on anything not Prometheus text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def total(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in metrics.items() if n == name)


def test_metrics_match_the_database(pipeline_env: dict[str, str], tmp_path: Path, tiny_model: Path) -> None:
    inbox = tmp_path / "inbox"
    site = inbox / "siteA" / "2026-11-30"
    site.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(site / f"noise{i}.png")
    (site / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ingest_port, worker_port = free_port(), free_port()
    ingest = Process(
        ["ingest", str(inbox)],
        env={**pipeline_env, "SKINSCREEN_METRICS_PORT": str(ingest_port)},
        log=tmp_path / "ingest.log",
    )
    worker = Process(
        ["worker", "--concurrency", "1"],
        env={**pipeline_env, "SKINSCREEN_METRICS_PORT": str(worker_port)},
        log=tmp_path / "worker.log",
    )
    url = pipeline_env["SKINSCREEN_DATABASE_URL"]
    try:
        engine = sa.create_engine(url)

        def done() -> bool:
            with engine.connect() as conn:
                n = conn.execute(sa.text("SELECT count(*) FROM image")).scalar_one()
            return n == 6 and queued_count(url) == 0

        wait_for(done, timeout=300, what="6 images scored or failed")
        with engine.connect() as conn:
            by_state = dict(conn.execute(sa.text("SELECT state, count(*) FROM image GROUP BY state")).all())
            flagged = conn.execute(sa.text("SELECT count(*) FROM prediction WHERE flagged")).scalar_one()
        engine.dispose()
        assert by_state == {"scored": 5, "failed": 1}

        # The worker's batch may be counted a moment after it is stored: wait for the counter.
        wait_for(
            lambda: total(samples(scrape(worker_port)), "skinscreen_images_scored_total") == 5,
            timeout=30,
            what="the worker's counters",
        )
        worker_metrics = samples(scrape(worker_port))
        assert total(worker_metrics, "skinscreen_images_failed_total") == 1
        assert total(worker_metrics, "skinscreen_images_flagged_total") == flagged
        assert total(worker_metrics, "skinscreen_batch_seconds_count") >= 1
        assert any(n == "skinscreen_worker_heartbeat_seconds" for n, _ in worker_metrics)

        ingest_metrics = samples(scrape(ingest_port))
        assert ingest_metrics[("skinscreen_ingest_files_total", (("result", "new"),))] == 6
        assert ("skinscreen_queue_depth", ()) in ingest_metrics
    finally:
        ingest.stop()
        worker.stop()

    settings = Settings(
        database_url=url,
        broker_url=pipeline_env["SKINSCREEN_BROKER_URL"],
        model=str(tiny_model),
        secret_key=SecretStr("test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"),
        metrics_token=SecretStr(TOKEN),
        heatmap_dir=tmp_path / "heatmaps",
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    served = samples(response.text)
    assert served[("skinscreen_images", (("state", "scored"),))] == 5
    assert served[("skinscreen_images", (("state", "failed"),))] == 1
    assert served[("skinscreen_site_flagged", (("site", "siteA"),))] == flagged
    assert served[("skinscreen_site_flag_rate", (("site", "siteA"),))] == pytest.approx(flagged / 5)
    assert served[("skinscreen_dicom_exports", (("state", "pending"),))] == 0
