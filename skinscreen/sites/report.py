"""What an admin reads about sites: operating points, estimated performance, and drift per batch.

Everything here is judged against the model in force (the promoted version, else SKINSCREEN_MODEL).
Reading never writes: drift warnings are recorded by whoever scores a batch (`record_drift`), once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from skinscreen.config import Settings
from skinscreen.db import audit as audit_trail
from skinscreen.db import sites
from skinscreen.db.promotions import promoted_version
from skinscreen.errors import ModelError
from skinscreen.models.registry import ModelCard, model_in_force, read_card, resolve_model_dir
from skinscreen.sites.drift import MIN_BATCH, Reference, check_batch
from skinscreen.sites.stats import site_estimate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """The model whose flags are judged: its version, own threshold and reference distribution."""

    version: str
    threshold: float
    reference: Reference | None


def model_info(name_or_path: str | Path) -> ModelInfo:
    """Read a model's card (no network is loaded): version, threshold and `reference`, if it has one."""
    return card_info(read_card(resolve_model_dir(name_or_path)))


def card_info(card: ModelCard, *, version: str | None = None) -> ModelInfo:
    """A card's version (or the version its scores are stored under), threshold and reference."""
    reference = None
    if "reference" in card.data:
        try:
            reference = Reference.from_dict(card.data["reference"])
        except (KeyError, ValueError, TypeError):
            logger.warning("model %s has a malformed reference histogram; drift is not checked", card.version)
    return ModelInfo(version or card.version, card.threshold, reference)


def in_force_info(session: Session, *, settings: Settings) -> ModelInfo:
    """The model in force: the promoted version's card, or SKINSCREEN_MODEL's before any promotion."""
    return model_info(model_in_force(promoted_version(session), settings=settings))


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


def record_drift(session: Session, image_ids: Sequence[int], *, model: ModelInfo) -> list[dict[str, Any]]:
    """Check each folder batch these just-scored images finished (none of its images left queued) and
    record its drift warning once: logged, and kept in the audit trail, which is how 'once' is known.

    Called by whoever scores (`skinscreen.worker.batches.score_ids`), in the caller's transaction; the
    batch rows are locked first, so two workers finishing one batch record one warning. Safe to repeat.
    """
    from skinscreen.db.audit import Action, record

    finished = sites.finished_batches(session, image_ids)
    if not finished:
        return []
    sites.lock_batches(session, finished)
    drift = [entry for entry in batch_drift(session, model=model, batch_ids=finished) if entry.get("warning")]
    seen = _warned_batches(session) if drift else set()
    recorded = []
    for entry in drift:
        if entry["batch"] in seen:
            continue
        logger.warning("drift in batch %d of site %s: %s", entry["batch"], entry["site"], entry["warning"])
        detail = {k: entry[k] for k in ("batch", "site", "flagged_rate", "expected_range", "psi", "warning")}
        record(session, account_id=None, action=Action.drift_warning, detail=json.dumps(detail))
        recorded.append(entry)
    return recorded


def _warned_batches(session: Session) -> set[int]:
    from skinscreen.db.audit import Action

    seen = set()
    events, _ = audit_trail.list_events(session, action=Action.drift_warning.value, limit=100_000)
    for event in events:
        try:
            seen.add(int(json.loads(event["detail"] or "{}").get("batch")))
        except (ValueError, TypeError):
            continue
    return seen


def drift_report(session: Session, *, settings: Settings) -> dict[str, Any]:
    """`{"drift": [...]}` for `skinscreen status`, against the model in force; a note when not checked.
    Only reads: the warnings were recorded when the batches were scored."""
    try:
        info = in_force_info(session, settings=settings)
    except ModelError as exc:
        return {"drift": [], "drift_note": f"model unavailable: {exc}"}
    out: dict[str, Any] = {"drift": batch_drift(session, model=info)}
    if info.reference is None:
        out["drift_note"] = (
            f"model {info.version} has no reference distribution (see `skinscreen model-reference`)"
        )
    return out
