"""A model's reference score distribution, rebuilt from the validation split its card describes.

The split is the training command's own (`train.split_sources` with the card's split seed over
DATA/train and the card's extra folders); it is used only when those are the data the model was
trained on, as the card's `train_data_sha256` fingerprint says. Otherwise there is no reference, and
drift is not judged.

The reference is the validation split of DATA/train alone, the main archive, even for a model that
also trained on other hospitals' folders: hospitals differ in case mix (skin-cancer-mvb is 45 %
malignant, skin-cancer-bcn 61 %), so a pooled reference would expect a flag rate that belongs to no
hospital. With the pooled one, 50-image batches of skin-cancer-mvb test images were warned 25 % of
the time (flag rate); with DATA/train's, 1 % (scripts/drift_figures.py, docs/sites.md).
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


def validation_paths(card: dict[str, Any], *, data: Path | None) -> list[Path]:
    """DATA/train's validation images, remade as training made them: each source (DATA/train and
    the card's `extra_train_dirs`) split on its own by near-duplicate groups with the card's split
    seed; refused (CalibrationError) unless the data carry the card's training fingerprint."""
    from skinscreen.models.training.train import data_fingerprint, sources_of, split_sources

    training = card.get("training") or {}
    if "split_seed" not in training or "train_data_sha256" not in training:
        raise CalibrationError(f"model {card.get('version')}'s card lists no training split: no reference")
    root = data_root(card, data)
    extra = []
    for folder in training.get("extra_train_dirs") or []:
        found = _existing(folder)
        if found is None:
            raise CalibrationError(f"the extra training folder {folder} is missing: no reference")
        extra.append(found)
    sources, prefixes = sources_of(root, tuple(extra))
    split = split_sources(sources, prefixes, split_seed=int(training["split_seed"]))
    if data_fingerprint(split.files, prefixes) != training["train_data_sha256"]:
        raise CalibrationError(
            f"{root / 'train'} (with {len(extra)} extra folders) is not the data model "
            f"{card.get('version')} was trained on (its fingerprint differs from the card's): no reference"
        )
    main = root / "train"
    return [split.files.paths[i] for i in split.validation if split.files.paths[i].is_relative_to(main)]


def validation_reference(classifier: Classifier, *, data: Path | None, batch_size: int = 32) -> Reference:
    """Score the model's validation split (`validation_paths`) and return its score histogram with
    the flag rate at the model's threshold."""
    from skinscreen.models.screening import score_files

    card = classifier.card.data
    root = data_root(card, data)
    validation = validation_paths(card, data=root)
    logger.info("scoring the %d validation images of model %s", len(validation), classifier.version)
    results = score_files(validation, classifier=classifier, batch_size=batch_size)
    scores = np.asarray([r.probability for r in results if r.probability is not None], dtype=np.float64)
    seed = card["training"]["split_seed"]
    source = f"validation split of {root / 'train'} (split seed {seed}, {len(scores)} images)"
    return Reference.from_scores(scores, source=source, threshold=classifier.threshold)
