"""Workers: the Celery app and tasks, and `score_ids`, which the embedded mode shares."""

from __future__ import annotations

from skinscreen.worker.batches import score_ids

__all__ = ["score_ids"]
