"""What the commands print is worth reading: no library chatter, no log line torn through a progress bar."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from skinscreen.cli.base import BarSafeHandler, setup_logging
from skinscreen.dicomnet.results import ResultFacts, build_sc, build_sr, read_source
from tests.dicom_factory import make_dicom
from tests.worker.pipeline import Process, env_for, wait_for

SAMPLE = Path(__file__).parent / "data" / "isic_test_malignant_13.jpg"


def test_a_log_line_written_while_a_progress_bar_runs_starts_a_line_of_its_own() -> None:
    stream = io.StringIO()
    handler = BarSafeHandler(stream)
    logger = logging.getLogger("skinscreen.test_noise")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with tqdm(total=4, desc="scoring", file=stream, mininterval=0) as bar:
            bar.update(2)
            logger.warning("a file could not be read")
            bar.update(2)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = stream.getvalue()
    at = text.index("a file could not be read")
    assert text[at - 1] in "\r\n", repr(text[max(0, at - 40) : at + 30])
    assert text[at:].startswith("a file could not be read\n")


def test_building_a_result_report_and_secondary_capture_logs_nothing_below_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    setup_logging(0)
    caplog.set_level(logging.INFO)
    source = read_source(make_dicom(SAMPLE, tmp_path / "s.dcm", syntax="explicit_le"))
    facts = ResultFacts("tiny-test", 0.8, 0.5, True, "model threshold", "1.2.826.0.1.3680043.10.1.1")
    build_sr(source, facts)
    build_sc(source, np.zeros((64, 64, 3), np.uint8), facts)
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("highdicom")]
    assert chatter == []


@pytest.mark.skipif(os.geteuid() != 0, reason="Celery warns only a worker run as root")
def test_a_worker_run_as_root_does_not_print_celerys_superuser_warning(
    redis_url: str, tmp_path: Path
) -> None:
    env = env_for(database_url=f"sqlite:///{tmp_path / 's.db'}", broker_url=redis_url, threads=1)
    worker = Process(["worker", "--concurrency", "1"], env=env, log=tmp_path / "worker.log")
    try:
        wait_for(lambda: "ready" in worker.text(), timeout=120, what="the worker to start")
    finally:
        worker.stop()
    text = worker.text()
    assert "superuser privileges" not in text and "SecurityWarning" not in text
