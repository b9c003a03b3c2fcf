"""Group image ids into batches and hand each batch to a sender (Celery, or the in-process scorer)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from skinscreen.config import Settings
from skinscreen.tasknames import QUEUE, SCORE_BATCH

logger = logging.getLogger(__name__)

Sender = Callable[[list[int]], None]


class Batcher:
    """Collects ids; sends N at a time, or fewer once the oldest has waited `wait` seconds."""

    def __init__(self, *, size: int, wait: float, send: Sender) -> None:
        self.size = size
        self.wait = wait
        self.send = send
        self._ids: list[int] = []
        self._since: float | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[int]) -> None:
        if ids and self._since is None:
            self._since = time.monotonic()
        self._ids.extend(ids)
        while len(self._ids) >= self.size:
            self._emit(self._ids[: self.size])
            self._ids = self._ids[self.size :]
            self._since = time.monotonic() if self._ids else None

    def tick(self) -> None:
        """Send a partial batch whose first id has waited long enough."""
        if self._ids and self._since is not None and time.monotonic() - self._since >= self.wait:
            self.flush()

    def flush(self) -> None:
        while self._ids:
            self._emit(self._ids[: self.size])
            self._ids = self._ids[self.size :]
        self._since = None

    def _emit(self, ids: list[int]) -> None:
        self.send(list(ids))


def queue_depth(broker_url: str) -> int | None:
    """Messages waiting in the Redis queue, or None when the broker cannot be reached."""
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return int(client.llen(QUEUE))
        finally:
            client.close()
    except (redis.RedisError, ValueError):
        return None


def celery_sender(settings: Settings) -> Sender:
    """Send `score_batch(ids)` by name through the broker; the worker's code is not imported here."""
    from celery import Celery

    app = Celery("skinscreen-ingest", broker=settings.broker_url, set_as_current=False)

    def send(ids: list[int]) -> None:
        app.send_task(
            SCORE_BATCH,
            args=[ids],
            queue=QUEUE,
            serializer="json",
            retry=True,
            retry_policy={"max_retries": 10},
        )
        logger.info("enqueued a batch of %d images", len(ids))

    return send
