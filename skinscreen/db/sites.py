"""Sites in the database: the threshold in force per (site, model version), flags and the audit sample.

A site is the first folder level under the inbox (`batch.site`). The scoring path asks
`thresholds_in_force` for each image's threshold before scoring, and the save path asks `audit_ids`
which unflagged cases enter the audit sample; `set_threshold`/`clear_threshold` change a site's
operating point and `redecide` re-decides that site's unreviewed cases. The flag itself is always
`skinscreen.flagging`'s rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from skinscreen.db.tables import Batch, Image, Prediction, Review, SiteThreshold, State, utcnow
from skinscreen.flagging import flags

logger = logging.getLogger(__name__)

_DRAW_SALT = b"skinscreen-audit-sample:"
_DRAW_DIGITS = 13  # 52 bits: exact in a float


def audit_draw(sha256: str) -> float:
    """A uniform number in [0, 1) fixed by the image's content: the same image always draws the same.

    Seeding the draw per image makes the sample reproducible and safe to run twice (a re-delivered
    batch, a re-flag), and independent of the score, so the audit cases are a simple random sample of
    the unflagged ones.
    """
    digest = hashlib.sha256(_DRAW_SALT + sha256.encode()).hexdigest()
    return float(int(digest[:_DRAW_DIGITS], 16) / float(16**_DRAW_DIGITS))


def in_audit_sample(sha256: str, *, flagged: bool, fraction: float) -> bool:
    """Whether an unflagged case is drawn into the audit sample (a flagged case is reviewed anyway)."""
    return not flagged and audit_draw(sha256) < fraction


def site_thresholds(session: Session, *, model_version: str) -> dict[str, SiteThreshold]:
    """The calibrated operating points of this model version, by site."""
    rows = session.execute(select(SiteThreshold).where(SiteThreshold.model_version == model_version))
    return {row.site: row for row in rows.scalars()}


def threshold_in_force(session: Session, *, site: str, model_version: str, default: float) -> float:
    """The site's calibrated threshold for this model version, or the model's own (`default`)."""
    found = session.execute(
        select(SiteThreshold.threshold).where(
            SiteThreshold.site == site, SiteThreshold.model_version == model_version
        )
    ).scalar_one_or_none()
    return float(found) if found is not None else default


def thresholds_in_force(
    session: Session, image_ids: Sequence[int], *, model_version: str, default: float
) -> dict[int, float]:
    """The threshold in force for each image: its site's for this model version, else `default`."""
    if not image_ids:
        return {}
    rows = session.execute(
        select(Image.id, SiteThreshold.threshold)
        .join(Batch, Batch.id == Image.batch_id)
        .join(SiteThreshold, SiteThreshold.site == Batch.site)
        .where(Image.id.in_(list(image_ids)), SiteThreshold.model_version == model_version)
    )
    calibrated = {image_id: float(threshold) for image_id, threshold in rows}
    return {image_id: calibrated.get(image_id, default) for image_id in image_ids}


def audit_ids(session: Session, flagged: Mapping[int, bool], *, fraction: float) -> set[int]:
    """The unflagged images among `flagged` (image id -> flag) drawn into their site's audit sample."""
    candidates = [image_id for image_id, is_flagged in flagged.items() if not is_flagged]
    if not candidates or fraction <= 0:
        return set()
    rows = session.execute(select(Image.id, Image.sha256).where(Image.id.in_(candidates)))
    return {image_id for image_id, sha in rows if in_audit_sample(sha, flagged=False, fraction=fraction)}


def set_threshold(
    session: Session,
    *,
    site: str,
    model_version: str,
    threshold: float,
    target_sensitivity: float,
    source: str,
    evidence: dict[str, Any],
    created_by: str,
) -> float | None:
    """Store (or replace) a site's operating point; return the threshold it replaces, if any."""
    row = session.execute(
        select(SiteThreshold).where(SiteThreshold.site == site, SiteThreshold.model_version == model_version)
    ).scalar_one_or_none()
    previous = row.threshold if row is not None else None
    if row is None:
        row = SiteThreshold(site=site, model_version=model_version)
        session.add(row)
    row.threshold = threshold
    row.target_sensitivity = target_sensitivity
    row.source = source
    row.evidence = json.dumps(evidence, sort_keys=True)
    row.created_by = created_by
    row.created_at = utcnow()
    session.flush()
    return previous


def clear_threshold(session: Session, *, site: str, model_version: str) -> float | None:
    """Return the site to the model's threshold; the threshold it had, or None if it had none."""
    previous = threshold_in_force(session, site=site, model_version=model_version, default=-1.0)
    session.execute(
        delete(SiteThreshold).where(SiteThreshold.site == site, SiteThreshold.model_version == model_version)
    )
    return None if previous < 0 else previous


def _reviewed() -> Any:
    return exists(select(Review.id).where(Review.image_id == Prediction.image_id))


def redecide(
    session: Session, *, site: str, model_version: str, threshold: float, audit_fraction: float
) -> dict[str, int]:
    """Re-decide flag and audit mark of the site's unreviewed cases under `threshold`.

    Reviewed cases keep the flag (and the threshold) they were reviewed under: the verdict was given
    on that case as it was shown. Returns counts of what changed.
    """
    rows = session.execute(
        select(Prediction.id, Prediction.probability, Prediction.flagged, Prediction.audit, Image.sha256)
        .join(Image, Image.id == Prediction.image_id)
        .join(Batch, Batch.id == Image.batch_id)
        .where(Batch.site == site, Prediction.model_version == model_version, ~_reviewed())
    ).all()
    counts = {"cases": len(rows), "newly_flagged": 0, "unflagged": 0, "audit_added": 0, "audit_removed": 0}
    if not rows:
        return counts
    new_flags = flags(np.asarray([r.probability for r in rows], dtype=np.float64), threshold)
    groups: dict[tuple[bool, bool], list[int]] = {}
    for row, flagged in zip(rows, new_flags.tolist(), strict=True):
        audit = in_audit_sample(row.sha256, flagged=flagged, fraction=audit_fraction)
        counts["newly_flagged"] += int(flagged and not row.flagged)
        counts["unflagged"] += int(row.flagged and not flagged)
        counts["audit_added"] += int(audit and not row.audit)
        counts["audit_removed"] += int(row.audit and not audit)
        groups.setdefault((bool(flagged), audit), []).append(row.id)
    for (flagged, audit), ids in groups.items():
        for start in range(0, len(ids), 500):
            session.execute(
                update(Prediction)
                .where(Prediction.id.in_(ids[start : start + 500]))
                .values(flagged=flagged, audit=audit, threshold=threshold)
            )
    logger.info(
        "site re-decided under threshold %.4f: %d cases, %d newly flagged, %d unflagged",
        threshold,
        counts["cases"],
        counts["newly_flagged"],
        counts["unflagged"],
    )
    return counts


def known_sites(session: Session) -> list[str]:
    """Every site a batch came from, and every site with a threshold, sorted."""
    from_batches = set(session.execute(select(Batch.site).distinct()).scalars())
    from_thresholds = set(session.execute(select(SiteThreshold.site).distinct()).scalars())
    return sorted(from_batches | from_thresholds)


def site_counts(session: Session, *, model_version: str) -> dict[str, dict[str, int]]:
    """Per site: images, scored and failed images, and this model version's flagged and audit cases."""
    out: dict[str, dict[str, int]] = {}
    images = session.execute(
        select(
            Batch.site,
            func.count(Image.id),
            func.count(Image.id).filter(Image.state == State.scored),
            func.count(Image.id).filter(Image.state == State.failed),
        )
        .join(Image, Image.batch_id == Batch.id)
        .group_by(Batch.site)
    )
    for site, total, scored, failed in images:
        out[site] = {"images": total, "scored": scored, "failed": failed}
    preds = session.execute(
        select(
            Batch.site,
            func.count(Prediction.id),
            func.count(Prediction.id).filter(Prediction.flagged.is_(True)),
            func.count(Prediction.id).filter(Prediction.audit.is_(True)),
        )
        .join(Image, Image.id == Prediction.image_id)
        .join(Batch, Batch.id == Image.batch_id)
        .where(Prediction.model_version == model_version)
        .group_by(Batch.site)
    )
    for site, predicted, flagged, audit in preds:
        out.setdefault(site, {"images": 0, "scored": 0, "failed": 0})
        out[site].update(predicted=predicted, flagged=flagged, audit=audit)
    for counts in out.values():
        for key in ("predicted", "flagged", "audit"):
            counts.setdefault(key, 0)
    return out


@dataclass(frozen=True)
class SiteCase:
    """One of a site's cases under one model version, with its latest verdict (None: not reviewed)."""

    image_id: int
    probability: float
    flagged: bool
    audit: bool
    verdict: str | None


def site_cases(session: Session, *, site: str, model_version: str) -> list[SiteCase]:
    """Every scored case of the site under this model version, with the latest verdict on it."""
    latest = select(Review.image_id, func.max(Review.id).label("rid")).group_by(Review.image_id).subquery()
    stmt = (
        select(
            Prediction.image_id, Prediction.probability, Prediction.flagged, Prediction.audit, Review.verdict
        )
        .join(Image, Image.id == Prediction.image_id)
        .join(Batch, Batch.id == Image.batch_id)
        .outerjoin(latest, latest.c.image_id == Prediction.image_id)
        .outerjoin(Review, Review.id == latest.c.rid)
        .where(Batch.site == site, Prediction.model_version == model_version)
        .order_by(Prediction.image_id)
    )
    return [
        SiteCase(i, float(p), bool(f), bool(a), v.value if v is not None else None)
        for i, p, f, a, v in session.execute(stmt)
    ]


def batch_scores(
    session: Session, *, model_version: str, batch_ids: Sequence[int] | None = None
) -> dict[int, tuple[str, str, list[float], list[bool]]]:
    """Per batch id: (site, folder, probabilities, flags) of this model version's predictions."""
    stmt = (
        select(Batch.id, Batch.site, Batch.folder, Prediction.probability, Prediction.flagged)
        .join(Image, Image.batch_id == Batch.id)
        .join(Prediction, Prediction.image_id == Image.id)
        .where(Prediction.model_version == model_version)
        .order_by(Batch.id)
    )
    if batch_ids is not None:
        stmt = stmt.where(Batch.id.in_(list(batch_ids)))
    out: dict[int, tuple[str, str, list[float], list[bool]]] = {}
    for batch_id, site, folder, probability, flagged in session.execute(stmt):
        entry = out.setdefault(batch_id, (site, folder, [], []))
        entry[2].append(float(probability))
        entry[3].append(bool(flagged))
    return out


def finished_batches(session: Session, image_ids: Sequence[int]) -> list[int]:
    """The folder batches of these images that have no image left queued (every one scored or failed)."""
    touched = select(Image.batch_id).where(Image.id.in_(list(image_ids)), Image.batch_id.is_not(None))
    waiting = select(Image.batch_id).where(Image.state == State.queued, Image.batch_id.in_(touched))
    stmt = select(Batch.id).where(Batch.id.in_(touched), Batch.id.not_in(waiting)).order_by(Batch.id)
    return [int(batch_id) for batch_id in session.execute(stmt).scalars()]


def lock_batches(session: Session, batch_ids: Sequence[int]) -> None:
    """Hold these batch rows until the transaction ends (PostgreSQL: FOR UPDATE; SQLite has one writer),
    so that two workers finishing one batch at once decide one after the other."""
    stmt = select(Batch.id).where(Batch.id.in_(list(batch_ids))).order_by(Batch.id).with_for_update()
    session.execute(stmt).all()  # in id order: two lockers never wait on each other crosswise
