"""A worker SIGKILLed mid-batch, with the default settings: its batch is scored again within 90 s.

Real Redis, real PostgreSQL, real `skinscreen worker` and `skinscreen ingest` processes. The default
visibility timeout (1 h) and queued-image sweeper (900 s) are left as they are: only the held
batch's heartbeat (skinscreen.heartbeat.py) can bring the batch back this fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from tests.conftest import dataset_images, fresh_pg_schema
from tests.services import throwaway_postgres, throwaway_redis
from tests.worker.pipeline import (
    Process,
    assert_each_scored_once,
    cli,
    env_for,
    image_rows,
    queued_count,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

RECOVERY_LIMIT = 90.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis of this test's own (tests/services.py), not the machine's."""
    with throwaway_redis() as server:
        yield server.url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL of this test's own, a schema in it."""
    with throwaway_postgres() as server, fresh_pg_schema(server.url) as url:
        yield url


def last_scored_at(url: str) -> datetime:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        last = conn.execute(sa.text("SELECT max(created_at) FROM prediction")).scalar_one()
    engine.dispose()
    assert isinstance(last, datetime)
    return last


def test_a_worker_killed_mid_batch_with_default_settings_is_recovered_within_90_s(
    pg_url: str, redis_url: str, tiny_model: Path, inbox: Path, tmp_path: Path
) -> None:
    # Only where the services and the model are: timeouts, sweeper and heartbeat keep their defaults.
    env = env_for(database_url=pg_url, broker_url=redis_url, model=tiny_model, threads=1)
    cli(["db", "upgrade"], env=env)
    # Large PNGs (no draft decoding) make the batch take seconds, so the kill lands inside it.
    batch = inbox / "site-a" / "big"
    batch.mkdir(parents=True)
    for src in dataset_images("benign", 12) + dataset_images("malignant", 12):
        with Image.open(src) as im:
            im.resize((2000, 1500), Image.Resampling.BILINEAR).save(
                batch / f"{src.stem}-{src.parent.name}.png", compress_level=1
            )
    files = sorted(batch.iterdir())

    worker = Process(["worker"], env=env, log=tmp_path / "worker1.log")
    ingester = Process(["ingest", str(inbox)], env=env, log=tmp_path / "ingest.log")
    restarted = None
    try:
        wait_for(lambda: "received" in worker.text(), timeout=180, what="the worker to take a batch")
        time.sleep(0.5)
        scored_before = len(files) - queued_count(pg_url)
        worker.kill()
        killed = datetime.now(UTC)
        assert scored_before < len(files), "the batch ended before the kill"
        restarted = Process(["worker"], env=env, log=tmp_path / "worker2.log")
        wait_for(
            lambda: len(image_rows(pg_url)) == len(files) and queued_count(pg_url) == 0,
            timeout=RECOVERY_LIMIT + 30,
            what="every image scored after the kill",
        )
        recovery = (last_scored_at(pg_url) - killed).total_seconds()
    finally:
        ingester.stop()
        worker.stop()
        if restarted:
            restarted.stop()

    print(f"kill to last image scored: {recovery:.1f} s ({scored_before} of {len(files)} scored at the kill)")
    assert recovery < RECOVERY_LIMIT
    assert "re-sending" in (tmp_path / "ingest.log").read_text()
    rows = image_rows(pg_url)
    assert len(rows) == len(files)
    assert_each_scored_once(rows, files)
