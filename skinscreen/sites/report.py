"""What an admin reads about sites: operating points, estimated performance, and drift per batch."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from skinscreen.db import audit as audit_trail
from skinscreen.db import sites
from skinscreen.errors import ModelError
from skinscreen.models.classifier import read_card, resolve_model_dir
from skinscreen.sites.drift import MIN_BATCH, Reference, check_batch
from skinscreen.sites.stats import site_estimate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """The model whose flags are judged: its version, own threshold and reference distribution."""

    version: str
    threshold: float
    reference: Reference | None


def model_info(name_or_path: str) -> ModelInfo:
    """Read a model's card (no network is loaded): version, threshold and `reference`, if it has one."""
    card = read_card(resolve_model_dir(name_or_path))
    reference = None
    if "reference" in card.data:
        try:
            reference = Reference.from_dict(card.data["reference"])
        except (KeyError, ValueError, TypeError):
            logger.warning("model %s has a malformed reference histogram; drift is not checked", card.version)
    return ModelInfo(card.version, card.threshold, reference)


def site_rows(session: Session, *, model: ModelInfo) -> list[dict[str, Any]]:
    """Per site: counts, flag rate, the threshold in force with its evidence, and performance estimates."""
    counts = sites.site_counts(session, model_version=model.version)
    thresholds = sites.site_thresholds(session, model_version=model.version)
    rows = []
    for site in sites.known_sites(session):
        c = counts.get(
            site, {"images": 0, "scored": 0, "failed": 0, "predicted": 0, "flagged": 0, "audit": 0}
        )
        calibrated = thresholds.get(site)
        cases = sites.site_cases(session, site=site, model_version=model.version)
        estimate = site_estimate(
            np.asarray([x.flagged for x in cases], dtype=bool),
            np.asarray([x.audit for x in cases], dtype=bool),
            np.asarray([x.verdict for x in cases], dtype=object),
        )
        evidence = json.loads(calibrated.evidence) if calibrated is not None else None
        if evidence is not None:
            evidence.pop("reference", None)  # a histogram: for drift, not for reading
        rows.append(
            {
                "site": site,
                "model_version": model.version,
                **c,
                "flag_rate": c["flagged"] / c["predicted"] if c["predicted"] else None,
                "threshold": calibrated.threshold if calibrated is not None else model.threshold,
                "threshold_source": calibrated.source if calibrated is not None else "model",
                "target_sensitivity": calibrated.target_sensitivity if calibrated is not None else None,
                "calibrated_by": calibrated.created_by if calibrated is not None else None,
                "calibrated_at": calibrated.created_at if calibrated is not None else None,
                "evidence": evidence,
                "estimate": estimate.as_dict(),
            }
        )
    return rows


def site_scores(session: Session, *, site: str, model: ModelInfo) -> dict[str, list[float]]:
    """A site's scores by latest verdict (malignant, benign, uncertain, not reviewed), for the plot.

    Audit cases still waiting for their verdict are left out: they are blinded, and a plot of a few
    cases would give their scores away.
    """
    out: dict[str, list[float]] = {"malignant": [], "benign": [], "uncertain": [], "not reviewed": []}
    for case in sites.site_cases(session, site=site, model_version=model.version):
        if case.audit and case.verdict is None:
            continue
        out[case.verdict or "not reviewed"].append(case.probability)
    return out


def batch_drift(
    session: Session, *, model: ModelInfo, batch_ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """Drift checks of each batch scored by the model, against the site's calibration sample or the card's
    reference; batches too small or without a reference get `warning: None` and a `note`."""
    thresholds = sites.site_thresholds(session, model_version=model.version)
    out = []
    scored = sites.batch_scores(session, model_version=model.version, batch_ids=batch_ids)
    for batch_id, (site, folder, probs, flagged) in scored.items():
        entry: dict[str, Any] = {
            "site": site,
            "batch": batch_id,
            "folder": folder,
            "n": len(probs),
            "flagged": sum(flagged),
            "flagged_rate": round(sum(flagged) / len(probs), 4) if probs else None,
            "expected_range": None,
            "psi": None,
            "psi_limit": None,
        }
        calibrated = thresholds.get(site)
        reference, threshold = model.reference, model.threshold
        if calibrated is not None:
            threshold = calibrated.threshold
            stored = json.loads(calibrated.evidence).get("reference")
            if stored is not None:
                reference = Reference.from_dict(stored)
        if reference is None:
            entry.update(warning=None, note="no reference distribution for this model or site")
        elif len(probs) < MIN_BATCH:
            entry.update(warning=None, note=f"fewer than {MIN_BATCH} scored cases: not judged")
        else:
            entry.update(
                check_batch(
                    np.asarray(probs), np.asarray(flagged), reference=reference, threshold=threshold
                ).as_dict()
            )
        out.append(entry)
    return out


def note_warnings(session: Session, drift: list[dict[str, Any]]) -> None:
    """Log each batch's drift warning once, and keep it in the audit trail (which is how 'once' is known)."""
    from skinscreen.db.audit import Action, record

    seen = set()
    events, _ = audit_trail.list_events(session, action=Action.drift_warning.value, limit=100_000)
    for event in events:
        try:
            seen.add(int(json.loads(event["detail"] or "{}").get("batch")))
        except (ValueError, TypeError):
            continue
    for entry in drift:
        if entry.get("warning") and entry["batch"] not in seen:
            logger.warning(
                "drift in batch %d of site %s: %s", entry["batch"], entry["site"], entry["warning"]
            )
            detail = {
                k: entry[k] for k in ("batch", "site", "flagged_rate", "expected_range", "psi", "warning")
            }
            record(session, account_id=None, action=Action.drift_warning, detail=json.dumps(detail))


def drift_report(session: Session, *, model: str) -> dict[str, Any]:
    """`{"drift": [...]}` for `skinscreen status`, each new warning logged once; a note when not checked."""
    try:
        info = model_info(model)
    except ModelError as exc:
        return {"drift": [], "drift_note": f"model unavailable: {exc}"}
    drift = batch_drift(session, model=info)
    note_warnings(session, drift)
    out: dict[str, Any] = {"drift": drift}
    if info.reference is None:
        out["drift_note"] = (
            f"model {info.version} has no reference distribution (see `skinscreen model-reference`)"
        )
    return out
