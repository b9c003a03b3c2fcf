"""The names the ingester and the workers agree on: the queue and the task. A leaf: imports nothing.

The ingester sends `SCORE_BATCH` by name to `QUEUE`, so it never imports the worker's code (nor,
through it, the model, pydicom or Pillow).
"""

from __future__ import annotations

QUEUE = "skinscreen"
"""The Redis list the batches wait in."""

SCORE_BATCH = "skinscreen.score_batch"
"""The task that scores a list of image ids."""

RESCORE_BATCH = "skinscreen.rescore_batch"
"""The task that adds another model version's (shadow) predictions for a list of image ids."""

RESCORE_REPORTS = "skinscreen:rescore:"
"""With a run id appended: the Redis list a `RESCORE_BATCH` task pushes its report to, for its CLI."""
