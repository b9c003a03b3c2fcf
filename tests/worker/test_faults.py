"""Faults survived with real processes: Redis and PostgreSQL restarted, an ingester killed, files re-dropped.

The Redis and PostgreSQL these tests restart are their own (tests/services.py: started on free
ports in a temporary folder, killed at the end), never the machine's. They are marked
`integration` and run in the suite's single process, one at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import dataset_images, fresh_pg_schema
from tests.services import ThrowawayPostgres, ThrowawayRedis, throwaway_postgres, throwaway_redis
from tests.worker.pipeline import Process, assert_each_scored_once, image_rows, queued_count, sha256, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_redis() -> Iterator[ThrowawayRedis]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ThrowawayPostgres]:
    with throwaway_postgres() as server:
        yield server


@pytest.fixture
def redis_url(own_redis: ThrowawayRedis) -> str:
    """This module's own Redis, restarted (so emptied) before each test."""
    own_redis.restart()
    return own_redis.url


@pytest.fixture
def pg_url(own_postgres: ThrowawayPostgres) -> Iterator[str]:
    """A fresh schema in this module's own PostgreSQL."""
    with fresh_pg_schema(own_postgres.url) as url:
        yield url


def drop(sources: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(src, folder / f"{src.parent.name}-{src.name}")) for src in sources]


def assert_scored_once(url: str, files: list[Path]) -> None:
    rows = image_rows(url)
    assert len(rows) == len({sha256(f) for f in files})
    assert_each_scored_once(rows, files)


def all_done(url: str, count: int) -> bool:
    return len(image_rows(url)) == count and queued_count(url) == 0


@pytest.fixture
def fast_sweep(pipeline_env: dict[str, str]) -> dict[str, str]:
    return {**pipeline_env, "SKINSCREEN_SWEEP_AFTER": "5"}


def test_messages_lost_in_a_redis_restart_are_sent_again_by_the_sweeper(
    fast_sweep: dict[str, str], own_redis: ThrowawayRedis, pg_url: str, inbox: Path, tmp_path: Path
) -> None:
    ingester = Process(["ingest", str(inbox)], env=fast_sweep, log=tmp_path / "ingest.log")
    worker = None
    try:
        files = drop(dataset_images("benign", 8) + dataset_images("malignant", 8), inbox / "site" / "day")
        wait_for(lambda: ingester.text().count("enqueued a batch") >= 2, timeout=60, what="batches enqueued")
        own_redis.restart()  # no worker yet: both batches were waiting in Redis, and are gone
        worker = Process(["worker"], env=fast_sweep, log=tmp_path / "worker.log")
        wait_for(lambda: all_done(pg_url, len(files)), timeout=180, what="the sweeper's resend to be scored")
        assert "sweeper: re-enqueueing 16 images" in ingester.text()
    finally:
        ingester.stop()
        if worker:
            worker.stop()
    assert_scored_once(pg_url, files)


def test_a_postgresql_restart_in_the_middle_of_a_run_loses_nothing(
    pipeline_env: dict[str, str], own_postgres: ThrowawayPostgres, pg_url: str, inbox: Path, tmp_path: Path
) -> None:
    worker = Process(["worker"], env=pipeline_env, log=tmp_path / "worker.log")
    ingester = Process(["ingest", str(inbox)], env=pipeline_env, log=tmp_path / "ingest.log")
    try:
        first = drop(dataset_images("benign", 8), inbox / "site" / "one")
        wait_for(lambda: all_done(pg_url, len(first)), timeout=120, what="the first drop to be scored")
        second = drop(dataset_images("malignant", 8), inbox / "site" / "two")
        own_postgres.restart()
        files = first + second
        wait_for(lambda: _quietly(all_done, pg_url, len(files)), timeout=180, what="every file scored")
        assert worker.alive() and ingester.alive()
    finally:
        ingester.stop()
        worker.stop()
    assert_scored_once(pg_url, files)


def _quietly(check: object, *args: object) -> bool:
    try:
        return bool(check(*args))  # type: ignore[operator]
    except Exception:  # the database is still restarting
        return False


def test_an_ingester_killed_in_the_middle_of_a_drop_takes_every_file_after_a_restart(
    pipeline_env: dict[str, str], pg_url: str, inbox: Path, tmp_path: Path
) -> None:
    files = drop(dataset_images("benign", 30) + dataset_images("malignant", 30), inbox / "site" / "big")
    env = {**pipeline_env, "SKINSCREEN_BATCH_SIZE": "4"}
    first = Process(["-v", "ingest", str(inbox)], env=env, log=tmp_path / "ingest1.log")
    wait_for(lambda: first.text().count("registered") >= 5, timeout=60, what="some files registered")
    first.kill()
    worker = Process(["worker"], env=env, log=tmp_path / "worker.log")
    second = Process(["ingest", str(inbox)], env=env, log=tmp_path / "ingest2.log")
    try:
        wait_for(lambda: all_done(pg_url, len(files)), timeout=180, what="every file scored")
    finally:
        second.stop()
        worker.stop()
    assert_scored_once(pg_url, files)


def test_a_folder_dropped_twice_is_one_set_and_new_bytes_under_an_old_name_are_a_new_image(
    pipeline_env: dict[str, str], pg_url: str, inbox: Path, tmp_path: Path
) -> None:
    worker = Process(["worker"], env=pipeline_env, log=tmp_path / "worker.log")
    ingester = Process(["ingest", str(inbox)], env=pipeline_env, log=tmp_path / "ingest.log")
    try:
        sources = dataset_images("benign", 5)
        files = drop(sources, inbox / "site" / "night")
        wait_for(lambda: all_done(pg_url, 5), timeout=120, what="the first drop")
        shutil.rmtree(inbox / "site" / "night")
        files = drop(sources, inbox / "site" / "night")  # the same folder again, new mtimes
        replacement = dataset_images("malignant", 1)[0]
        shutil.copy(replacement, files[0])  # same name, other bytes
        wait_for(lambda: all_done(pg_url, 6), timeout=120, what="the replaced file to be scored")
    finally:
        ingester.stop()
        worker.stop()
    assert_scored_once(pg_url, files + sources)  # the replaced bytes stay scored too: 6 images
    assert len(image_rows(pg_url)) == 6
