"""Which batch each running task holds, with heartbeats in Redis: a dead worker's batch is re-sent.

A worker killed mid-batch (SIGKILL, a lost machine) leaves its message unacknowledged in Redis until
the visibility timeout (an hour by default). Instead, each running task records what it holds:

- `skinscreen:held`, a hash: task id -> {"ids": [...], "worker": "host:pid", "since": unix time}
- `skinscreen:alive:<task id>`, a key that expires after `heartbeat_timeout` seconds and is renewed
  every `heartbeat_seconds` by a thread of the process running the task.

The sweeper (the ingester's loop, and `skinscreen sweep`) calls `take_orphans`: a hold whose alive key
has expired belonged to a process that died; its ids are taken (one caller wins the HDEL) and sent
again. A slow worker keeps renewing its key, so its batch is left alone. The images already scored
are skipped when the batch is scored again (and when the old message comes back after the
visibility timeout), so an image is never scored twice.

Redis errors never fail a batch: without a hold the batch is still scored, and the visibility
timeout and the queued-image sweeper remain as the slower fallbacks.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

logger = logging.getLogger(__name__)

HELD = "skinscreen:held"
ALIVE = "skinscreen:alive:"


def connect(broker_url: str) -> redis.Redis:
    """A client on the broker's Redis database, with short timeouts (a heartbeat must not hang)."""
    return redis.Redis.from_url(broker_url, socket_connect_timeout=5, socket_timeout=5)


class Holds:
    """Records, renews and releases the holds of one worker process."""

    def __init__(self, client: redis.Redis, *, every: float, timeout: float) -> None:
        self.client = client
        self.every = every
        self.timeout_ms = max(1, int(timeout * 1000))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    @contextmanager
    def holding(self, task_id: str, image_ids: list[int]) -> Iterator[None]:
        """Hold `image_ids` under `task_id` while the block runs, renewing the heartbeat."""
        try:
            self._claim(task_id, image_ids)
        except redis.RedisError as exc:
            logger.warning("could not record the batch held (%s); scoring it anyway", type(exc).__name__)
            yield
            return
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(task_id, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join(timeout=self.every + 5)
            try:
                self._release(task_id)
            except redis.RedisError as exc:
                # The alive key expires on its own; the sweeper then finds the images scored.
                logger.warning("could not release the batch held (%s)", type(exc).__name__)

    def _claim(self, task_id: str, image_ids: list[int]) -> None:
        record = json.dumps({"ids": image_ids, "worker": self.worker, "since": time.time()})
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(ALIVE + task_id, self.worker, px=self.timeout_ms)  # alive before held: never orphaned
            pipe.hset(HELD, task_id, record)
            pipe.execute()

    def _beat(self, task_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            try:
                self.client.set(ALIVE + task_id, self.worker, px=self.timeout_ms)
            except redis.RedisError as exc:
                logger.warning("heartbeat not sent (%s)", type(exc).__name__)

    def _release(self, task_id: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(HELD, task_id)  # held gone before alive: the sweeper never sees a finished hold as dead
            pipe.delete(ALIVE + task_id)
            pipe.execute()


def take_orphans(client: redis.Redis) -> list[int]:
    """The image ids of holds whose heartbeat stopped; each hold is taken by one caller only."""
    ids: list[int] = []
    for task_id, record in client.hgetall(HELD).items():
        key = task_id.decode() if isinstance(task_id, bytes) else str(task_id)
        if client.exists(ALIVE + key):
            continue
        if client.hdel(HELD, key) == 1:  # another sweeper may have taken it between the two calls
            try:
                ids.extend(int(i) for i in json.loads(record)["ids"])
            except (ValueError, KeyError, TypeError):
                logger.warning("a held batch record could not be read; left to the queued-image sweeper")
    return ids


def orphan_taker(broker_url: str) -> Callable[[], list[int]]:
    """`take_orphans` on the broker, answering [] (with a warning) while Redis is unreachable."""

    def take() -> list[int]:
        client = connect(broker_url)
        try:
            return take_orphans(client)
        except redis.RedisError as exc:
            logger.warning("cannot look for batches of dead workers (%s)", type(exc).__name__)
            return []
        finally:
            client.close()

    return take
