"""Dispatching registered ids: batch them, send each batch, stamp it sent; sweep and resend what is stuck.

The ingester hands new ids to a `Dispatcher`; the `sweep` and `requeue` commands use one alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from skinscreen.config import Settings
from skinscreen.db import queries
from skinscreen.db.session import session_scope
from skinscreen.ingest.enqueue import Batcher, Sender

logger = logging.getLogger(__name__)


class Dispatcher:
    """Sends ids in batches through `send` and stamps them (`queued_at`, `attempts`), the sweeper's clock.

    `in_process`: `send` scores the batch itself (the embedded `run`), so each batch is stamped
    before it is sent, never after it was scored. Otherwise the stamp follows the send: a batch sent
    but not stamped (the process stopped in between) is sent again at the next start, which is
    harmless, whereas one stamped but never sent would wait for the sweeper.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        send: Sender,
        backlog: Callable[[], int | None] | None = None,
        in_process: bool = False,
        orphans: Callable[[], list[int]] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.backlog = backlog
        self.in_process = in_process
        self.orphans = orphans  # ids held by dead workers (skinscreen.heartbeat.orphan_taker)
        self._send_batch = send
        self.batcher = Batcher(size=settings.batch_size, wait=settings.batch_wait, send=self._send)

    def _send(self, ids: list[int]) -> None:
        if self.in_process:
            self._stamp(ids)
        self._send_batch(ids)
        if not self.in_process:
            self._stamp(ids)

    def _stamp(self, ids: list[int]) -> None:
        with session_scope(self.sessions) as session:
            queries.mark_enqueued(session, ids)

    def add(self, ids: list[int]) -> None:
        """Queue ids; full batches go at once, a partial one after `batch_wait` (see `tick`)."""
        self.batcher.add(ids)

    def tick(self) -> None:
        self.batcher.tick()

    def flush(self) -> None:
        self.batcher.flush()

    def sweep(self, *, older_than: timedelta | None = None) -> int:
        """Send again the images left queued too long (a lost message, a restarted Redis).

        While the broker still holds messages, a queued image may simply be waiting its turn, so
        the sweep only runs once the queue is empty (or its depth is unknown).
        """
        if self.backlog is not None and (self.backlog() or 0) > 0:
            return 0
        age = older_than if older_than is not None else timedelta(seconds=self.settings.sweep_after)
        with session_scope(self.sessions) as session:
            ids = queries.stale_queued(session, older_than=age)
        if ids:
            logger.info("sweeper: re-enqueueing %d images left queued", len(ids))
            self.add(ids)
            self.flush()
        return len(ids)

    def resend_orphans(self) -> int:
        """Send again the images a worker held when its heartbeat stopped (it died mid-batch)."""
        ids = self.orphans() if self.orphans is not None else []
        if ids:
            with session_scope(self.sessions) as session:
                ids = queries.still_queued(session, ids)
        if ids:
            logger.warning("sweeper: re-sending %d images held by a worker that stopped", len(ids))
            self.add(ids)
            self.flush()
        return len(ids)

    def send_unsent(self) -> int:
        """Images registered but never sent (the ingester stopped in between) are sent now."""
        with session_scope(self.sessions) as session:
            ids = queries.never_enqueued(session)
        self.add(ids)
        self.flush()
        return len(ids)
