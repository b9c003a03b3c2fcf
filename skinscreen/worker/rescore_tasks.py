"""The shadow re-score task: `skinscreen rescore --through-workers` sends batches of ids and a version.

The app has no result backend, so a task sent with a run id pushes its report (counts and failure
reasons, no ids or paths) as JSON to the broker's Redis list `RESCORE_REPORTS + run_id`, once the
batch is stored; the CLI reads it from there.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from celery import Celery

from skinscreen.config import Settings
from skinscreen.heartbeat import connect
from skinscreen.tasknames import RESCORE_BATCH, RESCORE_REPORTS
from skinscreen.worker.tasks import RETRY

REPORT_TTL_S = 24 * 3600
"""How long a run's reports stay in Redis when no CLI reads them (it stopped waiting, or died)."""


class RescoreState:
    """One process's session factory, decode pool and classifiers by version, made on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Any] = {}
        self.classifiers: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        if not self._made:
            from skinscreen.db.session import make_engine, make_session_factory

            s = self.settings
            self._made["sessions"] = make_session_factory(make_engine(s.database_url))
            self._made["pool"] = ThreadPoolExecutor(max_workers=s.threads or 2, thread_name_prefix="rescore")
            self._made["redis"] = connect(s.broker_url)
        return self._made

    def classifier(self, version: str) -> Any:
        """The classifier of `version` (installed or shipped), loaded once per process."""
        if version not in self.classifiers:
            from skinscreen.models.classifier import load_classifier
            from skinscreen.models.registry import find_model

            s = self.settings
            model_dir = find_model(version, s.models_folder())
            self.classifiers[version] = load_classifier(model_dir, backend=s.backend, threads=s.threads)
        return self.classifiers[version]


def register(app: Celery, settings: Settings) -> None:
    """Add `rescore_batch` to `app`; models are loaded in the worker process on their first batch."""
    state = RescoreState(settings)

    @app.task(
        name=RESCORE_BATCH,
        bind=True,
        **RETRY,
    )
    def rescore_batch(
        self: Any, image_ids: list[int], version: str, run_id: str | None = None
    ) -> dict[str, Any]:
        """Add `version`'s predictions for these images; their state and shown scores do not change.

        With `run_id`, the report goes to the CLI's list once the predictions are committed: only a
        run that got this far reports (an autoretry raised before). A report pushed twice (a retry
        after a lost reply from Redis, a redelivery after a crash) carries the same task id, which
        the CLI counts once.
        """
        from skinscreen.ops.rescore import rescore_ids

        made = state.get()
        report = rescore_ids(
            image_ids,
            sessions=made["sessions"],
            classifier=state.classifier(version),
            pool=made["pool"],
            audit_fraction=state.settings.audit_fraction,
        )
        done = asdict(report)
        if run_id:
            key = RESCORE_REPORTS + run_id
            with made["redis"].pipeline() as pipe:
                pipe.rpush(key, json.dumps({**done, "task_id": self.request.id}))
                pipe.expire(key, REPORT_TTL_S)
                pipe.execute()
        return done
