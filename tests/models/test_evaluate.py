from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from skinscreen.models.preprocess import to_model_input
from skinscreen.models.training.evaluate import evaluate
from tests.conftest import DATA

DATASET = DATA / "test"
# The first files of each class, none of them among the 8 test images SOURCE.md lists as leaked.
SAMPLE = {
    "benign": ["1.jpg", "10.jpg", "1003.jpg", "1006.jpg", "1013.jpg", "1018.jpg"],
    "malignant": ["1.jpg", "1003.jpg", "1005.jpg", "1007.jpg", "1009.jpg", "1012.jpg"],
}
COPIED_TO_TRAIN = "malignant/1005.jpg"

pytestmark = pytest.mark.skipif(not DATASET.is_dir(), reason="the skin-cancer-mvb test images are not here")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """data/{benign,malignant} with 6 + 6 images and a zero-byte bad.jpg; train/ with one copied image."""
    root = tmp_path_factory.mktemp("evaluation")
    for label, names in SAMPLE.items():
        (root / "data" / label).mkdir(parents=True)
        for name in names:
            shutil.copy(DATASET / label / name, root / "data" / label / name)
    (root / "data" / "benign" / "bad.jpg").write_bytes(b"")
    (root / "train" / "malignant").mkdir(parents=True)
    shutil.copy(root / "data" / COPIED_TO_TRAIN, root / "train" / "malignant" / "copy.jpg")
    yield root / "data", root / "train"


@pytest.fixture(scope="module")
def tiny_model_dir(
    folders: tuple[Path, Path], tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The session's tiny model, its threshold moved to the median of its scores on this sample."""
    from skinscreen.models.classifier import load_classifier

    model_dir = Path(shutil.copytree(tiny_model, tmp_path_factory.mktemp("tiny-model") / "tiny"))
    classifier = load_classifier(model_dir, backend="onnx", threads=1)
    data, _ = folders
    size = classifier.input_size
    pixels = np.stack([to_model_input(data / c / n, size=size) for c, names in SAMPLE.items() for n in names])
    card = json.loads((model_dir / "card.json").read_text())
    card["threshold"] = float(np.median(classifier.predict(pixels)))
    (model_dir / "card.json").write_text(json.dumps(card))
    yield model_dir


@pytest.fixture(scope="module")
def evaluation(
    folders: tuple[Path, Path], tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """evaluate() run once end to end; yields the output folder and its result."""
    from skinscreen.models.classifier import load_classifier

    data, train = folders
    out = tmp_path_factory.mktemp("out")
    classifier = load_classifier(tiny_model_dir, backend="onnx", threads=1)
    result = evaluate(data, classifier=classifier, out=out, train_dir=train, batch_size=5, progress=False)
    yield out, result


def read_predictions(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_metrics_json_matches_a_hand_count_of_the_predictions(
    evaluation: tuple[Path, dict[str, Any]],
) -> None:
    out, result = evaluation
    saved = json.loads((out / "metrics.json").read_text())
    rows = read_predictions(out)
    threshold = saved["model"]["threshold"]

    assert saved == result
    assert len(rows) == saved["all"]["n"] == 12
    for key, cut in (("at_threshold", threshold), ("at_0.5", 0.5)):
        tn = fp = fn = tp = 0
        for row in rows:
            malignant = row["label"] == "malignant"
            flagged = float(row["probability"]) >= cut
            if key == "at_threshold":
                assert flagged == (row["flagged"] == "1")
            if malignant and flagged:
                tp += 1
            elif malignant:
                fn += 1
            elif flagged:
                fp += 1
            else:
                tn += 1
        point = saved["all"][key]
        assert point["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        assert point["accuracy"] == pytest.approx((tn + tp) / (tn + fp + fn + tp))
        assert point["sensitivity"] == pytest.approx(tp / (tp + fn))
        assert point["specificity"] == pytest.approx(tn / (tn + fp))
    brier = sum((float(r["probability"]) - (r["label"] == "malignant")) ** 2 for r in rows) / len(rows)
    assert saved["all"]["brier"] == pytest.approx(brier)


def test_the_median_threshold_flags_some_cases_and_not_others(
    evaluation: tuple[Path, dict[str, Any]],
) -> None:
    flags = [row["flagged"] for row in read_predictions(evaluation[0])]

    assert 0 < flags.count("1") < len(flags)


def test_roc_auc_in_metrics_json_matches_pairwise_counting(evaluation: tuple[Path, dict[str, Any]]) -> None:
    out, result = evaluation
    rows = read_predictions(out)
    malignant = [float(r["probability"]) for r in rows if r["label"] == "malignant"]
    benign = [float(r["probability"]) for r in rows if r["label"] == "benign"]
    wins = sum(1.0 if m > b else 0.5 if m == b else 0.0 for m in malignant for b in benign)

    assert result["all"]["roc_auc"] == pytest.approx(wins / (len(malignant) * len(benign)))


def test_an_unreadable_file_is_listed_with_its_reason_and_not_scored(
    evaluation: tuple[Path, dict[str, Any]],
) -> None:
    out, result = evaluation

    assert result["unreadable"] == [{"path": "benign/bad.jpg", "reason": "empty file (0 bytes)"}]
    assert "benign/bad.jpg" not in [row["path"] for row in read_predictions(out)]
    assert result["all"]["n_benign"] == 6


def test_only_the_image_copied_into_train_is_excluded_as_a_near_duplicate(
    evaluation: tuple[Path, dict[str, Any]],
) -> None:
    subset = evaluation[1]["without_near_duplicates"]

    assert subset["computed"] is True
    assert subset["excluded"] == [COPIED_TO_TRAIN]
    assert subset["pairs"] == [{"path": COPIED_TO_TRAIN, "train_path": "malignant/copy.jpg"}]
    assert (subset["n"], subset["n_benign"], subset["n_malignant"]) == (11, 6, 5)


def test_the_plots_are_valid_pngs(evaluation: tuple[Path, dict[str, Any]]) -> None:
    for name in ("confusion_matrix.png", "roc_curve.png", "reliability.png"):
        with Image.open(evaluation[0] / name) as im:
            assert im.format == "PNG"
            im.verify()


def test_the_report_has_table_2_for_both_subsets_and_links_the_plots(
    evaluation: tuple[Path, dict[str, Any]],
) -> None:
    report = (evaluation[0] / "report.md").read_text()

    assert report.count("| | precision | recall | f1-score | support |") == 4  # 2 thresholds x 2 subsets
    for text in (
        "| macro avg |",
        "| weighted avg |",
        "ROC AUC",
        "Brier",
        "(roc_curve.png)",
        "`benign/bad.jpg`",
    ):
        assert text in report


class BrightnessScorer:
    """A stand-in classifier: the mean pixel value, scaled to 0..1."""

    version = "brightness"
    threshold = 0.5
    input_size = 16
    backend = "stub"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(batch, dtype=np.float64).mean(axis=(1, 2, 3)) / 255.0)


def test_without_a_training_folder_leakage_is_reported_as_not_computed(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    result = evaluate(folders[0], classifier=BrightnessScorer(), out=tmp_path, train_dir=None, progress=False)

    assert result["without_near_duplicates"]["computed"] is False
    assert "Not computed" in (tmp_path / "report.md").read_text()


def test_a_folder_of_only_unreadable_files_still_writes_every_output(tmp_path: Path) -> None:
    for label in ("benign", "malignant"):
        (tmp_path / "data" / label).mkdir(parents=True)
        (tmp_path / "data" / label / "empty.jpg").write_bytes(b"")

    result = evaluate(
        tmp_path / "data", classifier=BrightnessScorer(), out=tmp_path / "out", train_dir=None, progress=False
    )

    assert result["all"]["n"] == 0 and len(result["unreadable"]) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "predictions.csv",
        "reliability.png",
        "report.md",
        "roc_curve.png",
    ]
