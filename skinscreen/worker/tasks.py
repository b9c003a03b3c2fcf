"""Celery tasks. The model and the database engine are made once per worker process, after the fork."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import InterfaceError, OperationalError

from skinscreen.config import Settings
from skinscreen.worker.app import SCORE_BATCH, app

logger = logging.getLogger(__name__)

_state: dict[str, Any] = {}


def process_state() -> dict[str, Any]:
    """This process's settings, classifier, session factory and decode pool, made on first use."""
    if not _state:
        from skinscreen.db.session import make_engine, make_session_factory
        from skinscreen.models.classifier import load_classifier

        settings = Settings()
        _state["classifier"] = load_classifier(
            settings.model, backend=settings.backend, threads=settings.threads
        )
        _state["sessions"] = make_session_factory(make_engine(settings.database_url))
        _state["pool"] = ThreadPoolExecutor(max_workers=settings.threads or 2, thread_name_prefix="decode")
    return _state


@worker_process_init.connect
def _load_after_fork(**_: Any) -> None:
    # Each prefork child loads its own model: TensorFlow and ONNX Runtime sessions do not survive a fork.
    process_state()


@worker_process_shutdown.connect
def _close(**_: Any) -> None:
    if _state:
        _state["pool"].shutdown(wait=False)


@app.task(
    name=SCORE_BATCH,
    bind=True,
    # Connection errors only: a bad image is a stored result, never a retry.
    autoretry_for=(
        OperationalError,
        InterfaceError,
        BrokerOperationalError,
        RedisConnectionError,
        ConnectionError,
    ),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
)
def score_batch(self: Any, image_ids: list[int]) -> dict[str, Any]:
    """Score these images; a bad file is stored as failed with its reason, never raised."""
    from skinscreen.worker.scoring import score_ids

    state = process_state()
    report = score_ids(
        image_ids, sessions=state["sessions"], classifier=state["classifier"], pool=state["pool"]
    )
    return asdict(report)
