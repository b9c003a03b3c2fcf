"""A model's reference score distribution, rebuilt from the validation split its card describes.

The split is the training command's own (`dataset.grouped_split` with the card's split seed over
DATA/train); it is used only when DATA/train is the data the model was trained on, as the card's
`train_data_sha256` fingerprint says. Otherwise there is no reference, and drift is not judged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

import skinscreen
from skinscreen.errors import CalibrationError
from skinscreen.models.classifier import Classifier
from skinscreen.sites.drift import Reference

logger = logging.getLogger(__name__)


def _existing(path: str | Path) -> Path | None:
    """A path as written in a card: as given, or relative to the source checkout."""
    for candidate in (Path(path), Path(skinscreen.__file__).resolve().parents[1] / path):
        if candidate.is_dir():
            return candidate
    return None


def data_root(card: dict[str, Any], data: Path | None) -> Path:
    """DATA (holding train/) of the model's training run: given, or from the card."""
    if data is not None:
        return data
    training = card.get("training") or {}
    hints = []
    if training.get("train_dir"):
        hints.append(Path(training["train_dir"]).parent)
    if (card.get("test") or {}).get("data_dir"):
        hints.append(Path(card["test"]["data_dir"]).parent)  # the test split sits beside train/
    for hint in hints:
        found = _existing(hint)
        if found is not None and (found / "train").is_dir():
            return found
    raise CalibrationError("the card does not say where its training data is: no reference (give --data)")


def validation_reference(classifier: Classifier, *, data: Path | None, batch_size: int = 32) -> Reference:
    """Score the model's validation split and return its score histogram with the flag rate.

    The split is remade as training made it: each source (DATA/train and the card's
    `extra_train_dirs`) split on its own by near-duplicate groups with the card's split seed.
    """
    from skinscreen.models.screening import score_files
    from skinscreen.models.training import dataset
    from skinscreen.models.training.train import data_fingerprint

    card = classifier.card.data
    training = card.get("training") or {}
    if "split_seed" not in training or "train_data_sha256" not in training:
        raise CalibrationError(f"model {classifier.version}'s card lists no training split: no reference")
    root = data_root(card, data)
    extra = []
    for folder in training.get("extra_train_dirs") or []:
        found = _existing(folder)
        if found is None:
            raise CalibrationError(f"the extra training folder {folder} is missing: no reference")
        extra.append(found)
    prefixes = {root: "", **{folder: folder.name for folder in extra}}
    paths: list[Path] = []
    labels: list[np.ndarray] = []
    validation: list[Path] = []
    for folder in [root / "train", *extra]:
        part = dataset.list_labelled(folder)
        groups = dataset.duplicate_groups(part.paths)
        _, val = dataset.grouped_split(part.labels, groups, seed=int(training["split_seed"]))
        paths += part.paths
        labels.append(part.labels)
        validation += [part.paths[i] for i in val]
    files = dataset.LabelledFiles(paths, np.concatenate(labels))
    if data_fingerprint(files, prefixes) != training["train_data_sha256"]:
        raise CalibrationError(
            f"{root / 'train'} (with {len(extra)} extra folders) is not the data model "
            f"{classifier.version} was trained on (its fingerprint differs from the card's): no reference"
        )
    logger.info("scoring the %d validation images of model %s", len(validation), classifier.version)
    results = score_files(validation, classifier=classifier, batch_size=batch_size)
    scores = np.asarray([r.probability for r in results if r.probability is not None], dtype=np.float64)
    also = f" and {len(extra)} extra folders" if extra else ""
    seed = training["split_seed"]
    source = f"validation split of {root / 'train'}{also} (split seed {seed}, {len(scores)} images)"
    return Reference.from_scores(scores, source=source, threshold=classifier.threshold)
