"""The statistics of a site's operating point, numpy only, so each figure can be redone by hand.

- Intervals are Wilson score intervals (95 % unless asked). For a weighted proportion the interval
  is computed at Kish's effective sample size n_eff = (sum w)^2 / sum w^2 (Korn and Graubard's
  approach for survey proportions); with equal weights it is the plain Wilson interval.
- A threshold is chosen as in training: the highest specificity whose sensitivity reaches the target,
  the highest threshold among ties; here with optional case weights.
- The minimum sample (`sample_problem`): at least MIN_PER_CLASS images of each class, and enough
  malignant images that the sample can miss one and still meet the target (n_malignant x (1 - target)
  >= 1). Below that, the achievable sensitivities jump from 1 straight past the target, so "sensitivity
  >= target" means "flag every malignant image of the sample": the threshold rests on the single
  lowest-scoring malignant image, and its 95 % interval says nothing useful.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from skinscreen.flagging import flags

Z95 = 1.959963984540054
MIN_PER_CLASS = 10
_EPS = 1e-9


@dataclass(frozen=True)
class Proportion:
    """An estimated proportion with its interval; `n` is the (effective) number of cases behind it."""

    value: float | None
    low: float | None
    high: float | None
    n: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson(successes: float, n: float, *, z: float = Z95) -> Proportion:
    """Wilson score interval of successes / n (n may be an effective, non-integer size)."""
    if n <= 0:
        return Proportion(None, None, None, 0.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Proportion(p, max(0.0, centre - half), min(1.0, centre + half), n)


def weighted_proportion(hits: np.ndarray, weights: np.ndarray, *, z: float = Z95) -> Proportion:
    """Weighted share of `hits`, with a Wilson interval at Kish's effective sample size."""
    hits = np.asarray(hits, dtype=bool)
    weights = np.asarray(weights, dtype=np.float64)
    total = float(weights.sum())
    if total <= 0:
        return Proportion(None, None, None, 0.0)
    p = float(weights[hits].sum()) / total
    n_eff = total * total / float((weights * weights).sum())
    interval = wilson(p * n_eff, n_eff, z=z)
    return Proportion(p, interval.low, interval.high, n_eff)


def sample_problem(n_malignant: int, n_benign: int, *, target: float) -> str | None:
    """Why a labelled sample cannot support calibrating at sensitivity `target`; None when it can."""
    needed = max(MIN_PER_CLASS, math.ceil(1 / (1 - target) - _EPS)) if target < 1 else math.inf
    if n_malignant >= needed and n_benign >= MIN_PER_CLASS:
        return None
    reasons = []
    if n_malignant < needed:
        steps = ", ".join(_fraction(k, n_malignant) for k in range(n_malignant + 1)) or "none"
        all_found = wilson(n_malignant, n_malignant)
        interval = (
            f"; even {n_malignant}/{n_malignant} found has a 95 % interval of "
            f"{all_found.low:.2f}-{all_found.high:.2f}"
            if n_malignant
            else ""
        )
        reasons.append(
            f"{n_malignant} malignant images allow only the sensitivities {steps}, so meeting "
            f"{target:.2f} means flagging every malignant image of the sample{interval}"
        )
    if n_benign < MIN_PER_CLASS:
        reasons.append(f"{n_benign} benign images cannot estimate a specificity")
    need = f"at least {needed} malignant" if needed != math.inf else "a target below 1"
    return (
        f"the sample cannot support sensitivity {target:.2f}: " + "; ".join(reasons) + f". Calibrating at "
        f"{target:.2f} needs {need} and {MIN_PER_CLASS} benign images "
        f"(this sample: {n_malignant} malignant, {n_benign} benign)."
    )


def _fraction(k: int, n: int) -> str:
    if k == 0:
        return "0"
    if k == n:
        return "1"
    return f"{k}/{n}"


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, *, target: float, weights: np.ndarray | None = None
) -> float:
    """The threshold with the highest (weighted) specificity whose (weighted) sensitivity >= target."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    if y.all() or not y.any():
        raise ValueError("choosing a threshold needs both benign and malignant cases")
    best: tuple[float, float] | None = None
    for t in np.unique(p)[::-1]:
        flagged = flags(p, float(t))
        sensitivity = w[y & flagged].sum() / w[y].sum()
        if sensitivity < target - _EPS:
            continue
        specificity = w[~y & ~flagged].sum() / w[~y].sum()
        if best is None or specificity > best[0] + _EPS:
            best = (float(specificity), float(t))
    assert best is not None  # the lowest score flags everything: sensitivity 1
    return best[1]


def operating_point(
    labels: np.ndarray, probs: np.ndarray, *, threshold: float, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Counts, sensitivity and specificity (with 95 % intervals) of flagging at `threshold`."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    flagged = flags(p, threshold)
    return {
        "threshold": threshold,
        "n_malignant": int(y.sum()),
        "n_benign": int((~y).sum()),
        "tp": int((y & flagged).sum()),
        "fn": int((y & ~flagged).sum()),
        "tn": int((~y & ~flagged).sum()),
        "fp": int((~y & flagged).sum()),
        "sensitivity": weighted_proportion(flagged[y], w[y]).as_dict(),
        "specificity": weighted_proportion(~flagged[~y], w[~y]).as_dict(),
    }


@dataclass(frozen=True)
class SiteEstimate:
    """A site's real performance, estimated from flagged-case and audit-case verdicts."""

    flagged: int  # N_F: cases flagged
    unflagged: int  # N_U: cases not flagged
    reviewed_flagged: int  # n_F: flagged cases with a benign or malignant verdict
    reviewed_audit: int  # n_A: unflagged audit cases with a benign or malignant verdict
    weight_flagged: float | None  # N_F / n_F
    weight_audit: float | None  # N_U / n_A
    tp: float | None
    fp: float | None
    fn: float | None
    tn: float | None
    sensitivity: Proportion
    specificity: Proportion
    ppv: Proportion

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("sensitivity", "specificity", "ppv"):
            out[key] = getattr(self, key).as_dict()
        return out


def strata_weights(
    flagged: np.ndarray, audit: np.ndarray, verdict: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float | None, float | None]:
    """Which cases enter the weighted estimate (`used`), each case's weight (0 when not used) and the
    two stratum weights (None for a stratum without a reviewed case).

    The flagged stratum is represented by its reviewed cases (weight N_F / n_F), the unflagged one by
    its reviewed audit cases only (weight N_U / n_A); unflagged cases reviewed outside the audit
    sample are not a random sample and are left out, as are "uncertain" verdicts.
    """
    flagged = np.asarray(flagged, dtype=bool)
    audit = np.asarray(audit, dtype=bool)
    verdict = np.asarray(verdict, dtype=object)
    labelled = (verdict == "malignant") | (verdict == "benign")
    in_f = flagged & labelled
    in_a = ~flagged & audit & labelled
    w_f = float(flagged.sum()) / in_f.sum() if in_f.any() else None
    w_a = float((~flagged).sum()) / in_a.sum() if in_a.any() else None
    weights = np.where(in_f, w_f or 0.0, np.where(in_a, w_a or 0.0, 0.0))
    return (in_f | in_a), weights, w_f, w_a


def site_estimate(flagged: np.ndarray, audit: np.ndarray, verdict: np.ndarray) -> SiteEstimate:
    """Weighted (stratified) estimates of sensitivity, specificity and PPV with 95 % intervals.

    TP = N_F x (malignant share of reviewed flagged cases), FN = N_U x (malignant share of reviewed
    audit cases), and likewise FP and TN; sensitivity = TP / (TP + FN), specificity = TN / (TN + FP),
    PPV = TP / (TP + FP). Without a reviewed audit case, missed cancers cannot be estimated and
    sensitivity and specificity are None.
    """
    flagged = np.asarray(flagged, dtype=bool)
    verdict = np.asarray(verdict, dtype=object)
    used, weights, w_f, w_a = strata_weights(flagged, audit, verdict)
    malignant = verdict == "malignant"
    n_f = int((used & flagged).sum())
    n_a = int((used & ~flagged).sum())
    tp = fp = fn = tn = None
    if w_f is not None:
        tp = w_f * float((used & flagged & malignant).sum())
        fp = w_f * float((used & flagged & ~malignant).sum())
    if w_a is not None:
        fn = w_a * float((used & ~flagged & malignant).sum())
        tn = w_a * float((used & ~flagged & ~malignant).sum())
    none = Proportion(None, None, None, 0.0)
    both = w_f is not None and w_a is not None
    sens = weighted_proportion(flagged[used & malignant], weights[used & malignant]) if both else none
    spec = weighted_proportion(~flagged[used & ~malignant], weights[used & ~malignant]) if both else none
    ppv = wilson(float((used & flagged & malignant).sum()), n_f) if n_f else none
    return SiteEstimate(
        flagged=int(flagged.sum()),
        unflagged=int((~flagged).sum()),
        reviewed_flagged=n_f,
        reviewed_audit=n_a,
        weight_flagged=w_f,
        weight_audit=w_a,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        sensitivity=sens,
        specificity=spec,
        ppv=ppv,
    )
