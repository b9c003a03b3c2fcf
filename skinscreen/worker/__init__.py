"""Workers: the Celery app and tasks, and the scoring function the embedded mode shares."""

from __future__ import annotations

from skinscreen.worker.scoring import BatchReport, score_ids

__all__ = ["BatchReport", "score_ids"]
