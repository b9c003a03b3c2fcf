"""End to end: real Redis, real PostgreSQL, a real Celery worker process and a real ingester process."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from tests.conftest import dataset_images
from tests.dicom_factory import SYNTAXES, make_dicom
from tests.worker.pipeline import (
    Process,
    assert_each_scored_once,
    image_rows,
    predict_by_sha,
    queued_count,
    sha256,
    wait_for,
    write_slowly,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL_VERSION = "tiny-test"


def label(src: Path) -> str:
    """A unique file name: benign/ and malignant/ reuse the same numbers."""
    return f"{src.parent.name}-{src.name}"


def make_bad_files(folder: Path, src: Path) -> dict[str, str]:
    """Bad inputs and the reason each must end with."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    data = src.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("this is a text file, not a photograph\n")
    make_dicom(src, folder / "nopixels.dcm", syntax="explicit_le", with_pixels=False)
    return {
        "zero.jpg": "empty file",
        "truncated.jpg": "truncated",
        "notes.jpg": "not an image",
        "nopixels.dcm": "no pixel data",
    }


def test_dropped_files_are_each_scored_once_with_the_probability_predict_gives(
    pipeline_env: dict[str, str], pg_url: str, tiny_model: Path, inbox: Path, tmp_path: Path
) -> None:
    batch = inbox / "site-a" / "2026-11-27"
    batch.mkdir(parents=True)
    jpegs = dataset_images("benign", 25) + dataset_images("malignant", 25)
    dicom_dir = tmp_path / "dicom"
    dicom_dir.mkdir()
    dicoms = [
        make_dicom(src, dicom_dir / f"{syntax}-{i}.dcm", syntax=syntax)
        for i, (src, syntax) in enumerate(
            zip(dataset_images("malignant", 40)[30:], SYNTAXES * 2, strict=False)
        )
    ]
    good = jpegs + dicoms
    assert len(jpegs) == 50 and len(dicoms) == 10
    assert any("jpeg_baseline_ybr" in d.name for d in dicoms)

    worker = Process(["worker", "--concurrency", "1"], env=pipeline_env, log=tmp_path / "worker.log")
    ingester = Process(["ingest", str(inbox)], env=pipeline_env, log=tmp_path / "ingest.log")
    try:
        # Most files copied at once, three written slowly, five dropped a second time under other names.
        slow = good[:3]
        writers = [
            threading.Thread(
                target=write_slowly, args=(src, batch / f"slow-{label(src)}"), kwargs={"seconds": 4}
            )
            for src in slow
        ]
        for w in writers:
            w.start()
        for src in good[3:]:
            shutil.copy(src, batch / label(src))
        again = inbox / "site-a" / "2026-11-27-resent"
        again.mkdir()
        for src in good[3:8]:
            shutil.copy(src, again / f"copy-of-{label(src)}")
        bad = make_bad_files(inbox / "site-b" / "2026-11-27", dataset_images("benign", 30)[-1])
        for w in writers:
            w.join()

        expected = len(good) + len(bad)
        wait_for(
            lambda: len(image_rows(pg_url)) == expected and queued_count(pg_url) == 0,
            timeout=240,
            what=f"{expected} images scored or failed",
        )
        assert worker.alive(), worker.text()[-3000:]
    finally:
        ingester.stop()
        worker.stop()

    rows = image_rows(pg_url)
    reference = predict_by_sha(good, env=pipeline_env, model=tiny_model)
    for src in good:
        row = rows[sha256(src)]
        assert row["state"] == "scored", (src.name, row["reason"])
        assert len(row["predictions"]) == 1, src.name
        version, prob = row["predictions"][0]
        assert version == MODEL_VERSION
        assert prob == pytest.approx(reference[sha256(src)], abs=1e-5), src.name
    for name, reason in bad.items():
        row = rows[sha256(inbox / "site-b" / "2026-11-27" / name)]
        assert row["state"] == "failed" and reason in (row["reason"] or ""), (name, row["reason"])
        assert row["predictions"] == []
    # Patient identifiers in the DICOM headers never reach the logs.
    logs = (tmp_path / "worker.log").read_text() + (tmp_path / "ingest.log").read_text()
    assert "Doe^Jane" not in logs and "PID-12345" not in logs


def test_a_worker_killed_mid_batch_loses_nothing_and_scores_nothing_twice(
    pipeline_env: dict[str, str], pg_url: str, inbox: Path, tmp_path: Path
) -> None:
    # The sweeper and the heartbeat re-send are off (an hour): the batch the killed worker held must
    # come back by redelivery (late ack, visibility timeout), not because the ingester sent it again.
    # tests/worker/test_crash_recovery.py covers the heartbeat.
    env = {**pipeline_env, "SKINSCREEN_SWEEP_AFTER": "3600", "SKINSCREEN_HEARTBEAT_TIMEOUT": "3600"}
    # Large PNGs (no draft decoding) make each batch take seconds, so the kill lands inside one.
    batch = inbox / "site-a" / "big"
    batch.mkdir(parents=True)
    sources = dataset_images("benign", 12) + dataset_images("malignant", 12)
    for src in sources:
        with Image.open(src) as im:
            im.resize((3000, 2250), Image.Resampling.BILINEAR).save(
                batch / f"{src.stem}-{src.parent.name}.png", compress_level=1
            )
    files = sorted(batch.iterdir())

    worker = Process(["worker", "--concurrency", "1"], env=env, log=tmp_path / "worker1.log")
    ingester = Process(["ingest", str(inbox)], env=env, log=tmp_path / "ingest.log")
    try:
        held = wait_for(lambda: received_tasks(worker.text()), timeout=120, what="the worker to take a batch")
        worker.kill()
        done_at_kill = len(image_rows(pg_url)) - queued_count(pg_url)
        restarted = Process(["worker", "--concurrency", "1"], env=env, log=tmp_path / "worker2.log")
        try:
            wait_for(
                lambda: len(image_rows(pg_url)) == len(files) and queued_count(pg_url) == 0,
                timeout=240,
                what="every image scored after the restart",
            )
        finally:
            restarted.stop()
    finally:
        ingester.stop()
        worker.stop()

    assert done_at_kill < len(files)  # the kill landed while work was left
    assert held[0] in received_tasks((tmp_path / "worker2.log").read_text())  # redelivered
    rows = image_rows(pg_url)
    assert len(rows) == len(files)
    assert_each_scored_once(rows, files)
    assert attempts(pg_url) == {1}  # each id was sent once: nothing came back through the sweeper


def received_tasks(log: str) -> list[str]:
    """Ids of the tasks a worker log says it received, in order."""
    return re.findall(r"Task skinscreen\.score_batch\[([0-9a-f-]+)\] received", log)


def attempts(url: str) -> set[int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        values = set(conn.execute(sa.text("SELECT DISTINCT attempts FROM image")).scalars())
    engine.dispose()
    return values
