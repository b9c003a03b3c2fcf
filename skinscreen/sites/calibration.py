"""Calibrate a site: its own operating point from a labelled local sample or from its reviewed cases.

Every calibration, clear and the re-flag that follows is written to the audit trail with its evidence.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from skinscreen.db import accounts, sites
from skinscreen.db.tables import utcnow
from skinscreen.errors import CalibrationError
from skinscreen.flagging import flags, is_flagged
from skinscreen.models.classifier import Scorer
from skinscreen.models.labelled import LabelledFiles, list_labelled
from skinscreen.sites import stats
from skinscreen.sites.drift import Reference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleCase:
    """One labelled case a threshold was chosen on: a sample file's name under the sample folder (or
    `case <image id>` for a reviewed case; never a patient identifier), its label and score."""

    name: str
    malignant: bool
    probability: float
    weight: float = 1.0


@dataclass(frozen=True)
class Calibration:
    """A chosen operating point and the evidence behind it, not yet stored."""

    site: str
    model_version: str
    threshold: float
    target: float
    source: str  # "sample" or "reviews"
    evidence: dict[str, Any]
    cases: tuple[SampleCase, ...] = ()


def choose(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    target: float,
    model_threshold: float,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The threshold for `target` and its evidence; refuses (CalibrationError) a sample too small."""
    y = np.asarray(labels).astype(bool)
    problem = stats.sample_problem(int(y.sum()), int((~y).sum()), target=target)
    if problem is not None:
        raise CalibrationError(problem)
    threshold = stats.choose_threshold(y, probs, target=target, weights=weights)
    return {
        "target_sensitivity": target,
        "threshold": threshold,
        "at_threshold": stats.operating_point(y, probs, threshold=threshold, weights=weights),
        "at_model_threshold": stats.operating_point(y, probs, threshold=model_threshold, weights=weights),
        "interval": "Wilson 95 %" + (" at Kish's effective sample size" if weights is not None else ""),
    }


def labelled_sample(folder: Path, *, target: float) -> LabelledFiles:
    """List `folder/benign` and `folder/malignant`, refusing at once a sample too small for `target`."""
    files = list_labelled(folder)
    n_malignant = int(files.labels.sum())
    problem = stats.sample_problem(n_malignant, len(files.labels) - n_malignant, target=target)
    if problem is not None:
        raise CalibrationError(problem)
    return files


def from_folder(
    folder: Path, *, site: str, target: float, classifier: Scorer, batch_size: int = 32
) -> Calibration:
    """Score `folder/benign` and `folder/malignant` with the classifier and choose the site's threshold.

    Unreadable files are left out (and counted); the size check is made again on what was scored.
    """
    from skinscreen.models.screening import score_files

    files = labelled_sample(folder, target=target)
    results = score_files(files.paths, classifier=classifier, batch_size=batch_size)
    keep = np.asarray([r.probability is not None for r in results], dtype=bool)
    probs = np.asarray([r.probability for r in results if r.probability is not None], dtype=np.float64)
    labels = files.labels[keep]
    names = [p.relative_to(folder).as_posix() for p, k in zip(files.paths, keep, strict=True) if k]
    cases = tuple(SampleCase(n, bool(y), float(p)) for n, y, p in zip(names, labels, probs, strict=True))
    evidence = choose(labels, probs, target=target, model_threshold=classifier.threshold)
    evidence["sample"] = {
        "folder": str(folder),
        "images": len(files.paths),
        "unreadable": int((~keep).sum()),
    }
    source = f"calibration sample of site {site}"
    evidence["reference"] = Reference.from_scores(
        probs, source=source, threshold=evidence["threshold"]
    ).as_dict()
    return Calibration(site, classifier.version, evidence["threshold"], target, "sample", evidence, cases)


def from_reviews(
    session: Session, *, site: str, model_version: str, target: float, model_threshold: float
) -> Calibration:
    """Choose the threshold from the site's verdicts: reviewed flagged cases and reviewed audit cases,
    each weighted by its stratum's size over its reviewed count, so the unflagged cases are not missing."""
    cases = sites.site_cases(session, site=site, model_version=model_version)
    if not cases:
        raise CalibrationError(f"site {site!r} has no case scored by model {model_version}")
    flagged = np.asarray([c.flagged for c in cases], dtype=bool)
    audit = np.asarray([c.audit for c in cases], dtype=bool)
    verdict = np.asarray([c.verdict for c in cases], dtype=object)
    used, weights, w_f, w_a = stats.strata_weights(flagged, audit, verdict)
    if w_a is None:
        raise CalibrationError(
            f"site {site!r} has no reviewed audit case: missed cancers among its {int((~flagged).sum())} "
            "unflagged cases cannot be estimated, so a threshold from reviews would be biased. Review the "
            "audit sample (SKINSCREEN_AUDIT_FRACTION) first, or calibrate on a labelled sample folder."
        )
    if w_f is None:
        raise CalibrationError(f"site {site!r} has no reviewed flagged case")
    probs = np.asarray([c.probability for c in cases], dtype=np.float64)[used]
    labels = verdict[used] == "malignant"
    evidence = choose(labels, probs, target=target, model_threshold=model_threshold, weights=weights[used])
    evidence["reviews"] = {
        "cases": len(cases),
        "flagged": int(flagged.sum()),
        "unflagged": int((~flagged).sum()),
        "reviewed_flagged": int((used & flagged).sum()),
        "reviewed_audit": int((used & ~flagged).sum()),
        "weight_flagged": w_f,
        "weight_audit": w_a,
    }
    ids = np.asarray([c.image_id for c in cases])[used]
    sample = tuple(
        SampleCase(f"case {i}", bool(y), float(p), float(w))
        for i, y, p, w in zip(ids, labels, probs, weights[used], strict=True)
    )
    return Calibration(site, model_version, evidence["threshold"], target, "reviews", evidence, sample)


def cost(session: Session, calibration: Calibration, *, model_threshold: float) -> dict[str, Any]:
    """What the new threshold would cost against the one in force, before it takes effect.

    On the calibration sample: every malignant case it would leave unflagged (by name, and which of
    them the threshold in force flags), the sensitivity with its 95 % interval at both thresholds and
    the flag rates; on the site's scored cases, the flag rate now and after the re-decision.
    `refuse` says why it should not take effect without `--accept-lower-sensitivity`: a sensitivity
    on the sample below the target, or below the one of the threshold in force (cancers unflagged).
    """
    c = calibration
    in_force = sites.threshold_in_force(
        session, site=c.site, model_version=c.model_version, default=model_threshold
    )
    y = np.asarray([k.malignant for k in c.cases], dtype=bool)
    p = np.asarray([k.probability for k in c.cases], dtype=np.float64)
    w = np.asarray([k.weight for k in c.cases], dtype=np.float64)
    names = [k.name for k in c.cases]
    old, new = flags(p, in_force), flags(p, c.threshold)
    now, then = (stats.operating_point(y, p, threshold=t, weights=w) for t in (in_force, c.threshold))
    sensitivity, sensitivity_before = then["sensitivity"], now["sensitivity"]
    lost = [n for n, m, o, f in zip(names, y, old, new, strict=True) if m and o and not f]
    refuse = []
    if sensitivity["value"] is not None and sensitivity["value"] < c.target - 1e-9:
        refuse.append(
            f"its sensitivity on the sample, {sensitivity['value']:.3f}, is below the target {c.target:.2f}"
        )
    if lost:
        refuse.append(
            f"it would unflag {len(lost)} malignant case(s) of the sample that the threshold in force "
            f"({in_force:.4f}) flags, lowering the sensitivity from {sensitivity_before['value']:.3f} to "
            f"{sensitivity['value']:.3f}"
        )
    site_cases = sites.site_cases(session, site=c.site, model_version=c.model_version)
    redecided = [
        k.flagged if k.verdict is not None else is_flagged(k.probability, c.threshold) for k in site_cases
    ]
    return {
        "threshold_in_force": in_force,
        "threshold": c.threshold,
        "sample": {
            "malignant": int(y.sum()),
            "benign": int((~y).sum()),
            "malignant_left_unflagged": [n for n, m, f in zip(names, y, new, strict=True) if m and not f],
            "malignant_newly_unflagged": lost,
            "malignant_newly_flagged": [
                n for n, m, o, f in zip(names, y, old, new, strict=True) if m and f and not o
            ],
            "sensitivity": sensitivity,
            "sensitivity_in_force": sensitivity_before,
            "flag_rate": float(new.mean()) if len(new) else None,
            "flag_rate_in_force": float(old.mean()) if len(old) else None,
        },
        "site": {
            "cases": len(site_cases),
            "flag_rate": float(np.mean(redecided)) if site_cases else None,
            "flag_rate_in_force": float(np.mean([k.flagged for k in site_cases])) if site_cases else None,
        },
        "refuse": "; ".join(refuse) or None,
    }


def _record(session: Session, *, account_id: int | None, action: str, detail: dict[str, Any]) -> None:
    # Imported here: the review package (routes) imports the sites package.
    from skinscreen.db.audit import Action, record

    record(session, account_id=account_id, action=Action(action), detail=json.dumps(detail))


def _account_id(session: Session, name: str) -> int | None:
    account = accounts.account_named(session, name)
    return account.id if account is not None else None


def apply(
    session: Session, calibration: Calibration, *, ran_by: str, audit_fraction: float
) -> dict[str, int]:
    """Store the site's threshold, audit it, and re-decide the site's unreviewed cases under it."""
    c = calibration
    evidence = {**c.evidence, "ran_by": ran_by, "ran_at": utcnow().isoformat()}
    previous = sites.set_threshold(
        session,
        site=c.site,
        model_version=c.model_version,
        threshold=c.threshold,
        target_sensitivity=c.target,
        source=c.source,
        evidence=evidence,
        created_by=ran_by,
    )
    at = c.evidence["at_threshold"]
    summary = {
        "site": c.site,
        "model_version": c.model_version,
        "previous": previous,
        "threshold": c.threshold,
        "target_sensitivity": c.target,
        "source": c.source,
        "ran_by": ran_by,
        "n_malignant": at["n_malignant"],
        "n_benign": at["n_benign"],
        "sensitivity": at["sensitivity"],
        "specificity": at["specificity"],
    }
    account = _account_id(session, ran_by)
    _record(session, account_id=account, action="site_calibrated", detail=summary)
    return _reflag(session, c.site, c.model_version, c.threshold, audit_fraction, account)


def clear(
    session: Session,
    *,
    site: str,
    model_version: str,
    model_threshold: float,
    ran_by: str,
    audit_fraction: float,
) -> dict[str, int]:
    """Return the site to the model's threshold (audited) and re-decide its unreviewed cases."""
    previous = sites.clear_threshold(session, site=site, model_version=model_version)
    if previous is None:
        raise CalibrationError(f"site {site!r} has no threshold of its own for model {model_version}")
    account = _account_id(session, ran_by)
    detail = {
        "site": site,
        "model_version": model_version,
        "previous": previous,
        "threshold": model_threshold,
    }
    _record(session, account_id=account, action="site_cleared", detail={**detail, "ran_by": ran_by})
    return _reflag(session, site, model_version, model_threshold, audit_fraction, account)


def _reflag(
    session: Session, site: str, model_version: str, threshold: float, fraction: float, account: int | None
) -> dict[str, int]:
    counts = sites.redecide(
        session, site=site, model_version=model_version, threshold=threshold, audit_fraction=fraction
    )
    detail = {"site": site, "model_version": model_version, "threshold": threshold, **counts}
    _record(session, account_id=account, action="site_reflagged", detail=detail)
    return counts
