"""Choosing the operating threshold on validation scores, checked on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from skinscreen.flagging import flags
from skinscreen.models.training.thresholds import choose_threshold

# Label 1 malignant. Sorted by probability: b .1, b .2, m .3, b .4, m .5, b .6, m .7, m .8, m .9, m .95
LABELS = np.array([0, 0, 1, 0, 1, 0, 1, 1, 1, 1])
PROBS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])


def test_the_most_specific_threshold_that_keeps_the_sensitivity_is_chosen() -> None:
    # At 0.5: 5 of 6 malignant flagged (0.83 < 0.9); at 0.3 all 6 (1.0), 2 of 4 benign flagged.
    assert choose_threshold(LABELS, PROBS) == 0.3
    # 0.8 asks for 5 of 6: 0.5 flags five malignant and one benign (specificity 0.75).
    assert choose_threshold(LABELS, PROBS, min_sensitivity=0.8) == 0.5


def test_among_equally_specific_thresholds_the_highest_is_chosen() -> None:
    # 0.8 and 0.7 both reach half the malignant cases and flag no benign one.
    assert choose_threshold(np.array([1, 1, 0]), np.array([0.8, 0.7, 0.1]), min_sensitivity=0.5) == 0.8


def test_the_chosen_threshold_flags_through_the_shared_rule() -> None:
    threshold = choose_threshold(LABELS, PROBS)
    flagged = flags(PROBS, threshold)
    assert flagged[LABELS == 1].all()  # a probability equal to the threshold is flagged
    assert flagged.tolist() == (PROBS >= 0.3).tolist()


def test_one_class_only_is_refused() -> None:
    with pytest.raises(ValueError, match="both benign and malignant"):
        choose_threshold(np.ones(3), np.array([0.2, 0.5, 0.9]))
