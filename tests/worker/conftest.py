"""Fixtures for the end-to-end tests: settings for real `skinscreen` processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker.pipeline import cli, env_for


@pytest.fixture
def pipeline_env(pg_url: str, redis_url: str, tiny_model: Path) -> dict[str, str]:
    env = env_for(
        database_url=pg_url,
        broker_url=redis_url,
        model=tiny_model,
        settle_seconds=1.0,
        batch_size=8,
        batch_wait=1.0,
        visibility_timeout=10,
        sweep_after=20,
        threads=1,
    )
    cli(["db", "upgrade"], env=env)
    return env
