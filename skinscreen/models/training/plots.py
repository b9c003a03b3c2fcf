"""PNG figures: training curves (the paper's Fig. 5 and 6) and evaluation plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skinscreen.models.training.metrics import CLASS_NAMES  # noqa: E402


def plot_history(history: dict[str, list[float]], *, out: Path, stage_boundary: int) -> None:
    """Write fig5_accuracy.png and fig6_loss.png: training vs validation per epoch."""
    for key, name, title in (
        ("accuracy", "fig5_accuracy.png", "Training vs. validation accuracy"),
        ("loss", "fig6_loss.png", "Training vs. validation loss"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        epochs = range(1, len(history.get(key, [])) + 1)
        ax.plot(epochs, history.get(key, []), marker="o", label=f"training {key}")
        ax.plot(epochs, history.get(f"val_{key}", []), marker="o", label=f"validation {key}")
        ax.axvline(
            stage_boundary + 0.5, color="grey", linestyle="--", linewidth=1, label="fine-tuning starts"
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, *, path: Path, threshold: float) -> None:
    """The paper's Fig. 4: a 2x2 heatmap of counts, true label down, predicted label across."""
    counts = np.asarray(matrix, dtype=np.int64)
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=100)
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for (row, col), count in np.ndenumerate(counts):
        dark = count > counts.max() / 2
        ax.text(
            col, row, str(count), ha="center", va="center", fontsize=14, color="white" if dark else "black"
        )
    ax.set_xticks(range(len(CLASS_NAMES)), labels=CLASS_NAMES)
    ax.set_yticks(range(len(CLASS_NAMES)), labels=CLASS_NAMES)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"Confusion matrix (threshold {threshold:.3f})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_roc_curve(
    fpr: np.ndarray,
    tpr: np.ndarray,
    *,
    path: Path,
    auc: float | None,
    operating_points: Sequence[tuple[str, float, float]],
) -> None:
    """ROC curve with the chance diagonal; each operating point is (label, false positive rate, tpr)."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    auc_text = "n/a" if auc is None else f"{auc:.3f}"
    ax.plot(fpr, tpr, linewidth=2, label=f"ROC (AUC = {auc_text})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    for (label, x, y), style in zip(operating_points, ("o", "s", "^", "D"), strict=False):
        ax.plot([x], [y], marker=style, markersize=9, linestyle="none", label=label)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(
    bins: Sequence[Mapping[str, float | int | None]], *, path: Path, brier: float | None
) -> None:
    """Calibration curve over the reliability bins, the perfect-calibration diagonal and the bin counts."""
    filled = [b for b in bins if b["count"]]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 6), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    xs = [float(b["mean_predicted"] or 0.0) for b in filled]
    ys = [float(b["observed"] or 0.0) for b in filled]
    brier_text = "n/a" if brier is None else f"{brier:.3f}"
    top.plot(xs, ys, marker="o", label=f"model (Brier = {brier_text})")
    for x, y, b in zip(xs, ys, filled, strict=True):
        top.annotate(f"n={b['count']}", (x, y), textcoords="offset points", xytext=(4, -12), fontsize=8)
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("observed malignant fraction")
    top.set_title("Reliability (calibration) curve")
    top.legend(loc="lower right")
    lowers = [float(b["lower"] or 0.0) for b in bins]
    widths = [float(b["upper"] or 0.0) - lower for b, lower in zip(bins, lowers, strict=True)]
    bottom.bar(lowers, [int(b["count"] or 0) for b in bins], width=widths, align="edge", edgecolor="black")
    bottom.set_xlabel("mean predicted probability")
    bottom.set_ylabel("cases")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
