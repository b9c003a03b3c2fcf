"""Drift: does a batch's score distribution and flag rate look like what the model expects?

The reference is a histogram of scores: the model card's `reference` (the validation split's scores),
or a calibrated site's own labelled sample. A batch is compared with it in two ways:

- Population stability index, PSI = sum (a_i - e_i) ln(a_i / e_i) over bins that each hold about a
  tenth of the reference (adjacent fine bins merged), with half a case added to every bin's count.
  PSI is the symmetric Kullback-Leibler divergence; under no drift, PSI / (1/n + 1/N) is about
  chi-square with (bins - 1) degrees of freedom, so small batches reach 0.25 by chance alone. The
  limit is the larger of the conventional 0.25 and that chi-square's 99th percentile
  (Wilson-Hilferty) times (1/n + 1/N).
- Flag rate: the number flagged against the exact binomial 99 % range expected for the batch's size
  at the reference's flag rate under the threshold in force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skinscreen.flagging import flags

REFERENCE_BINS = 100
"""Equal-width bins over [0, 1] in a stored reference histogram."""
PSI_LIMIT = 0.25
"""The conventional 'significant shift' PSI; small batches get a higher, size-aware limit."""
LEVEL = 0.99
MIN_BATCH = 20
"""Batches with fewer scored cases are not judged: too few to tell drift from chance."""
GROUP_SHARE = 0.1
_Z99 = 2.3263478740408408
_PSEUDO = (
    0.5  # added to every group's count (Jeffreys): an empty group in a small batch is not infinite drift
)


def histogram(scores: np.ndarray) -> np.ndarray:
    """Counts of `scores` in REFERENCE_BINS equal-width bins over [0, 1]."""
    counts, _ = np.histogram(np.clip(np.asarray(scores, dtype=np.float64), 0, 1), REFERENCE_BINS, (0, 1))
    return counts.astype(np.int64)


@dataclass(frozen=True)
class Reference:
    """A score histogram and the flag rate it gives at a threshold."""

    counts: np.ndarray
    source: str
    threshold: float | None = None
    flag_rate: float | None = None  # exact share of reference scores >= threshold

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @classmethod
    def from_scores(cls, scores: np.ndarray, *, source: str, threshold: float | None) -> Reference:
        scores = np.asarray(scores, dtype=np.float64)
        rate = float(flags(scores, threshold).mean()) if threshold is not None and len(scores) else None
        return cls(histogram(scores), source, threshold, rate)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != (REFERENCE_BINS,) or counts.sum() <= 0:
            raise ValueError(f"a reference needs {REFERENCE_BINS} bin counts")
        return cls(counts, str(data.get("source", "")), data.get("threshold"), data.get("flag_rate"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "bins": REFERENCE_BINS,
            "range": [0.0, 1.0],
            "counts": self.counts.tolist(),
            "n": self.n,
            "threshold": self.threshold,
            "flag_rate": self.flag_rate,
        }

    def flag_rate_at(self, threshold: float) -> float:
        """Reference share at or above `threshold`: exact at the stored threshold, else interpolated."""
        if (
            self.threshold is not None
            and self.flag_rate is not None
            and abs(threshold - self.threshold) < 1e-12
        ):
            return self.flag_rate
        position = min(max(threshold, 0.0), 1.0) * REFERENCE_BINS
        whole = int(min(position, REFERENCE_BINS - 1))
        above = self.counts[whole + 1 :].sum() + self.counts[whole] * (whole + 1 - position)
        return float(above / self.n)


def bin_groups(counts: np.ndarray, *, share: float = GROUP_SHARE) -> list[tuple[int, int]]:
    """Merge adjacent fine bins into groups of at least `share` of the reference (the last may be less)."""
    total = float(counts.sum())
    groups: list[tuple[int, int]] = []
    start, held = 0, 0.0
    for i, count in enumerate(counts.tolist()):
        held += count
        if held / total >= share:
            groups.append((start, i + 1))
            start, held = i + 1, 0.0
    if start < len(counts):
        if held / total < share / 2 and groups:
            groups[-1] = (groups[-1][0], len(counts))
        else:
            groups.append((start, len(counts)))
    return groups


def psi(reference: np.ndarray, batch: np.ndarray, groups: list[tuple[int, int]]) -> float:
    """Population stability index of the batch counts against the reference counts over `groups`."""
    e = np.asarray([reference[a:b].sum() for a, b in groups], dtype=np.float64) + _PSEUDO
    a = np.asarray([batch[lo:hi].sum() for lo, hi in groups], dtype=np.float64) + _PSEUDO
    e, a = e / e.sum(), a / a.sum()
    return float(((a - e) * np.log(a / e)).sum())


def chi2_quantile(df: int, *, z: float = _Z99) -> float:
    """Wilson-Hilferty approximation of a chi-square quantile (z: the normal quantile)."""
    k = max(df, 1)
    return float(k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3)


def psi_limit(n: int, n_reference: int, n_groups: int) -> float:
    """The PSI above which a batch of `n` departs from a reference of `n_reference` (see the module doc)."""
    return max(PSI_LIMIT, chi2_quantile(n_groups - 1) * (1 / n + 1 / n_reference))


def binomial_range(n: int, p: float, *, level: float = LEVEL) -> tuple[int, int]:
    """The central `level` range of Binomial(n, p): P(X < lo) and P(X > hi) are each <= (1 - level) / 2."""
    if n <= 0:
        return 0, 0
    if p <= 0 or p >= 1:
        return (0, 0) if p <= 0 else (n, n)
    k = np.arange(n + 1)
    log_pmf = (
        np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k])
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    cdf = np.cumsum(np.exp(log_pmf))
    tail = (1 - level) / 2
    lo = int(np.searchsorted(cdf, tail, side="left"))  # first k with P(X <= k) >= tail
    hi = int(np.searchsorted(cdf, 1 - tail, side="left"))  # first k with P(X <= k) >= 1 - tail
    return lo, min(hi, n)


@dataclass(frozen=True)
class DriftCheck:
    """One batch against its reference."""

    n: int
    flagged: int
    flagged_rate: float
    expected_rate: float
    expected_range: tuple[float, float]
    psi: float
    psi_limit: float
    reference: str
    warning: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "flagged": self.flagged,
            "flagged_rate": round(self.flagged_rate, 4),
            "expected_rate": round(self.expected_rate, 4),
            "expected_range": [round(x, 4) for x in self.expected_range],
            "psi": round(self.psi, 4),
            "psi_limit": round(self.psi_limit, 4),
            "reference": self.reference,
            "warning": self.warning,
        }


def check_batch(
    scores: np.ndarray, flagged: np.ndarray, *, reference: Reference, threshold: float
) -> DriftCheck:
    """Compare one batch (its scores and the flags they got) with the reference at `threshold`."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    hits = int(np.asarray(flagged, dtype=bool).sum())
    groups = bin_groups(reference.counts)
    value = psi(reference.counts, histogram(scores), groups)
    limit = psi_limit(n, reference.n, len(groups))
    expected = reference.flag_rate_at(threshold)
    lo, hi = binomial_range(n, expected)
    problems = []
    if value > limit:
        problems.append(f"score distribution shifted (PSI {value:.2f} > {limit:.2f})")
    if not lo <= hits <= hi:
        problems.append(
            f"flag rate {hits / n:.2f} outside the 99 % range {lo / n:.2f}-{hi / n:.2f} expected for "
            f"{n} cases at {expected:.2f}"
        )
    return DriftCheck(
        n=n,
        flagged=hits,
        flagged_rate=hits / n if n else 0.0,
        expected_rate=expected,
        expected_range=(lo / n, hi / n),
        psi=value,
        psi_limit=limit,
        reference=reference.source,
        warning="; ".join(problems) or None,
    )
