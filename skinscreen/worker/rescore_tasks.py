"""The shadow re-score task: `skinscreen rescore --through-workers` sends batches of ids and a version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from celery import Celery

from skinscreen.config import Settings
from skinscreen.tasknames import RESCORE_BATCH
from skinscreen.worker.tasks import RETRY_ON


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
        return self._made

    def classifier(self, version: str) -> Any:
        """The classifier of `version` (installed or shipped), loaded once per process."""
        if version not in self.classifiers:
            from skinscreen.models.classifier import load_classifier
            from skinscreen.ops.registry import find_model

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
        autoretry_for=RETRY_ON,
        retry_backoff=2,
        retry_backoff_max=60,
        max_retries=20,
    )
    def rescore_batch(self: Any, image_ids: list[int], version: str) -> dict[str, Any]:
        """Add `version`'s predictions for these images; their state and shown scores do not change."""
        from skinscreen.ops.rescore import rescore_ids

        made = state.get()
        report = rescore_ids(
            image_ids,
            sessions=made["sessions"],
            classifier=state.classifier(version),
            pool=made["pool"],
            audit_fraction=state.settings.audit_fraction,
        )
        return asdict(report)
