"""Site statistics by hand: Wilson intervals, thresholds, sample size, weighted estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skinscreen.models.training.thresholds import choose_threshold as training_threshold
from skinscreen.sites import stats


def hand_wilson(k: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_interval_of_18_of_20_matches_the_formula() -> None:
    got = stats.wilson(18, 20)
    low, high = hand_wilson(18, 20)

    assert got.value == pytest.approx(0.9)
    assert (got.low, got.high) == pytest.approx((low, high))
    assert got.low == pytest.approx(0.699, abs=1e-3)  # the textbook value


def test_equal_weights_give_the_plain_wilson_interval() -> None:
    hits = np.array([True] * 7 + [False] * 3)
    weighted = stats.weighted_proportion(hits, np.full(10, 4.0))

    assert weighted.n == pytest.approx(10)
    assert (weighted.value, weighted.low, weighted.high) == pytest.approx((0.7, *hand_wilson(7, 10)))


def test_unit_weights_choose_the_training_threshold() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(300) < 0.3
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    for target in (0.8, 0.9, 0.95):
        assert stats.choose_threshold(labels, probs, target=target) == training_threshold(
            labels, probs, min_sensitivity=target
        )


def test_weights_move_the_threshold_as_duplicated_cases_would() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    probs = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.3, 0.1, 0.05])
    weights = np.array([1, 1, 1, 3, 1, 1, 1, 1], dtype=float)
    repeated = np.repeat(np.arange(8), weights.astype(int))

    assert stats.choose_threshold(labels, probs, target=0.5, weights=weights) == stats.choose_threshold(
        labels[repeated], probs[repeated], target=0.5
    )


def test_three_malignant_images_cannot_support_sensitivity_090() -> None:
    problem = stats.sample_problem(3, 40, target=0.90)

    assert problem is not None
    assert "3 malignant images allow only the sensitivities 0, 1/3, 2/3, 1" in problem
    assert "needs at least 10 malignant" in problem
    assert "0.44-1.00" in problem  # Wilson interval of 3/3


@pytest.mark.parametrize(("target", "needed"), [(0.80, 10), (0.90, 10), (0.95, 20), (0.98, 50), (0.99, 100)])
def test_the_minimum_sample_lets_one_malignant_image_be_missed(target: float, needed: int) -> None:
    assert stats.sample_problem(needed, 10, target=target) is None
    assert stats.sample_problem(needed - 1, 10, target=target) is not None
    assert stats.sample_problem(needed, 9, target=target) is not None


def test_site_estimate_matches_a_hand_computation() -> None:
    # 10 flagged (5 reviewed: 4 malignant, 1 benign) and 90 unflagged, of which 10 audit cases were
    # reviewed (1 malignant, 9 benign) and one non-audit case was reviewed ad hoc (left out).
    flagged = np.array([True] * 10 + [False] * 90)
    audit = np.array([False] * 10 + [True] * 10 + [False] * 80)
    verdict = np.array(
        ["malignant"] * 4
        + ["benign"]
        + [None] * 5
        + ["malignant"]
        + ["benign"] * 9
        + ["malignant"]
        + [None] * 79,
        dtype=object,
    )
    est = stats.site_estimate(flagged, audit, verdict)

    assert (est.weight_flagged, est.weight_audit) == (2.0, 9.0)
    assert (est.tp, est.fp, est.fn, est.tn) == (8.0, 2.0, 9.0, 81.0)
    assert est.sensitivity.value == pytest.approx(8 / 17)
    assert est.specificity.value == pytest.approx(81 / 83)
    assert est.ppv.value == pytest.approx(4 / 5)
    # Kish: malignant weights 2, 2, 2, 2, 9 -> (17^2) / (4 * 4 + 81)
    assert est.sensitivity.n == pytest.approx(289 / 97)
    assert (est.sensitivity.low, est.sensitivity.high) == pytest.approx(
        hand_wilson(8 / 17 * 289 / 97, 289 / 97)
    )
    assert (est.ppv.low, est.ppv.high) == pytest.approx(hand_wilson(4, 5))


def test_without_a_reviewed_audit_case_sensitivity_is_not_estimated() -> None:
    flagged = np.array([True, True, False, False])
    est = stats.site_estimate(
        flagged, np.zeros(4, bool), np.array(["malignant", "benign", None, None], object)
    )

    assert est.sensitivity.value is None and est.specificity.value is None
    assert est.ppv.value == 0.5


def test_a_seeded_synthetic_site_is_estimated_without_bias() -> None:
    rng = np.random.default_rng(12)
    n = 20_000
    truth = rng.random(n) < 0.1
    probs = np.clip(rng.normal(0.3 + 0.4 * truth, 0.15), 0, 1)
    flagged = probs >= 0.5
    audit = ~flagged & (rng.random(n) < 0.05)
    reviewed = (flagged & (rng.random(n) < 0.8)) | audit
    verdict = np.where(reviewed, np.where(truth, "malignant", "benign"), None).astype(object)
    est = stats.site_estimate(flagged, audit, verdict)

    n_f, n_a = (reviewed & flagged).sum(), (audit & reviewed).sum()
    w_f, w_a = flagged.sum() / n_f, (~flagged).sum() / n_a
    tp, fn = w_f * (reviewed & flagged & truth).sum(), w_a * (audit & truth).sum()
    tn, fp = w_a * (audit & ~truth).sum(), w_f * (reviewed & flagged & ~truth).sum()
    assert est.sensitivity.value == pytest.approx(tp / (tp + fn))
    assert est.specificity.value == pytest.approx(tn / (tn + fp))
    # The true values lie inside the intervals.
    true_sens = (flagged & truth).sum() / truth.sum()
    true_spec = (~flagged & ~truth).sum() / (~truth).sum()
    assert est.sensitivity.low < true_sens < est.sensitivity.high
    assert est.specificity.low < true_spec < est.specificity.high
