"""The worker's Celery app is built from the settings it is given, never from the environment at import."""

from __future__ import annotations

import os
import subprocess
import sys

from skinscreen.config import Settings
from skinscreen.tasknames import QUEUE, SCORE_BATCH
from skinscreen.worker.app import make_celery


def test_importing_the_worker_reads_no_settings() -> None:
    # An invalid setting would make Settings() raise: importing must not build one.
    env = {**os.environ, "SKINSCREEN_BATCH_SIZE": "0"}
    code = "import skinscreen.worker.app, skinscreen.worker.tasks, skinscreen.ingest"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_app_takes_its_broker_and_timeouts_from_the_settings_it_is_given() -> None:
    settings = Settings(broker_url="redis://broker.example:6380/4", visibility_timeout=77)
    app = make_celery(settings)
    assert app.conf.broker_url == "redis://broker.example:6380/4"
    # Batches of dead workers are looked for every ~10 s (kombu's interval, throttle 1), not ~100 s.
    assert app.conf.broker_transport_options == {"visibility_timeout": 77, "unacked_restore_throttle": 1}
    assert app.conf.task_default_queue == QUEUE
    assert SCORE_BATCH in app.tasks
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
