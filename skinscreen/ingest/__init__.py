"""Ingest: find complete files in the inbox, register them once, send their ids in batches."""

from __future__ import annotations

from skinscreen.ingest.enqueue import Batcher, celery_sender
from skinscreen.ingest.watcher import Ingester

__all__ = ["Batcher", "Ingester", "celery_sender"]
