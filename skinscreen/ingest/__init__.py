"""Ingest: find complete files in the inbox and register them once (`Ingester`); batch, send and
sweep their ids (`Dispatcher`). Imports neither the models nor the worker: tasks go by name."""

from __future__ import annotations

from skinscreen.ingest.dispatch import Dispatcher
from skinscreen.ingest.enqueue import Batcher, celery_sender
from skinscreen.ingest.watcher import Ingester

__all__ = ["Batcher", "Dispatcher", "Ingester", "celery_sender"]
