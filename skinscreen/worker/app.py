"""The Celery app: Redis broker, late acks, one task at a time per process, no result backend.

Importing this module does not import TensorFlow, so the ingester can use it to send tasks.
"""

from __future__ import annotations

from celery import Celery

from skinscreen.config import Settings

QUEUE = "skinscreen"
SCORE_BATCH = "skinscreen.score_batch"


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured so that a lost worker never loses a message."""
    app = Celery("skinscreen", broker=settings.broker_url, include=["skinscreen.worker.tasks"])
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Ack only once the batch is stored; redeliver if the process dies mid-batch.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


app = make_celery(Settings())
