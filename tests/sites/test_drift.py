"""Drift statistics by hand: binomial ranges, PSI, bin groups, the size-aware limit, flag rates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skinscreen.sites import drift
from skinscreen.sites.drift import Reference


def hand_binomial_range(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    tail = (1 - level) / 2
    cdf, lo, hi = 0.0, None, None
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if lo is None and cdf >= tail:
            lo = k
        if hi is None and cdf >= 1 - tail:
            hi = k
    assert lo is not None and hi is not None
    return lo, hi


@pytest.mark.parametrize(("n", "p"), [(10, 0.5), (50, 0.45), (200, 0.05), (1000, 0.05), (37, 0.9)])
def test_binomial_range_matches_the_sum_of_the_probabilities(n: int, p: float) -> None:
    assert drift.binomial_range(n, p) == hand_binomial_range(n, p)


def test_binomial_range_of_1000_at_005_is_about_32_to_68() -> None:
    lo, hi = drift.binomial_range(1000, 0.05)
    assert 31 <= lo <= 33 and 67 <= hi <= 69  # mean 50, sd 6.9, +-2.576 sd


def test_psi_is_the_symmetric_divergence_over_the_groups() -> None:
    reference = np.zeros(drift.REFERENCE_BINS, int)
    reference[[5, 50, 95]] = [50, 30, 20]
    batch = np.zeros(drift.REFERENCE_BINS, int)
    batch[[5, 50, 95]] = [20, 30, 50]
    groups = [(0, 10), (10, 90), (90, 100)]

    # Half a case is added to every group: e = (50.5, 30.5, 20.5) / 101.5, a = (20.5, 30.5, 50.5) / 101.5
    expected = 2 * (50.5 - 20.5) / 101.5 * math.log(50.5 / 20.5)
    assert drift.psi(reference, batch, groups) == pytest.approx(expected)
    assert drift.psi(reference, reference, groups) == 0


def test_bin_groups_hold_a_tenth_of_the_reference_each() -> None:
    counts = np.ones(drift.REFERENCE_BINS, int)
    groups = drift.bin_groups(counts)

    assert len(groups) == 10 and groups[0] == (0, 10) and groups[-1] == (90, 100)
    lumpy = np.zeros(drift.REFERENCE_BINS, int)
    lumpy[0], lumpy[99], lumpy[50] = 60, 35, 5
    assert drift.bin_groups(lumpy) == [(0, 1), (1, 100)]  # 5 % at 0.5 is too little for a group


def test_the_psi_limit_grows_for_small_batches_and_never_drops_below_025() -> None:
    assert drift.psi_limit(100_000, 100_000, 10) == 0.25
    small = drift.psi_limit(50, 527, 10)
    # chi-square 99 % with 9 degrees of freedom is 21.67
    assert small == pytest.approx(21.67 * (1 / 50 + 1 / 527), rel=0.01)


def test_flag_rate_is_exact_at_the_stored_threshold_and_interpolated_elsewhere() -> None:
    scores = np.linspace(0.0005, 0.9995, 1000)
    reference = Reference.from_scores(scores, source="even", threshold=0.6)

    assert reference.flag_rate_at(0.6) == pytest.approx(0.4)
    assert reference.flag_rate_at(0.255) == pytest.approx(0.745, abs=1e-3)


def test_a_batch_like_the_reference_passes_and_a_shifted_one_is_warned() -> None:
    rng = np.random.default_rng(0)
    reference = Reference.from_scores(rng.beta(0.5, 0.6, 600), source="validation", threshold=0.5)
    same = rng.beta(0.5, 0.6, 60)
    shifted = rng.beta(2, 2, 60)

    calm = drift.check_batch(same, same >= 0.5, reference=reference, threshold=0.5)
    alarm = drift.check_batch(shifted, shifted >= 0.5, reference=reference, threshold=0.5)

    assert calm.warning is None
    assert alarm.warning is not None and "PSI" in alarm.warning
    assert alarm.psi > alarm.psi_limit > calm.psi


def test_a_flag_rate_outside_its_range_is_warned_even_when_the_shape_holds() -> None:
    rng = np.random.default_rng(1)
    reference = Reference.from_scores(rng.random(1000), source="uniform", threshold=0.5)
    batch = rng.random(400)
    everything = np.ones(400, bool)  # flagged by a threshold far below the one the reference expects

    check = drift.check_batch(batch, everything, reference=reference, threshold=0.5)

    assert check.warning is not None and "flag rate 1.00 outside the 99 % range" in check.warning
