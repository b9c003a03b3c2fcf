"""Drift with the shipped model on real images: a PH2 batch under a new, uncalibrated site is warned; a batch
of skin-cancer-mvb test images is not.

The reference histogram is made here from 60 other skin-cancer-mvb test images (the test split of record,
never trained on, so this holds for any shipped model) and written into a copy of the model's card, as
`skinscreen model-reference` does with the validation split. Then the real pipeline runs: both batches
dropped into inbox/<site>/<date>/, `run --once`, and `status --format json`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from skinscreen.config import Settings
from skinscreen.models.classifier import load_classifier
from skinscreen.models.registry import resolve_model_dir
from skinscreen.models.screening import score_files
from skinscreen.runner import run_embedded
from skinscreen.sites.drift import Reference
from tests.conftest import SHARED, dataset_images

pytestmark = pytest.mark.slow

PH2 = SHARED / "data" / "ph2"
PER_BATCH = 30


def drop(paths: list[Path], folder: Path) -> None:
    """Copy into one batch folder; benign/ and malignant/ reuse file names, so the label prefixes them."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")


def ph2_images(label: str, count: int) -> list[Path]:
    return sorted((PH2 / label).glob("*.jpg"))[:count]


@pytest.fixture
def model_with_reference(tmp_path: Path, data_dir: Path) -> Path:
    if not PH2.is_dir():
        pytest.skip(f"PH2 not found at {PH2}")
    shipped = resolve_model_dir("default")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").symlink_to(shipped / "model.onnx")
    card = json.loads((shipped / "card.json").read_text())
    classifier = load_classifier(shipped, backend="onnx")
    sample = dataset_images("benign", 30) + dataset_images("malignant", 30)
    scores = [r.probability for r in score_files(sample, classifier=classifier)]
    reference = Reference.from_scores(
        np.asarray(scores), source="60 test images", threshold=classifier.threshold
    )
    card["reference"] = reference.as_dict()
    (model / "card.json").write_text(json.dumps(card))
    return model


def test_a_ph2_batch_under_a_new_site_is_warned_and_an_mvb_batch_is_not(
    model_with_reference: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    half = PER_BATCH // 2
    mvb = dataset_images("benign", 30 + half)[30:] + dataset_images("malignant", 30 + half)[30:]
    drop(mvb, inbox / "mvb-clinic" / "2026-11-30")
    ph2 = ph2_images("benign", PER_BATCH * 4 // 5) + ph2_images("malignant", PER_BATCH // 5)
    drop(ph2, inbox / "new-hospital" / "2026-11-30")
    db = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    settings = Settings(database_url=db, model=str(model_with_reference), backend="onnx", settle_seconds=0)

    summary = run_embedded([inbox], settings=settings, once=True, progress=False)
    result = CliRunner().invoke(
        cli,
        ["--database-url", db, "status", "--format", "json"],
        env={"SKINSCREEN_MODEL": str(model_with_reference)},
    )

    assert summary.counts.scored == 2 * PER_BATCH
    drift = {d["site"]: d for d in json.loads(result.output)["drift"]}
    assert drift["new-hospital"]["warning"] is not None, drift["new-hospital"]
    assert drift["mvb-clinic"]["warning"] is None, drift["mvb-clinic"]
    assert drift["new-hospital"]["psi"] > drift["new-hospital"]["psi_limit"] > drift["mvb-clinic"]["psi"]
    shutil.rmtree(inbox)
