"""Screening metrics computed with numpy only, so a test can redo them by hand.

Label 1 is malignant. A case is flagged (predicted malignant) by `skinscreen.flagging`, the
rule `thresholds.choose_threshold` and the workers use. The
per-class report follows sklearn's `classification_report`: a ratio with a zero
denominator is 0.0, and `weighted avg` weighs each class by its support.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from skinscreen import flagging
from skinscreen.models.labelled import CLASS_NAMES as CLASS_NAMES

REPORT_ROWS = ("benign", "malignant", "macro avg", "weighted avg")
RELIABILITY_BINS = 10


def _as_arrays(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    return y, p


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is 0 (sklearn's zero_division=0)."""
    return float(numerator) / float(denominator) if denominator else 0.0


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the ROC curve: the chance a malignant case outscores a benign one (ties count half)."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    pos, neg = p[y], p[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    allp = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allp):  # average ranks over ties
        j = i
        while j + 1 < len(allp) and allp[j + 1] == allp[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def confusion_matrix(labels: np.ndarray, probs: np.ndarray, *, threshold: float) -> np.ndarray:
    """2x2 counts in sklearn's layout: rows true (benign, malignant), columns predicted."""
    y, p = _as_arrays(labels, probs)
    flagged = flagging.flags(p, threshold)
    return np.asarray(
        [
            [int((~y & ~flagged).sum()), int((~y & flagged).sum())],
            [int((y & ~flagged).sum()), int((y & flagged).sum())],
        ],
        dtype=np.int64,
    )


def confusion_counts(matrix: np.ndarray) -> dict[str, int]:
    """The four cells of a 2x2 confusion matrix by name."""
    (tn, fp), (fn, tp) = np.asarray(matrix).tolist()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def accuracy(labels: np.ndarray, probs: np.ndarray, *, threshold: float) -> float:
    """Share of cases whose flag matches the label (nan for no cases)."""
    c = confusion_counts(confusion_matrix(labels, probs, threshold=threshold))
    n = sum(c.values())
    return (c["tn"] + c["tp"]) / n if n else float("nan")


def sensitivity(labels: np.ndarray, probs: np.ndarray, *, threshold: float) -> float:
    """Malignant recall: flagged malignant / all malignant (nan without malignant cases)."""
    c = confusion_counts(confusion_matrix(labels, probs, threshold=threshold))
    return c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")


def specificity(labels: np.ndarray, probs: np.ndarray, *, threshold: float) -> float:
    """Benign recall: unflagged benign / all benign (nan without benign cases)."""
    c = confusion_counts(confusion_matrix(labels, probs, threshold=threshold))
    return c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else float("nan")


def classification_report(
    labels: np.ndarray, probs: np.ndarray, *, threshold: float
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class plus macro and weighted averages (Table 2 rows)."""
    matrix = confusion_matrix(labels, probs, threshold=threshold)
    report: dict[str, dict[str, float]] = {}
    for k, name in enumerate(CLASS_NAMES):
        true_k, predicted_k, hits = matrix[k].sum(), matrix[:, k].sum(), matrix[k, k]
        precision = _ratio(hits, predicted_k)
        recall = _ratio(hits, true_k)
        report[name] = {
            "precision": precision,
            "recall": recall,
            "f1-score": _ratio(2 * precision * recall, precision + recall),
            "support": int(true_k),
        }
    total = sum(report[name]["support"] for name in CLASS_NAMES)
    for row, weights in (
        ("macro avg", {name: 1.0 / len(CLASS_NAMES) for name in CLASS_NAMES}),
        ("weighted avg", {name: _ratio(report[name]["support"], total) for name in CLASS_NAMES}),
    ):
        report[row] = {
            key: sum(weights[name] * report[name][key] for name in CLASS_NAMES)
            for key in ("precision", "recall", "f1-score")
        }
        report[row]["support"] = total
    return report


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (nan for no cases)."""
    y, p = _as_arrays(labels, probs)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def roc_curve(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, highest first, from (0, 0) to (1, 1).

    thresholds[0] is +inf (nothing flagged); point k flags the cases with probability >= thresholds[k].
    A rate is 0 where its class is absent.
    """
    y, p = _as_arrays(labels, probs)
    thresholds = np.concatenate([[np.inf], np.unique(p)[::-1]])
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    tpr = np.asarray([_ratio(int((y & flagging.flags(p, t)).sum()), n_pos) for t in thresholds])
    fpr = np.asarray([_ratio(int((~y & flagging.flags(p, t)).sum()), n_neg) for t in thresholds])
    return fpr, tpr, thresholds


def reliability_bins(
    labels: np.ndarray, probs: np.ndarray, *, n_bins: int = RELIABILITY_BINS
) -> list[dict[str, float | int | None]]:
    """Equal-width probability bins on [0, 1]: mean predicted, observed malignant fraction, count.

    Bin k holds k/n <= p < (k+1)/n; the last one also holds p == 1. Empty bins report None.
    """
    y, p = _as_arrays(labels, probs)
    edges = np.arange(n_bins + 1) / n_bins
    # Rounding first keeps a probability written as an edge (0.7) out of the bin below it:
    # 0.7 * 10 is exact, but linspace's 7 * 0.1 is 0.7000000000000001.
    index = np.clip(np.floor(np.round(p * n_bins, 9)).astype(np.int64), 0, n_bins - 1)
    bins: list[dict[str, float | int | None]] = []
    for k in range(n_bins):
        members = index == k
        count = int(members.sum())
        bins.append(
            {
                "lower": float(edges[k]),
                "upper": float(edges[k + 1]),
                "mean_predicted": float(p[members].mean()) if count else None,
                "observed": float(y[members].mean()) if count else None,
                "count": count,
            }
        )
    return bins


def _finite_or_none(value: float) -> float | None:
    # JSON has no NaN: an undefined metric (e.g. AUC with one class) is written as null.
    return None if math.isnan(value) else float(value)


def metrics_at(labels: np.ndarray, probs: np.ndarray, *, threshold: float) -> dict[str, Any]:
    """Everything that depends on the threshold: accuracy, sensitivity, specificity, confusion, report."""
    matrix = confusion_matrix(labels, probs, threshold=threshold)
    return {
        "threshold": float(threshold),
        "accuracy": _finite_or_none(accuracy(labels, probs, threshold=threshold)),
        "sensitivity": _finite_or_none(sensitivity(labels, probs, threshold=threshold)),
        "specificity": _finite_or_none(specificity(labels, probs, threshold=threshold)),
        "confusion": confusion_counts(matrix),
        "per_class": classification_report(labels, probs, threshold=threshold),
    }


def screening_metrics(labels: np.ndarray, probs: np.ndarray, *, threshold: float) -> dict[str, Any]:
    """The JSON summary of one evaluation: counts, metrics at the model threshold and at 0.5, AUC, Brier."""
    y, p = _as_arrays(labels, probs)
    return {
        "n": len(y),
        "n_benign": int((~y).sum()),
        "n_malignant": int(y.sum()),
        "at_threshold": metrics_at(y, p, threshold=threshold),
        "at_0.5": metrics_at(y, p, threshold=0.5),
        "roc_auc": _finite_or_none(roc_auc(y, p)),
        "brier": _finite_or_none(brier_score(y, p)),
        "reliability": reliability_bins(y, p),
    }
