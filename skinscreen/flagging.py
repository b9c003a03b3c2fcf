"""The flag rule, in one place: a case is flagged when its probability reaches the threshold in force.

Which threshold is in force (the model's own, or a site's calibrated one) is decided by the
caller; how a probability and a threshold make a flag is decided here only.
"""

from __future__ import annotations

import numpy as np


def is_flagged(probability: float, threshold: float) -> bool:
    """True when `probability` is at or above `threshold`."""
    return bool(probability >= threshold)


def flags(probabilities: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """`is_flagged` over an array of probabilities; `threshold` is one for all, or one per probability."""
    return np.asarray(probabilities) >= np.asarray(threshold)
