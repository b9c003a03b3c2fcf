"""Leave one hospital out on cached features: the model-choice rule of docs/hospitals.md.

Each recipe is trained once per fold (every hospital left out in turn) and scored on the whole
held-out hospital, copy 0 (the image as scored), one pass. A recipe's score for a seed is the mean
of its held-out ROC AUCs; the keep rule compares means over seeds against the seed spread.

A "head" candidate trains the shipped network's head (dropout, then one sigmoid unit) on the frozen
backbone's pooled features with plain numpy: seconds per fold, so every recipe gets several seeds.
An "upper" candidate fine-tunes block 16 and the last 1x1 convolution with it on the cached
block-15 activations (upper.py): about a minute per fold, seed and epoch on two shared cores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinscreen.models.training.featurecache import CachedSource
from skinscreen.models.training.metrics import roc_auc
from skinscreen.models.training.train import balanced_within_sources

logger = logging.getLogger(__name__)

ARCHIVES = ("skin-cancer-mvb", "skin-cancer-bcn")  # what the shipped model was trained on


@dataclass(frozen=True)
class Lever:
    """A candidate recipe on the cache: which hospitals, how they are weighted, which copies."""

    name: str
    hospitals: str = "all"  # "all": every other hospital; "archives": the shipped model's two only
    weighting: str = "source-share"  # or "hospital-balanced": every hospital weighs the same
    copies: tuple[str, ...] = ("plain",)  # kinds of cached copy (featurecache.COPY_KINDS)
    l2: float = 1e-4
    dropout: float = 0.4
    epochs: int = 30
    # "head": the head alone on pooled features; "upper": block 16, Conv_1 and the head on the
    # cached block-15 activations (upper.py), `upper_epochs` epochs at `upper_lr`
    stage: str = "head"
    upper_epochs: int = 1  # one pass: about 60 cached rows a second on the shared cores
    upper_lr: float = 3e-4


LEVERS = {
    lever.name: lever
    for lever in (
        Lever("two-hospital", hospitals="archives"),
        Lever("four-hospital"),
        Lever("four-balanced", weighting="hospital-balanced"),
        Lever("four-balanced-geometry", weighting="hospital-balanced", copies=("plain", "geometry")),
        Lever("four-balanced-l2", weighting="hospital-balanced", l2=1e-2),
        Lever("four-hospital-geometry", copies=("plain", "geometry")),
        Lever("two-hospital-upper", hospitals="archives", stage="upper"),
        Lever("four-balanced-upper", weighting="hospital-balanced", stage="upper"),
        Lever("four-hospital-upper", stage="upper"),
        Lever("four-hospital-geometry-upper", copies=("plain", "geometry"), stage="upper"),
        Lever("two-hospital-upper2", hospitals="archives", stage="upper", upper_epochs=2),
        Lever("four-hospital-upper2", stage="upper", upper_epochs=2),
    )
}


def hospital_balanced(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per-image weights: each hospital carries the same total, benign and malignant half of it each."""
    weights = np.zeros(len(labels), dtype="float64")
    names = np.unique(sources)
    for name in names:
        for c in (0, 1):
            cell = (sources == name) & (labels == c)
            weights[cell] = len(labels) / (2 * len(names) * max(int(cell.sum()), 1))
    return weights


def copy_indices(source: CachedSource, kinds: Sequence[str]) -> list[int]:
    """The cache rows for `kinds`, each row used once. A centre-cropped source has no geometry
    copy and gets none: it already has the geometry the copy imitates."""
    free = list(enumerate(source.copy_kinds))
    chosen = []
    for kind in kinds:
        if kind == "geometry" and not source.full_frame:
            continue
        index = next(i for i, (_, k) in enumerate(free) if k == kind)
        chosen.append(free.pop(index)[0])
    return chosen


def training_rows(
    sources: Sequence[CachedSource], *, lever: Lever
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (pooled, or block-15 maps for the upper stage), labels and weights of every
    training copy of `sources` under `lever`."""
    xs, ys, names = [], [], []
    for source in sources:
        features = source.pooled if lever.stage == "head" else source.maps
        if features is None:
            raise ValueError(f"{source.name}: the cache was loaded without its block-15 maps")
        for k in copy_indices(source, lever.copies):
            xs.append(features[k] if lever.stage == "upper" else features[k].astype("float32"))
            ys.append(source.labels)
            names.append(np.full(len(source.labels), source.name))
    y, where = np.concatenate(ys), np.concatenate(names)
    if lever.weighting == "hospital-balanced":
        w = hospital_balanced(y, where)
    else:
        w = balanced_within_sources(y, where).astype("float64")
    return np.concatenate(xs), y, w


@dataclass(frozen=True)
class Head:
    """Standardisation and one sigmoid unit over pooled features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = ((x.astype("float32") - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-z)))


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    *,
    seed: int,
    epochs: int = 30,
    dropout: float = 0.4,
    l2: float = 1e-4,
    lr: float = 1e-3,
    batch_size: int = 128,
    label_smoothing: float = 0.05,
) -> Head:
    """Weighted cross-entropy with dropout on the inputs and Adam, as the shipped head trains."""
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    xs = ((x - mean) / scale).astype("float32")
    target = y * (1 - label_smoothing) + label_smoothing / 2
    d = xs.shape[1]
    theta = np.r_[rng.normal(0, 0.01, d), 0.0]
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(xs))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            xb = xs[idx]
            if dropout:
                xb = xb * (rng.random(xb.shape) >= dropout) / (1 - dropout)
            p = 1.0 / (1.0 + np.exp(-(xb @ theta[:-1] + theta[-1])))
            g = w[idx] * (p - target[idx]) / w[idx].sum()
            grad = np.r_[xb.T @ g + l2 * theta[:-1], g.sum()]
            step += 1
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad**2
            theta -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return Head(mean=mean, scale=scale, weights=theta[:-1].astype("float32"), bias=float(theta[-1]))


def trained_on(lever: Lever, *, held_out: str, names: Sequence[str]) -> list[str]:
    """The hospitals a fold trains on: every other one, or the shipped model's archives but the held-out."""
    pool = ARCHIVES if lever.hospitals == "archives" else names
    return [n for n in names if n in pool and n != held_out]


def _fit_and_score(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    test: CachedSource,
    *,
    lever: Lever,
    seed: int,
    backbone_weights: Path | None,
) -> float:
    """Train one fold's model and return its ROC AUC on the held-out hospital (copy 0)."""
    if lever.stage == "upper":
        from skinscreen.models.training.upper import build_upper, fit_upper, predict_upper

        if test.maps is None:
            raise ValueError(f"{test.name}: the cache was loaded without its block-15 maps")
        model = build_upper(backbone_weights=backbone_weights, dropout=lever.dropout, seed=seed)
        fit_upper(model, x, y, w, epochs=lever.upper_epochs, lr=lever.upper_lr, seed=seed)
        return roc_auc(test.labels.astype(bool), predict_upper(model, test.maps[0]))
    head = fit_head(x, y, w, seed=seed, epochs=lever.epochs, dropout=lever.dropout, l2=lever.l2)
    return roc_auc(test.labels.astype(bool), head.predict(test.pooled[0]))


def leave_one_out(
    sources: Sequence[CachedSource],
    *,
    lever: Lever,
    seeds: Sequence[int],
    backbone_weights: Path | None = None,
) -> dict[str, Any]:
    """Held-out ROC AUC per fold and seed, the per-seed mean (the score), and the seconds it took."""
    started = time.monotonic()
    names = [s.name for s in sources]
    by_name = {s.name: s for s in sources}
    folds: dict[str, dict[str, Any]] = {}
    for held in names:
        train_names = trained_on(lever, held_out=held, names=names)
        x, y, w = training_rows([by_name[n] for n in train_names], lever=lever)
        test = by_name[held]
        aucs = [
            _fit_and_score(x, y, w, test, lever=lever, seed=seed, backbone_weights=backbone_weights)
            for seed in seeds
        ]
        folds[held] = {"trained_on": train_names, "roc_auc": aucs}
        logger.info("%s, %s held out: AUC %s", lever.name, held, [round(a, 4) for a in aucs])
    scores = [float(np.mean([folds[h]["roc_auc"][i] for h in names])) for i in range(len(seeds))]
    return {
        "lever": lever.name,
        "seeds": list(seeds),
        "folds": folds,
        "score_by_seed": scores,
        "score": float(np.mean(scores)),
        "spread": float(max(scores) - min(scores)),
        "seconds": round(time.monotonic() - started, 1),
    }


def kept(candidate: dict[str, Any], base: dict[str, Any]) -> bool:
    """The keep rule: the mean gain beats the larger of the two recipes' seed spreads."""
    return bool(candidate["score"] - base["score"] > max(candidate["spread"], base["spread"]))


def render_results(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per candidate, held-out AUC per hospital (mean over seeds), score and spread."""
    names = list(results[0]["folds"]) if results else []
    lines = [
        "| candidate | "
        + " | ".join(f"{n} held out" for n in names)
        + " | score (mean of seeds) | seed spread | seconds |",
        "| --- |" + " --- |" * (len(names) + 3),
    ]
    for r in results:
        cells = [f"{np.mean(r['folds'][n]['roc_auc']):.3f}" for n in names]
        lines.append(
            f"| {r['lever']} | "
            + " | ".join(cells)
            + f" | {r['score']:.4f} | {r['spread']:.4f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"
