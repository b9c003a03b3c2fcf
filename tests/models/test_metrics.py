from __future__ import annotations

import json

import numpy as np
import pytest

from skinscreen.models.training import metrics

# Five cases, threshold 0.5:
#   label      0    0    1    1    1
#   prob      0.1  0.6  0.4  0.7  0.9
#   flagged    no  yes   no  yes  yes
#   outcome    TN   FP   FN   TP   TP
LABELS = np.array([0, 0, 1, 1, 1])
PROBS = np.array([0.1, 0.6, 0.4, 0.7, 0.9])


def test_confusion_matrix_counts_flags_against_labels() -> None:
    matrix = metrics.confusion_matrix(LABELS, PROBS, threshold=0.5)

    assert matrix.tolist() == [[1, 1], [1, 2]]  # rows true benign/malignant, columns predicted
    assert metrics.confusion_counts(matrix) == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}


def test_accuracy_sensitivity_and_specificity_match_hand_arithmetic() -> None:
    assert metrics.accuracy(LABELS, PROBS, threshold=0.5) == pytest.approx((1 + 2) / 5)
    assert metrics.sensitivity(LABELS, PROBS, threshold=0.5) == pytest.approx(2 / (2 + 1))  # tp / (tp + fn)
    assert metrics.specificity(LABELS, PROBS, threshold=0.5) == pytest.approx(1 / (1 + 1))  # tn / (tn + fp)


def test_classification_report_matches_hand_arithmetic() -> None:
    report = metrics.classification_report(LABELS, PROBS, threshold=0.5)

    # benign: precision tn/(tn+fn) = 1/2, recall tn/(tn+fp) = 1/2, f1 = 2*.5*.5/(.5+.5) = 1/2
    assert report["benign"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2})
    # malignant: precision tp/(tp+fp) = 2/3, recall tp/(tp+fn) = 2/3, f1 = 2/3
    assert report["malignant"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1-score": 2 / 3, "support": 3}
    )
    # macro: plain mean of the two rows, (1/2 + 2/3) / 2 = 7/12
    assert report["macro avg"] == pytest.approx(
        {"precision": 7 / 12, "recall": 7 / 12, "f1-score": 7 / 12, "support": 5}
    )
    # weighted by support: (2 * 1/2 + 3 * 2/3) / 5 = 3/5
    assert report["weighted avg"] == pytest.approx(
        {"precision": 0.6, "recall": 0.6, "f1-score": 0.6, "support": 5}
    )
    assert list(report) == ["benign", "malignant", "macro avg", "weighted avg"]


def test_precision_of_a_class_never_predicted_is_zero_like_sklearn() -> None:
    report = metrics.classification_report(np.array([0, 1]), np.array([0.1, 0.2]), threshold=0.5)

    assert report["malignant"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}


def test_roc_auc_counts_the_pairs_a_malignant_case_wins() -> None:
    # pairs (malignant, benign): 0.4>0.1 yes, 0.4>0.6 no, 0.7 and 0.9 beat both: 5 of 6
    assert metrics.roc_auc(LABELS, PROBS) == pytest.approx(5 / 6)


def test_roc_auc_counts_a_tie_as_half_a_pair() -> None:
    labels = np.array([0, 1, 0, 1])
    probs = np.array([0.5, 0.5, 0.2, 0.8])
    # malignant 0.5 vs benign 0.5: tie, 0.5; vs 0.2: 1; malignant 0.8 beats both: 2 -> 3.5 / 4
    assert metrics.roc_auc(labels, probs) == pytest.approx(3.5 / 4)


def test_roc_curve_steps_through_every_distinct_score() -> None:
    fpr, tpr, thresholds = metrics.roc_curve(LABELS, PROBS)

    assert thresholds.tolist() == [np.inf, 0.9, 0.7, 0.6, 0.4, 0.1]
    assert tpr == pytest.approx([0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert fpr == pytest.approx([0, 0, 0, 1 / 2, 1 / 2, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.roc_auc(LABELS, PROBS))


def test_brier_score_is_the_mean_squared_error_of_the_probabilities() -> None:
    # (0.1-0)^2 + (0.6-0)^2 + (0.4-1)^2 + (0.7-1)^2 + (0.9-1)^2 = .01 + .36 + .36 + .09 + .01 = .83
    assert metrics.brier_score(LABELS, PROBS) == pytest.approx(0.83 / 5)


def test_a_probability_equal_to_the_threshold_is_flagged() -> None:
    labels = np.array([1, 1])
    probs = np.array([0.3, np.nextafter(0.3, 0.0)])

    assert metrics.confusion_counts(metrics.confusion_matrix(labels, probs, threshold=0.3)) == {
        "tn": 0,
        "fp": 0,
        "fn": 1,
        "tp": 1,
    }


def test_reliability_bins_hold_mean_prediction_observed_fraction_and_count() -> None:
    labels = np.array([0, 1, 1, 1, 1])
    probs = np.array([0.1, 0.15, 0.7, 0.75, 1.0])

    bins = metrics.reliability_bins(labels, probs)

    assert len(bins) == 10
    assert [b["count"] for b in bins] == [
        0,
        2,
        0,
        0,
        0,
        0,
        0,
        2,
        0,
        1,
    ]  # 0.7 is in [0.7, 0.8), 1.0 in the last
    assert bins[1]["mean_predicted"] == pytest.approx((0.1 + 0.15) / 2)
    assert bins[1]["observed"] == pytest.approx(1 / 2)
    assert bins[7]["mean_predicted"] == pytest.approx((0.7 + 0.75) / 2)
    assert bins[7]["observed"] == 1.0
    assert bins[0]["mean_predicted"] is None and bins[0]["observed"] is None
    assert (bins[7]["lower"], bins[7]["upper"]) == (0.7, 0.8)


def test_screening_metrics_reports_both_operating_points_as_json() -> None:
    summary = metrics.screening_metrics(LABELS, PROBS, threshold=0.65)

    assert summary["n"] == 5
    assert summary["at_threshold"]["confusion"] == {"tn": 2, "fp": 0, "fn": 1, "tp": 2}
    assert summary["at_threshold"]["accuracy"] == pytest.approx(4 / 5)
    assert summary["at_0.5"]["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    assert summary["roc_auc"] == pytest.approx(5 / 6)
    assert summary["brier"] == pytest.approx(0.83 / 5)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_screening_metrics_without_cases_writes_undefined_values_as_null() -> None:
    summary = metrics.screening_metrics(np.array([]), np.array([]), threshold=0.5)

    assert summary["n"] == 0
    assert summary["roc_auc"] is None and summary["brier"] is None
    assert summary["at_threshold"]["accuracy"] is None
    json.dumps(summary, allow_nan=False)
