"""The embedded mode: ingest and score in one process on the SQLite default, no Redis.

It goes through the same Ingester, Dispatcher and `score_ids` as the distributed mode; only the
sender differs (a direct call instead of a Celery message). Like a worker, it reads the model in force
before each batch (`skinscreen.worker.in_force`): a version promoted meanwhile scores the next batch.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tqdm import tqdm

from skinscreen.config import Settings
from skinscreen.counts import Counts
from skinscreen.db import migrate
from skinscreen.db.session import make_engine, make_session_factory
from skinscreen.ingest.dispatch import Dispatcher
from skinscreen.ingest.watcher import Ingester
from skinscreen.models.classifier import Scorer
from skinscreen.sites.report import ModelInfo
from skinscreen.worker.batches import score_ids
from skinscreen.worker.in_force import ModelInForce

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What one `skinscreen run` did: the ingester's and the scoring's counts, and the model."""

    counts: Counts = field(default_factory=Counts)
    model_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "files_seen": c.seen,
            "new_images": c.new,
            "duplicates": c.duplicate,
            "refused": c.refused,
            "scored": c.scored,
            "flagged": c.flagged,
            "failed": c.failed,
            "failed_by_reason": dict(sorted(c.reasons.items())),
            "model_version": self.model_version,
        }


def show_progress(bar: tqdm[Any], done: int, counts: Counts) -> None:
    """Advance the bar by `done` images and draw it now, with the flagged and failed counts so far.

    Drawn at once, not at the bar's next update: watching an inbox, the bar can sit for hours after a
    batch, and must not show the flagged count of the batch before.
    """
    bar.set_postfix(flagged=counts.flagged, failed=counts.failed, refresh=False)
    bar.update(done)
    bar.refresh()


def run_embedded(
    roots: list[Path],
    *,
    settings: Settings,
    once: bool,
    progress: bool = True,
    classifier: Scorer | None = None,
) -> RunSummary:
    """Watch (or, with `once`, take what is there) and score in process until done or interrupted.

    Without `classifier` (a stand-in, kept for the whole run), the model in force scores each batch.
    """
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    in_force = ModelInForce(settings)  # loads nothing until asked

    def model() -> tuple[Scorer, ModelInfo | None]:
        if classifier is not None:
            return classifier, None
        loaded = in_force.current(sessions)
        return loaded.classifier, loaded.info

    summary = RunSummary(model_version=model()[0].version)
    bar = tqdm(total=0, unit="img", desc="scoring", disable=not progress, dynamic_ncols=True)

    with ThreadPoolExecutor(max_workers=settings.threads or 2, thread_name_prefix="decode") as pool:

        def send(ids: list[int]) -> None:
            scorer, drift = model()
            summary.model_version = scorer.version
            summary.counts.add(
                score_ids(
                    ids,
                    sessions=sessions,
                    classifier=scorer,
                    pool=pool,
                    audit_fraction=settings.audit_fraction,
                    settings=settings,
                    drift=drift,
                )
            )
            show_progress(bar, len(ids), summary.counts)

        def registered(_image_id: int, new: int) -> None:
            bar.total += new

        dispatcher = Dispatcher(settings=settings, sessions=sessions, send=send, in_process=True)
        ingester = Ingester(
            roots, settings=settings, sessions=sessions, dispatcher=dispatcher, on_registered=registered
        )
        # Nothing else scores in this mode: anything left queued by an earlier run is ours now.
        left = dispatcher.sweep(older_than=timedelta(0))
        bar.total += left
        try:
            ingester.run(once=once)
        except KeyboardInterrupt:
            logger.info("interrupted; images not yet scored stay queued for the next run")
        finally:
            bar.close()
            in_force.close()
            engine.dispose()
    summary.counts.add(ingester.counts)
    return summary
