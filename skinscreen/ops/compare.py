"""`skinscreen models compare OLD NEW`: how two versions' flags differ on the same images.

Both versions' stored probabilities are compared on the images both have scored: agreement, the cases
whose flag would change on promotion, and, where reviewers left a malignant or benign verdict (the
latest one counts; "uncertain" does not), each version's sensitivity and specificity.

Flags are re-decided from the stored probabilities at a threshold named for each side: by default each
version's own (its card's), so that neither side carries a site's calibrated threshold the other
lacks; with `site_thresholds`, each image's site threshold for that version where one is stored (the
report lists those sites), else the version's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from skinscreen.db import sites
from skinscreen.db.tables import Prediction, Review, Verdict
from skinscreen.flagging import is_flagged


@dataclass
class Confusion:
    """Flags against reviewers' verdicts."""

    tp: int = 0
    fn: int = 0
    tn: int = 0
    fp: int = 0

    def add(self, *, flagged: bool, malignant: bool) -> None:
        if malignant:
            self.tp, self.fn = self.tp + flagged, self.fn + (not flagged)
        else:
            self.fp, self.tn = self.fp + flagged, self.tn + (not flagged)

    def as_dict(self) -> dict[str, Any]:
        pos, neg = self.tp + self.fn, self.tn + self.fp
        return {
            "tp": self.tp,
            "fn": self.fn,
            "tn": self.tn,
            "fp": self.fp,
            "sensitivity": self.tp / pos if pos else None,
            "specificity": self.tn / neg if neg else None,
        }


@dataclass
class Comparison:
    """The report of `compare_versions`."""

    old: str
    new: str
    both: int = 0
    only_old: int = 0
    only_new: int = 0
    agree: int = 0
    flagged_old: int = 0
    flagged_new: int = 0
    newly_flagged: list[int] = field(default_factory=list)
    no_longer_flagged: list[int] = field(default_factory=list)
    with_verdict: int = 0
    confusion_old: Confusion = field(default_factory=Confusion)
    confusion_new: Confusion = field(default_factory=Confusion)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "thresholds": self.thresholds,
            "images_both": self.both,
            "images_only_old": self.only_old,
            "images_only_new": self.only_new,
            "agree": self.agree,
            "agreement": self.agree / self.both if self.both else None,
            "flagged_old": self.flagged_old,
            "flagged_new": self.flagged_new,
            "newly_flagged": len(self.newly_flagged),
            "no_longer_flagged": len(self.no_longer_flagged),
            "newly_flagged_ids": self.newly_flagged,
            "no_longer_flagged_ids": self.no_longer_flagged,
            "with_verdict": self.with_verdict,
            "against_verdicts": {
                self.old: self.confusion_old.as_dict(),
                self.new: self.confusion_new.as_dict(),
            },
        }


def latest_verdicts(session: Session) -> dict[int, Verdict]:
    """Per image, its most recent verdict."""
    newest = select(func.max(Review.id)).group_by(Review.image_id)
    rows = session.execute(select(Review.image_id, Review.verdict).where(Review.id.in_(newest)))
    return {int(image_id): Verdict(verdict) for image_id, verdict in rows}


def compare_versions(
    session: Session, old: str, new: str, *, own: Mapping[str, float], site_thresholds: bool = False
) -> Comparison:
    """Compare versions `old` and `new` image by image at the thresholds `own` gives each version
    (its own threshold), or with `site_thresholds` at each image's site threshold for that version
    where one is stored."""
    a, b = aliased(Prediction), aliased(Prediction)
    pairs = session.execute(
        select(a.image_id, a.probability, b.probability)
        .join(b, (b.image_id == a.image_id) & (b.model_version == new))
        .where(a.model_version == old)
        .order_by(a.image_id)
    ).all()
    count = select(func.count(func.distinct(Prediction.image_id)))
    n_old = session.execute(count.where(Prediction.model_version == old)).scalar_one()
    n_new = session.execute(count.where(Prediction.model_version == new)).scalar_one()
    report = Comparison(
        old=old, new=new, both=len(pairs), only_old=n_old - len(pairs), only_new=n_new - len(pairs)
    )
    ids = [int(i) for i, _, _ in pairs]
    limits: dict[str, dict[int, float]] = {}
    for version in (old, new):
        rule: dict[str, Any] = {"rule": "the version's own threshold", "threshold": own[version]}
        if site_thresholds:
            limits[version] = sites.thresholds_in_force(
                session, ids, model_version=version, default=own[version]
            )
            calibrated = sites.site_thresholds(session, model_version=version)
            rule["rule"] = "each site's calibrated threshold where it has one, else the version's own"
            rule["sites"] = {site: float(row.threshold) for site, row in sorted(calibrated.items())}
        else:
            limits[version] = dict.fromkeys(ids, own[version])
        report.thresholds[version] = rule
    verdicts = latest_verdicts(session)
    for image_id, p_old, p_new in pairs:
        flag_old = is_flagged(p_old, limits[old][image_id])
        flag_new = is_flagged(p_new, limits[new][image_id])
        report.agree += flag_old == flag_new
        report.flagged_old += flag_old
        report.flagged_new += flag_new
        if flag_new and not flag_old:
            report.newly_flagged.append(image_id)
        elif flag_old and not flag_new:
            report.no_longer_flagged.append(image_id)
        verdict = verdicts.get(image_id)
        if verdict in (Verdict.malignant, Verdict.benign):
            report.with_verdict += 1
            malignant = verdict == Verdict.malignant
            report.confusion_old.add(flagged=flag_old, malignant=malignant)
            report.confusion_new.add(flagged=flag_new, malignant=malignant)
    return report
