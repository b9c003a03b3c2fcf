"""The Celery task. The model and the database engine are made once per worker process, after the fork;
the model in force is read again before each batch and swapped when a new version is promoted."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import SQLAlchemyError

from skinscreen.config import Settings
from skinscreen.db.errors import is_transient
from skinscreen.heartbeat import Holds, connect
from skinscreen.tasknames import SCORE_BATCH

# Connection errors only: a bad image is a stored result, never a retry. Database errors are classified
# in the task body (skinscreen.db.errors): a permanent one must not be retried.
RETRY_ON = (BrokerOperationalError, RedisConnectionError, ConnectionError)
RETRY = {"autoretry_for": RETRY_ON, "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 20}
"""Every task's retry policy: a broker or Redis outage is waited out with backoff, never lost."""


class ProcessState:
    """One process's model in force, session factory and decode pool, made from the settings on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._made: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        if not self._made:
            from skinscreen.db.session import make_engine, make_session_factory
            from skinscreen.worker.in_force import ModelInForce

            s = self.settings
            self._made["sessions"] = make_session_factory(make_engine(s.database_url))
            self._made["model"] = ModelInForce(s)
            self._made["model"].load_first(self._made["sessions"])
            self._made["pool"] = ThreadPoolExecutor(max_workers=s.threads or 2, thread_name_prefix="decode")
            self._made["holds"] = Holds(
                connect(s.broker_url), every=s.heartbeat_seconds, timeout=s.heartbeat_timeout
            )
        return self._made

    def close(self) -> None:
        if self._made:
            self._made["pool"].shutdown(wait=False)
            self._made["model"].close()


def register(app: Celery, settings: Settings) -> None:
    """Add `score_batch` to `app`; each worker process loads its model with `settings` after the fork."""
    state = ProcessState(settings)

    def load_after_fork(**_: Any) -> None:
        # Each prefork child loads its own model: TensorFlow and ONNX Runtime sessions do not survive a fork.
        state.get()

    def close(**_: Any) -> None:
        state.close()

    worker_process_init.connect(load_after_fork, weak=False)
    worker_process_shutdown.connect(close, weak=False)

    @app.task(
        name=SCORE_BATCH,
        bind=True,
        **RETRY,
    )
    def score_batch(self: Any, image_ids: list[int]) -> dict[str, Any]:
        """Score these images; a bad file is stored as failed with its reason, never raised."""
        from skinscreen.worker.batches import score_ids

        made = state.get()
        try:
            model = made["model"].current(made["sessions"])  # a new promotion is taken up here
            # The batch is recorded as held, with a heartbeat, so that the sweeper re-sends it if this
            # process dies (skinscreen/heartbeat.py).
            with made["holds"].holding(str(self.request.id), list(image_ids)):
                report = score_ids(
                    image_ids,
                    sessions=made["sessions"],
                    classifier=model.classifier,
                    pool=made["pool"],
                    audit_fraction=state.settings.audit_fraction,
                    settings=state.settings,
                    drift=model.info,
                )
        except SQLAlchemyError as exc:
            # A lost connection or a lost race is worth a retry; anything else would fail again.
            if not is_transient(exc):
                raise
            raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc
        return asdict(report)
