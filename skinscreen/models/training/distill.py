"""Distillation targets: a teacher's scores, precomputed by scripts/teacher_scores.py.

The teacher file holds, per training image (by its split.json name), each teacher model's
probability under the 8 dihedral views. The teacher score of an image is the mean over the chosen
teachers and all views; the student learns from (1 - weight) * label + weight * teacher score, so
it imitates the many-pass teacher in one pass while the labels keep it honest where the teacher is
wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skinscreen.checksum import sha256_file
from skinscreen.errors import DatasetError


def teacher_names(data: Any) -> list[str]:
    """The teachers in a loaded teacher-scores file (every array but `names` and `labels`)."""
    return [k for k in data.files if k not in ("names", "labels")]


def teacher_scores(path: Path, names: Sequence[str], teachers: Sequence[str] = ()) -> np.ndarray:
    """The teacher probability of each name (mean of `teachers`, all if empty, over all views)."""
    data = np.load(path)
    available = teacher_names(data)
    chosen = list(teachers) or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise DatasetError(f"{path} has no teacher {', '.join(unknown)}; it has {', '.join(available)}")
    row = {str(name): i for i, name in enumerate(data["names"])}
    missing = [name for name in names if name not in row]
    if missing:
        raise DatasetError(
            f"{path} has no teacher score for {len(missing)} training images (first: {missing[0]}); "
            "score the same folders with scripts/teacher_scores.py"
        )
    index = np.asarray([row[name] for name in names])
    return np.asarray(np.mean([data[t][index].mean(axis=1) for t in chosen], axis=0), dtype="float32")


def soft_targets(labels: np.ndarray, teacher: np.ndarray, *, weight: float) -> np.ndarray:
    """(1 - weight) * label + weight * teacher probability."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must be in [0, 1], got {weight}")
    return ((1.0 - weight) * labels + weight * teacher).astype("float32")


def label_metrics() -> list[Any]:
    """Accuracy and ROC AUC against the label inside a soft target (target >= 0.5 is malignant:
    exact while the teacher's weight is at most 0.5), so training curves stay comparable."""
    import keras
    from keras import ops

    def labels(y_true: Any) -> Any:
        return ops.cast(ops.greater_equal(y_true, 0.5), "float32")

    class LabelAUC(keras.metrics.AUC):  # type: ignore[misc]
        def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
            return super().update_state(labels(y_true), y_pred, sample_weight)

    def accuracy(y_true: Any, y_pred: Any) -> Any:
        return keras.metrics.binary_accuracy(labels(y_true), y_pred)

    return [keras.metrics.MeanMetricWrapper(accuracy, name="accuracy"), LabelAUC(name="auc")]


def describe(path: Path, teachers: Sequence[str], weight: float) -> dict[str, Any]:
    """What run.json and the model card record about the teacher."""
    return {
        "file": str(path),
        "sha256": sha256_file(path),
        "teachers": list(teachers) or teacher_names(np.load(path)),
        "views": 8,
        "weight": weight,
    }
