"""Choosing the operating threshold on validation scores."""

from __future__ import annotations

import numpy as np

from skinscreen import flagging

TARGET_SENSITIVITY = 0.90


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, *, min_sensitivity: float = TARGET_SENSITIVITY
) -> float:
    """The threshold with the highest specificity whose malignant sensitivity is >= `min_sensitivity`.

    A case is flagged by `skinscreen.flagging` (probability at or above the threshold). Among equally specific
    thresholds the highest is taken.
    """
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, dtype=np.float64)
    if labels.all() or not labels.any():
        raise ValueError("choosing a threshold needs both benign and malignant cases")
    best: tuple[float, float] | None = None
    for t in np.unique(probs)[::-1]:
        flagged = flagging.flags(probs, t)
        sensitivity = flagged[labels].mean()
        if sensitivity < min_sensitivity:
            continue
        specificity = (~flagged[~labels]).mean()
        if best is None or specificity > best[0]:
            best = (float(specificity), float(t))
    assert best is not None  # the lowest score flags everything: sensitivity 1
    return best[1]
