"""Store a batch's scores so that one image whose data the database refuses fails alone.

The batch is written in one transaction (one round trip for the predictions). If the database
refuses it for a permanent reason (see `skinscreen.db.errors`), the scores are written one
transaction each; the image that is refused again is stored as failed, with a reason naming the
database error class (never the refused value), and the rest of the batch is stored. A transient
error is raised to the caller, which retries the batch (images already stored are skipped then).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from skinscreen.db import errors, queries
from skinscreen.db.session import session_scope
from skinscreen.results import FileScore

logger = logging.getLogger(__name__)


def _save(
    sessions: sessionmaker[Session],
    scores: Mapping[int, FileScore],
    model_version: str,
    audit_fraction: float,
    shadow: bool,
) -> None:
    with session_scope(sessions) as session:
        queries.save_scores(
            session, scores, model_version=model_version, audit_fraction=audit_fraction, shadow=shadow
        )


def store_scores(
    sessions: sessionmaker[Session],
    scores: Mapping[int, FileScore],
    *,
    model_version: str,
    audit_fraction: float = 0.0,
    shadow: bool = False,
) -> dict[int, FileScore]:
    """Store the scores (`queries.save_scores`; `shadow` for a re-score by another version); return
    them as stored (an image the database refused comes back failed)."""
    try:
        _save(sessions, scores, model_version, audit_fraction, shadow)
        return dict(scores)
    except Exception as exc:
        if not errors.is_permanent(exc) or len(scores) == 0:
            raise
        logger.warning(
            "the database refused a batch of %d results (%s); storing them one at a time",
            len(scores),
            errors.describe(exc),
        )
    stored: dict[int, FileScore] = {}
    for image_id, score in scores.items():
        try:
            _save(sessions, {image_id: score}, model_version, audit_fraction, shadow)
            stored[image_id] = score
            continue
        except Exception as exc:
            if not errors.is_permanent(exc):
                raise
            reason = f"the database refused this image's data: {errors.describe(exc)}"
        failed = dataclasses.replace(
            score, probability=None, flagged=None, threshold=None, reason=reason, dicom=None
        )
        try:
            _save(sessions, {image_id: failed}, model_version, audit_fraction, shadow)
        except Exception as again:
            if not errors.is_permanent(again):
                raise
            # The image row itself cannot take the failure (deleted meanwhile): nothing to mark.
            logger.error(
                "image %d: even its failure could not be stored (%s)", image_id, errors.describe(again)
            )
        logger.warning("image %d failed: %s", image_id, reason)
        stored[image_id] = failed
    return stored
