"""The worker's Celery app: Redis broker, late acks, one task at a time per process, no result backend.

`make_celery(settings)` is called once, by the `worker` command, with the settings it built; the
prefork children inherit the app and those settings through the fork. Nothing here runs at import.
"""

from __future__ import annotations

from celery import Celery

from skinscreen.config import Settings
from skinscreen.tasknames import QUEUE


def make_celery(settings: Settings) -> Celery:
    """A Celery app with the scoring task, configured so that a lost worker never loses a message."""
    from skinscreen.worker import rescore_tasks, tasks

    app = Celery("skinscreen", broker=settings.broker_url)
    app.conf.update(
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Ack only once the batch is stored; redeliver if the process dies mid-batch.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A batch held by a worker that died is delivered again once the visibility timeout has
        # passed; kombu looks for such batches every 10 s times its throttle (10 by default, so
        # every ~100 s). Throttle 1: they come back within ~10 s of the timeout.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    tasks.register(app, settings)
    rescore_tasks.register(app, settings)
    return app
