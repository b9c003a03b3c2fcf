"""`skinscreen train`: fit a recipe on DATA_DIR/train, never touching DATA_DIR/test."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinscreen import flagging
from skinscreen.checksum import sha256_file
from skinscreen.models.training import dataset
from skinscreen.models.training.metrics import roc_auc
from skinscreen.models.training.network import Recipe, augmenter, build_model, colour_jitter, unfreeze_top
from skinscreen.models.training.thresholds import choose_threshold

logger = logging.getLogger(__name__)


def data_fingerprint(files: dataset.LabelledFiles, prefixes: dict[Path, str]) -> str:
    """SHA-256 over the sorted (source/path, label, file hash) lines: what the model was trained on."""
    digest = hashlib.sha256()
    for name, label, path in sorted(
        (relative_name(path, prefixes), label, path)
        for path, label in zip(files.paths, files.labels.tolist(), strict=True)
    ):
        digest.update(f"{name}\t{label}\t{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def relative_name(path: Path, prefixes: dict[Path, str]) -> str:
    for root, prefix in prefixes.items():
        if path.is_relative_to(root):
            return f"{prefix}/{path.relative_to(root)}" if prefix else str(path.relative_to(root))
    return str(path)


@dataclass(frozen=True)
class SplitData:
    """Every source's images, the train and validation indices, their names and sources."""

    files: dataset.LabelledFiles
    train: np.ndarray
    validation: np.ndarray
    split: dict[str, list[str]]  # split.json: names relative to DATA_DIR or NAME/...
    source_of: list[str]


def sources_of(data_dir: Path, extra: tuple[Path, ...]) -> tuple[dict[Path, str], dict[Path, str]]:
    """The folders trained on, by source name, and the prefixes of their names in split.json."""
    sources = {data_dir / "train": data_dir.name, **{folder: folder.name for folder in extra}}
    # Paths in split.json and the data fingerprint: DATA_DIR-relative for the main set (as before
    # extra sets existed, so a run on the same data keeps its fingerprint), NAME/... for the others.
    prefixes = {data_dir: "", **{folder: folder.name for folder in extra}}
    return sources, prefixes


def split_sources(
    sources: dict[Path, str], prefixes: dict[Path, str], *, limit: int | None = None, split_seed: int = 0
) -> SplitData:
    """Each source split into train and validation on its own, by near-duplicate groups."""
    paths: list[Path] = []
    labels: list[np.ndarray] = []
    source_of: list[str] = []
    tr_parts: list[np.ndarray] = []
    va_parts: list[np.ndarray] = []
    for root, name in sources.items():
        part = dataset.list_labelled(root)
        if limit:
            keep = np.concatenate([np.nonzero(part.labels == c)[0][:limit] for c in (0, 1)])
            part = dataset.LabelledFiles([part.paths[i] for i in keep], part.labels[keep])
        logger.info("finding duplicate groups among %d images of %s", len(part.paths), name)
        groups = dataset.duplicate_groups(part.paths)
        # The split has its own seed: runs that differ only in `seed` share one validation set, so
        # seeds and recipes are compared (and ensembled) on the same images.
        tr_s, va_s = dataset.grouped_split(part.labels, groups, seed=split_seed)
        offset = len(paths)
        tr_parts.append(tr_s + offset)
        va_parts.append(va_s + offset)
        paths += part.paths
        labels.append(part.labels)
        source_of += [name] * len(part.paths)
        logger.info("%s: %d train, %d validation", name, len(tr_s), len(va_s))
    files = dataset.LabelledFiles(paths, np.concatenate(labels))
    tr, va = np.concatenate(tr_parts), np.concatenate(va_parts)
    split = {
        "train": [relative_name(files.paths[i], prefixes) for i in tr],
        "validation": [relative_name(files.paths[i], prefixes) for i in va],
    }
    return SplitData(files, tr, va, split, source_of)


def train(
    data_dir: Path,
    *,
    out: Path,
    recipe: Recipe,
    seed: int = 0,
    split_seed: int = 0,
    backbone_weights: Path | None = None,
    size: int = 224,
    alpha: float = 1.0,
    limit: int | None = None,
    epochs_scale: float = 1.0,
    extra: tuple[Path, ...] = (),
    init_from: Path | None = None,
    teacher: Path | None = None,
    teachers: tuple[str, ...] = (),
    distill_weight: float = 0.5,
) -> dict[str, Any]:
    """Train one model; write model.keras, history, split, plots and run.json into `out`.

    `extra` folders (each with benign/ and malignant/, another hospital's images) join
    DATA_DIR/train; each source is split into train and validation on its own, by near-duplicate
    groups, and validation is reported per source and pooled. `limit` keeps the first N images of
    each class of each source and `epochs_scale` shrinks the schedule: both exist for tests and
    smoke runs, and are recorded in run.json. `init_from` (a model.keras of the same recipe family)
    starts from another run's weights, to train it longer; a recipe with no head epochs then goes
    straight to fine-tuning. `teacher` (scripts/teacher_scores.py's .npz) makes the training targets
    (1 - distill_weight) * label + distill_weight * the mean score of `teachers` (all if empty);
    validation keeps the true labels.
    """
    import keras
    import tensorflow as tf

    started = time.monotonic()
    train_root = data_dir / "train"
    sources, prefixes = sources_of(data_dir, extra)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)

    data = split_sources(sources, prefixes, limit=limit, split_seed=split_seed)
    files, tr, va, split = data.files, data.train, data.validation, data.split
    source_of = data.source_of
    (out / "split.json").write_text(json.dumps(split, indent=1))
    val_source = np.asarray([source_of[i] for i in va])

    pixels = dataset.load_pixels(files.paths, size=size)
    x_tr, y_tr = pixels[tr], files.labels[tr].astype("float32")
    if teacher is not None:
        from skinscreen.models.training import distill

        scores = distill.teacher_scores(teacher, split["train"], teachers)
        y_tr = distill.soft_targets(y_tr, scores, weight=distill_weight)
        logger.info("distilling from %s (weight %.2f)", teacher, distill_weight)
    x_va, y_va = pixels[va], files.labels[va].astype("float32")
    aug = augmenter(recipe, seed=seed)
    train_source = np.asarray(source_of)[tr]
    class_weight = None
    weights = None  # per image, when classes are balanced within each source
    if recipe.class_weight and recipe.site_neutral:
        weights = balanced_within_sources(files.labels[tr], train_source)
    elif recipe.class_weight:
        counts = np.bincount(files.labels[tr], minlength=2)
        class_weight = {c: float(len(tr) / (2 * counts[c])) for c in (0, 1)}
    tensors = (x_tr, y_tr) if weights is None else (x_tr, y_tr, weights)
    train_ds = (
        tf.data.Dataset.from_tensor_slices(tensors)
        .shuffle(len(x_tr), seed=seed, reshuffle_each_iteration=True)
        .batch(recipe.batch_size)
        .map(
            lambda x, *rest: (
                aug(colour_jitter(tf.cast(x, "float32"), recipe=recipe, seed=seed), training=True),
                *rest,
            ),
            num_parallel_calls=1,
        )
        .prefetch(2)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((x_va.astype("float32"), y_va)).batch(64)

    def selection_auc(probs: np.ndarray) -> float:
        """What the kept epoch maximises: pooled validation ROC AUC, or its mean over sources."""
        if recipe.site_neutral:
            return mean_source_auc(y_va, probs, val_source)
        return roc_auc(y_va.astype(bool), probs)

    model = build_model(recipe=recipe, size=size, alpha=alpha, backbone_weights=backbone_weights)
    if init_from is not None:
        from skinscreen.models.layers import load_keras_model

        model.set_weights(load_keras_model(init_from).get_weights())
    loss = keras.losses.BinaryCrossentropy(label_smoothing=recipe.label_smoothing)

    def metrics() -> list[Any]:
        if teacher is not None:  # soft targets: training accuracy and AUC against the labels
            from skinscreen.models.training.distill import label_metrics

            return label_metrics()
        return ["accuracy", keras.metrics.AUC(name="auc")]

    head_epochs = max(1, round(recipe.head_epochs * epochs_scale)) if recipe.head_epochs else 0
    fine_epochs = max(1, round(recipe.finetune_epochs * epochs_scale)) if recipe.finetune_epochs else 0
    model.compile(optimizer=keras.optimizers.Adam(recipe.head_lr), loss=loss, metrics=metrics())
    history: dict[str, list[float]] = {}
    if head_epochs:
        logger.info("stage 1: %d epochs with the base frozen", head_epochs)
        h1 = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=head_epochs,
            class_weight=class_weight,
            verbose=2,
            shuffle=False,
        )
        history = {k: list(map(float, v)) for k, v in h1.history.items()}

    best_epoch: int | str = head_epochs
    candidate_aucs: dict[int | str, float] = {}
    selection_by_epoch: list[float] = []  # site-neutral recipes: mean per-source AUC per fine-tuning epoch
    val_probs: np.ndarray | None = None  # the kept weights' validation scores, once computed
    if fine_epochs:
        n = unfreeze_top(model, recipe=recipe)
        lr: Any = recipe.finetune_lr
        if recipe.cosine:
            steps = fine_epochs * int(np.ceil(len(x_tr) / recipe.batch_size))
            lr = keras.optimizers.schedules.CosineDecay(recipe.finetune_lr, decay_steps=steps, alpha=0.01)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=metrics())
        logger.info("stage 2: %d fine-tuning epochs, %d base layers trainable", fine_epochs, n)
        snapshots = _Snapshots(
            average_from=fine_epochs - recipe.average_last if recipe.average_last else None,
            score=(lambda m: selection_auc(view_averaged(m, x_va, tta=recipe.tta)))
            if recipe.site_neutral
            else None,
        )
        h2 = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=fine_epochs,
            class_weight=class_weight,
            shuffle=False,
            verbose=2,
            callbacks=[snapshots],
        )
        for k, v in h2.history.items():
            history[k] = history.get(k, []) + list(map(float, v))
        selection_by_epoch = snapshots.scores
        best_epoch = head_epochs + fine_epochs
        candidates: dict[int | str, list[Any]] = {}
        if recipe.select_best and snapshots.best_weights is not None:
            candidates[head_epochs + snapshots.best_epoch + 1] = snapshots.best_weights
        if snapshots.average is not None:
            first = head_epochs + fine_epochs - recipe.average_last + 1
            candidates[f"average of epochs {first}-{head_epochs + fine_epochs}"] = snapshots.average
        if len(candidates) > 1:
            scored = _validation_scores(model, candidates, x_va, tta=recipe.tta)
            candidate_aucs = {k: selection_auc(p) for k, p in scored.items()}
            best_epoch = max(candidate_aucs, key=candidate_aucs.__getitem__)
            val_probs = scored[best_epoch]
            logger.info("kept %s (validation ROC AUC with test-time views: %s)", best_epoch, candidate_aucs)
        elif candidates:
            best_epoch = next(iter(candidates))
        if candidates:
            model.set_weights(candidates[best_epoch])

    if val_probs is None:
        val_probs = view_averaged(model, x_va, tta=recipe.tta)
    chosen = operating_point(y_va, val_probs, tta=recipe.tta)
    model.save(out / "model.keras")
    (out / "history.json").write_text(json.dumps(history, indent=1))
    from skinscreen.models.training.plots import plot_history

    plot_history(history, out=out, stage_boundary=head_epochs)
    run = {
        "recipe": recipe.as_dict(),
        "seed": seed,
        "split_seed": split_seed,
        "input_size": size,
        "alpha": alpha,
        "epochs": {"head": head_epochs, "finetune": fine_epochs, "kept": best_epoch},
        "limit_per_class": limit,
        "init_from": {"path": str(init_from), "sha256": sha256_file(init_from)} if init_from else None,
        "teacher": _teacher_record(teacher, teachers, distill_weight),
        "candidates_validation_auc": {str(k): v for k, v in candidate_aucs.items()},
        "finetune_mean_source_auc": selection_by_epoch or None,
        **chosen,
        "validation_by_source": {
            name: _summary(y_va[val_source == name], val_probs[val_source == name], chosen["threshold"])
            for name in sources.values()
        },
        "train_data_sha256": data_fingerprint(files, prefixes),
        "train_dir": str(train_root.resolve()),
        "extra_train_dirs": [str(folder.resolve()) for folder in extra],
        "images_by_source": {
            name: {
                "train": int((np.asarray(source_of)[tr] == name).sum()),
                "validation": int((val_source == name).sum()),
            }
            for name in sources.values()
        },
        "backbone_weights": str(backbone_weights) if backbone_weights else "keras-download:imagenet",
        "backbone_weights_sha256": sha256_file(backbone_weights) if backbone_weights else None,
        "train_images": len(tr),
        "validation_images": len(va),
        "seconds": round(time.monotonic() - started, 1),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    (out / "run.json").write_text(json.dumps(run, indent=1))
    logger.info("trained in %.0f s; validation %s", run["seconds"], run["validation"])
    return run


def _teacher_record(teacher: Path | None, teachers: tuple[str, ...], weight: float) -> dict[str, Any] | None:
    if teacher is None:
        return None
    from skinscreen.models.training import distill

    return distill.describe(teacher, teachers, weight)


def balanced_within_sources(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Per-image weights n_s / (2 n_sc): benign and malignant weigh the same within each source,
    and each source keeps its share of the total (with one source: balanced class weights)."""
    weights = np.zeros(len(labels), dtype="float32")
    for name in np.unique(sources):
        in_source = sources == name
        counts = np.bincount(labels[in_source], minlength=2)
        for c in (0, 1):
            weights[in_source & (labels == c)] = in_source.sum() / (2 * max(int(counts[c]), 1))
    return weights


def mean_source_auc(labels: np.ndarray, probs: np.ndarray, sources: np.ndarray) -> float:
    """The mean over sources of each source's own ROC AUC (the rule every model choice uses)."""
    return float(
        np.mean([roc_auc(labels[sources == s].astype(bool), probs[sources == s]) for s in np.unique(sources)])
    )


def view_averaged(model: Any, pixels: np.ndarray, *, tta: str) -> np.ndarray:
    """A Keras model's probabilities averaged over the test-time views."""
    from skinscreen.models.preprocess import average_views, tta_views

    views = tta_views(pixels.astype("float32"), tta)
    return average_views(model.predict(views, batch_size=64, verbose=0).ravel(), n=len(pixels))


def operating_point(y_va: np.ndarray, probs: np.ndarray, *, tta: str) -> dict[str, Any]:
    """Validation probabilities (with the recipe's test-time views) -> threshold and a summary."""
    threshold = choose_threshold(y_va, probs)
    return {
        "threshold": threshold,
        "threshold_rule": "highest validation specificity with malignant sensitivity >= 0.90",
        "tta": tta,
        "validation": _summary(y_va, probs, threshold),
    }


def _summary(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    y = labels.astype(bool)
    flagged = flagging.flags(probs, threshold)
    return {
        "accuracy_at_0.5": float((flagging.flags(probs, 0.5) == y).mean()),
        "roc_auc": roc_auc(y, probs),
        "sensitivity": float(flagged[y].mean()),
        "specificity": float((~flagged[~y]).mean()),
    }


def _validation_scores(
    model: Any, candidates: dict[int | str, list[Any]], x_va: np.ndarray, *, tta: str
) -> dict[int | str, np.ndarray]:
    """Each candidate set of weights' validation probabilities, with the test-time views."""
    scores: dict[int | str, np.ndarray] = {}
    for key, weights in candidates.items():
        model.set_weights(weights)
        scores[key] = view_averaged(model, x_va, tta=tta)
    return scores


class _Snapshots:
    """A Keras callback keeping the best epoch's weights (by validation AUC, or by `score(model)`
    when given) and, from epoch `average_from` on, the running mean of the weights at the end of
    each epoch."""

    def __new__(cls, *, average_from: int | None, score: Callable[[Any], float] | None = None) -> Any:
        import keras

        class Snapshots(keras.callbacks.Callback):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.best = -1.0
                self.best_epoch = -1
                self.best_weights: list[Any] | None = None
                self.average: list[Any] | None = None
                self.averaged = 0
                self.scores: list[float] = []  # score(model) after each epoch, when given

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                if score is None:
                    auc = float((logs or {}).get("val_auc", -1.0))
                else:
                    auc = score(self.model)
                    self.scores.append(auc)
                    logger.info("epoch %d: selection AUC %.4f", epoch + 1, auc)
                if auc > self.best:
                    self.best, self.best_epoch, self.best_weights = auc, epoch, self.model.get_weights()
                if average_from is not None and epoch >= average_from:
                    weights = self.model.get_weights()
                    self.averaged += 1
                    if self.average is None:
                        self.average = [w.astype("float64") for w in weights]
                    else:
                        self.average = [
                            a + (w - a) / self.averaged for a, w in zip(self.average, weights, strict=True)
                        ]
                    if epoch == self.params["epochs"] - 1:
                        self.average = [a.astype(w.dtype) for a, w in zip(self.average, weights, strict=True)]

        return Snapshots()
