"""The model in force, for one scoring process: the promoted version, swapped in between batches.

Before each batch the process reads which version is promoted (`skinscreen.db.promotions`, one
primary-key read: nothing next to the batch's own queries and model call). When it changed, the new
version's folder is found by the model registry, loaded in this process (after the fork: runtimes do
not survive one), and the old classifier is let go; the batch in hand always finishes with the model
it started with. So `skinscreen models promote V` reaches every worker on its next batch, without a
restart or a setting; SKINSCREEN_MODEL only names the model before the first promotion.

A promoted version this process cannot load (not installed on this machine, a broken file) is
logged as an error and the process keeps scoring with the model it has, trying again every
RETRY_SECONDS; with no model at all the error is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from skinscreen.config import Settings
from skinscreen.db.promotions import promoted_version
from skinscreen.db.session import session_scope
from skinscreen.models.classifier import Classifier, load_classifier
from skinscreen.models.registry import model_in_force, read_card
from skinscreen.sites.report import ModelInfo, card_info

logger = logging.getLogger(__name__)

RETRY_SECONDS = 60.0
"""How long a process waits before trying again to load a promoted version it could not load."""


@dataclass(frozen=True)
class Loaded:
    """A loaded classifier, what drift judges it by, and which promotion (None: the setting) chose it."""

    classifier: Classifier
    info: ModelInfo
    card_version: str
    promoted: str | None


class ModelInForce:
    """One process's classifier of the model in force; `current` is called before each batch."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._loaded: Loaded | None = None
        self._failed: dict[str | None, float] = {}

    def current(self, sessions: sessionmaker[Session]) -> Loaded:
        """The classifier to score the next batch with (loaded or swapped here when needed)."""
        with session_scope(sessions) as session:
            promoted = promoted_version(session)
        return self._for(promoted)

    def load_first(self, sessions: sessionmaker[Session]) -> Loaded:
        """Load at process start; with the database unreadable, SKINSCREEN_MODEL until the next batch."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self.current(sessions)
        except SQLAlchemyError as exc:
            logger.warning(
                "cannot read the promoted model version (%s); loading %s",
                type(exc).__name__,
                self.settings.model,
            )
            return self._for(None)

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.classifier.close()
            self._loaded = None

    def _for(self, promoted: str | None) -> Loaded:
        held = self._loaded
        if held is not None and held.promoted == promoted:
            return held
        if held is not None and promoted is not None and promoted == held.card_version:
            # Already scoring with it (the setting named the version that was then promoted).
            self._loaded = Loaded(held.classifier, held.info, held.card_version, promoted)
            return self._loaded
        failed_at = self._failed.get(promoted)
        if held is not None and failed_at is not None and self._clock() - failed_at < RETRY_SECONDS:
            return held
        try:
            loaded = self._load(promoted)
        except Exception as exc:  # ModelError, or whatever a runtime raises on a broken file
            if held is None:
                raise
            self._failed[promoted] = self._clock()
            logger.error(
                "model %s is promoted but cannot be loaded here (%s); still scoring with %s",
                promoted,
                exc,
                held.classifier.version,
            )
            return held
        self._failed.pop(promoted, None)
        self._loaded = loaded
        if held is not None:
            held.classifier.close()
            logger.info("model in force: %s (was %s)", loaded.classifier.version, held.classifier.version)
        return loaded

    def _load(self, promoted: str | None) -> Loaded:
        s = self.settings
        folder: Path = model_in_force(promoted, settings=s)
        card = read_card(folder)
        classifier = load_classifier(folder, backend=s.backend, threads=s.threads)
        # An int8 runtime stores its scores under its own version: drift reads those.
        return Loaded(classifier, card_info(card, version=classifier.version), card.version, promoted)
