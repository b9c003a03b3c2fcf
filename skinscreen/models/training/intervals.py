"""95 % bootstrap intervals for the screening figures of an evaluation.

Test sets here are small (660 images; PH2 has 40 melanomas), so a point figure alone overstates
what is known. The bootstrap resamples benign and malignant cases separately (stratified), so
every resample keeps the set's class counts and sensitivity and specificity stay defined, and
reports percentile intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skinscreen import flagging
from skinscreen.models.training.metrics import roc_auc

RESAMPLES = 2000
LEVEL = 0.95


def bootstrap_intervals(
    labels: np.ndarray, probs: np.ndarray, *, threshold: float, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Percentile intervals of ROC AUC, and of sensitivity, specificity and accuracy at `threshold`."""
    y = np.asarray(labels).astype(bool).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    pos, neg = p[y], p[~y]
    if len(pos) == 0 or len(neg) == 0:
        return {"computed": False, "reason": "both classes are needed"}
    rng = np.random.default_rng(seed)
    figures: dict[str, list[float]] = {"roc_auc": [], "sensitivity": [], "specificity": [], "accuracy": []}
    for _ in range(resamples):
        ps = pos[rng.integers(0, len(pos), len(pos))]
        ns = neg[rng.integers(0, len(neg), len(neg))]
        hits = float(flagging.flags(ps, threshold).sum())
        rejections = float((~flagging.flags(ns, threshold)).sum())
        figures["roc_auc"].append(
            roc_auc(np.r_[np.ones(len(ps), bool), np.zeros(len(ns), bool)], np.r_[ps, ns])
        )
        figures["sensitivity"].append(hits / len(ps))
        figures["specificity"].append(rejections / len(ns))
        figures["accuracy"].append((hits + rejections) / (len(ps) + len(ns)))
    tail = (1.0 - LEVEL) / 2 * 100
    return {
        "computed": True,
        "method": "stratified percentile bootstrap",
        "level": LEVEL,
        "resamples": resamples,
        "seed": seed,
        **{
            name: [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
            for name, values in figures.items()
        },
    }


def format_interval(value: float | None, interval: list[float] | None, digits: int = 3) -> str:
    """`0.951 (0.935-0.966)`, or the bare value when there is no interval."""
    if value is None:
        return "n/a"
    if not interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({interval[0]:.{digits}f}-{interval[1]:.{digits}f})"
