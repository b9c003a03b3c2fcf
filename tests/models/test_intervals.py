"""Bootstrap intervals: they bracket the point figure, and shrink as the sample grows."""

from __future__ import annotations

import numpy as np

from skinscreen.models.training.intervals import bootstrap_intervals, format_interval
from skinscreen.models.training.metrics import roc_auc


def _sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n, int), np.ones(n, int)]
    probs = np.r_[rng.beta(2, 5, n), rng.beta(5, 2, n)]
    return labels, probs


def test_intervals_bracket_the_point_figures_and_narrow_with_more_cases() -> None:
    small = bootstrap_intervals(*_sample(40, 1), threshold=0.5, resamples=400)
    large = bootstrap_intervals(*_sample(400, 1), threshold=0.5, resamples=400)
    labels, probs = _sample(40, 1)
    auc = roc_auc(labels, probs)
    sens = float((probs[labels == 1] >= 0.5).mean())
    assert small["roc_auc"][0] <= auc <= small["roc_auc"][1]
    assert small["sensitivity"][0] <= sens <= small["sensitivity"][1]
    for key in ("roc_auc", "sensitivity", "specificity", "accuracy"):
        assert large[key][1] - large[key][0] < small[key][1] - small[key][0]


def test_perfect_separation_has_no_spread_and_one_class_is_refused() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    result = bootstrap_intervals(labels, probs, threshold=0.5, resamples=50)
    assert result["roc_auc"] == [1.0, 1.0] and result["sensitivity"] == [1.0, 1.0]
    assert bootstrap_intervals(labels[:3], probs[:3], threshold=0.5)["computed"] is False
    assert format_interval(0.9512, [0.93, 0.97]) == "0.951 (0.930-0.970)"
