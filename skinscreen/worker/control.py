"""For Celery's own command line only: `celery -A skinscreen.worker.control inspect ping`.

An entry point, so it builds the settings (from SKINSCREEN_* variables) when imported; nothing
in the package imports it. The `worker` command builds its app from its own settings instead.
"""

from __future__ import annotations

from skinscreen.config import Settings
from skinscreen.worker.app import make_celery

app = make_celery(Settings())
