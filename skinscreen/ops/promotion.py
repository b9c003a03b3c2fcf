"""Which model version's flags reviewers see, and its history: `skinscreen models promote`.

Until a version is promoted, each image shows its first prediction (see
`skinscreen.db.queries.latest_prediction`). Promoting a version makes its predictions the ones the
queue, the API and `skinscreen cases` show, and the model in force: workers score new images with it
from their next batch on, no restart (`skinscreen.db.promotions`); promoting the previous one again is
the way back. Every promotion is a new row in `model_promotion` and an audit event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from skinscreen.db.audit import Action, record
from skinscreen.db.promotions import promoted_version
from skinscreen.db.tables import Batch, Image, ModelPromotion, Prediction, SiteThreshold, State, utcnow
from skinscreen.errors import SkinScreenError

logger = logging.getLogger(__name__)


class PromotionError(SkinScreenError):
    """Raised when a version cannot be promoted (unknown, or it has not scored the cases yet)."""


@dataclass(frozen=True)
class Promotion:
    """What a promotion changed and what it leaves to do."""

    version: str
    previous: str | None
    scored: int
    missing: int
    sites_to_recalibrate: list[str]


def shown_version(session: Session) -> str | None:
    """The version reviewers see: the promoted one, else the one most images were first scored with."""
    promoted = promoted_version(session)
    if promoted is not None:
        return promoted
    first = select(func.min(Prediction.id)).group_by(Prediction.image_id)
    stmt = (
        select(Prediction.model_version)
        .where(Prediction.id.in_(first))
        .group_by(Prediction.model_version)
        .order_by(func.count().desc())
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def coverage(session: Session, version: str) -> tuple[int, int]:
    """(scored images with a prediction of `version`, scored images without one that a re-score can
    still reach). A purged image (its file removed by retention) cannot be re-scored, as
    `rescore_targets` knows: it keeps showing its first prediction and is not missing."""
    has = select(Prediction.image_id).where(Prediction.model_version == version)
    total = select(func.count()).select_from(Image).where(Image.state == State.scored)
    with_it = session.execute(total.where(Image.id.in_(has))).scalar_one()
    without = session.execute(total.where(Image.id.not_in(has), Image.purged_at.is_(None))).scalar_one()
    return int(with_it), int(without)


def sites_to_recalibrate(session: Session, version: str) -> list[str]:
    """Sites that have cases but no calibrated threshold for `version` (a `site_threshold` row)."""
    calibrated = select(SiteThreshold.site).where(SiteThreshold.model_version == version)
    stmt = (
        select(Batch.site)
        .join(Image, Image.batch_id == Batch.id)
        .where(Batch.site.not_in(calibrated))
        .group_by(Batch.site)
        .order_by(Batch.site)
    )
    return [str(site) for site in session.execute(stmt).scalars()]


def promote(
    session: Session,
    version: str,
    *,
    account_id: int | None = None,
    force: bool = False,
    note: str | None = None,
) -> Promotion:
    """Make `version` the shown model; refuses one that has not scored every scored image, unless `force`."""
    scored, missing = coverage(session, version)
    if scored == 0 and not force:
        raise PromotionError(f"no predictions of {version}: run `skinscreen rescore --model {version}` first")
    if missing and not force:
        raise PromotionError(
            f"{version} has not scored {missing} of {scored + missing} scored images; rescore them first "
            "(or --force: those keep showing their first prediction)"
        )
    previous = shown_version(session)
    session.add(
        ModelPromotion(
            model_version=version,
            previous_version=previous,
            account_id=account_id,
            note=note,
            created_at=utcnow(),
        )
    )
    sites = sites_to_recalibrate(session, version)
    detail = (
        f"{previous or '-'} -> {version}; {scored} images scored, {missing} not; "
        f"recalibrate: {len(sites)} sites"
    )
    record(session, account_id=account_id, action=Action.model_promoted, detail=detail)
    logger.info("promoted model %s (was %s)", version, previous)
    return Promotion(version, previous, scored, missing, sites)


def promotion_history(session: Session) -> list[dict[str, Any]]:
    """Every promotion, newest first."""
    stmt = select(ModelPromotion).order_by(ModelPromotion.id.desc())
    return [
        {
            "id": p.id,
            "model_version": p.model_version,
            "previous_version": p.previous_version,
            "created_at": p.created_at,
            "note": p.note,
        }
        for p in session.execute(stmt).scalars()
    ]
